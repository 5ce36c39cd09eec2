"""Pure transitions (plans with only ``next_node``) are committed with the step after them."""

from __future__ import annotations

from typing import Any

import pytest

from abstractruntime import (
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    WorkflowSpec,
    verify_ledger_chain,
)
from tests.helpers import own_vars
from tests.workflows import counter


async def commits(store: Any, run_id: str) -> int:
    """Every commit (and claim) bumps the run's version; ``run`` creates the run claimed."""
    return int((await store.load_run(run_id)).version)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (RuntimeConfig(), 1),  # 19 pure transitions ride on the completing step's commit
        (RuntimeConfig(max_batched_steps=5), 4),
        (RuntimeConfig(max_batched_steps=1), 20),  # batching off: a commit per step
        (RuntimeConfig(max_batch_s=0), 20),  # every transition is "old" at once
    ],
)
async def test_a_chain_of_pure_transitions_costs_few_commits(
    store: Any, config: RuntimeConfig, expected: int
) -> None:
    rt = Runtime(store=store, config=config)
    run_id, state = await rt.run(counter(20))
    assert state.status is RunStatus.COMPLETED and state.output == {"n": 20}
    assert await commits(store, run_id) == expected
    ledger = await rt.get_ledger(run_id)
    assert [r["node_id"] for r in ledger] == [f"n{i}" for i in range(20)]
    assert [r["status"] for r in ledger] == ["completed"] * 20
    assert verify_ledger_chain(ledger)["ok"]
    stored = await rt.get_state(run_id)
    assert own_vars(stored) == {"n": 20, "seen": list(range(20))}


async def test_a_failure_after_pure_transitions_keeps_them(store: Any) -> None:
    def step(name: str, nxt: str) -> Any:
        def node(run: RunState, ctx: Any) -> StepPlan:
            run.vars[name] = True
            return StepPlan(node_id=name, next_node=nxt)

        return node

    def boom(run: RunState, ctx: Any) -> StepPlan:
        run.vars["boom"] = True  # not kept: the failed step changes nothing
        raise RuntimeError("kaput")

    wf = WorkflowSpec("chain", "a", {"a": step("a", "b"), "b": step("b", "c"), "c": boom})
    rt = Runtime(store=store)
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert state.error == "node 'c' raised RuntimeError: kaput"
    stored = await rt.get_state(run_id)
    assert stored.current_node == "c" and own_vars(stored) == {"a": True, "b": True}
    ledger = await rt.get_ledger(run_id)
    assert [(r["node_id"], r["status"]) for r in ledger] == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "failed"),
    ]
    assert await commits(store, run_id) == 1


async def test_an_unstorable_var_in_a_pure_transition_fails_that_step(store: Any) -> None:
    def a(run: RunState, ctx: Any) -> StepPlan:
        run.vars["ok"] = 1
        return StepPlan(node_id="a", next_node="b")

    def b(run: RunState, ctx: Any) -> StepPlan:
        run.vars["bad"] = object()
        return StepPlan(node_id="b", next_node="c")

    wf = WorkflowSpec(
        "unstorable",
        "a",
        {"a": a, "b": b, "c": lambda run, ctx: StepPlan(node_id="c", complete_output={})},
    )
    rt = Runtime(store=store)
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert state.error is not None and "vars['bad']" in state.error
    stored = await rt.get_state(run_id)
    assert stored.current_node == "b" and own_vars(stored) == {"ok": 1}
    ledger = await rt.get_ledger(run_id)
    assert [(r["node_id"], r["status"]) for r in ledger] == [("a", "completed"), ("b", "failed")]
