"""Size limits: a state or payload over its RuntimeConfig limit is a clear error, never stored."""

from __future__ import annotations

from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    SerializationError,
    SizeLimitError,
    StepPlan,
    WorkflowSpec,
)
from tests.helpers import own_vars
from tests.workflows import APPROVAL, llm_agent_step

LIMITS = RuntimeConfig(max_state_bytes=4096, max_payload_bytes=2048)


def grow(size: int) -> WorkflowSpec:
    def node(run: RunState, ctx: Any) -> StepPlan:
        run.vars["blob"] = "é" * size  # two bytes each in UTF-8
        return StepPlan(node_id="grow", complete_output={})

    return WorkflowSpec("grow", "grow", {"grow": node})


async def test_a_step_that_grows_the_state_over_the_limit_fails_naming_it(store: Any) -> None:
    rt = Runtime(store=store, config=LIMITS)
    run_id, state = await rt.run(grow(3000))  # 6000 bytes
    assert state.status is RunStatus.FAILED
    assert state.error is not None
    assert "RuntimeConfig.max_state_bytes = 4096 bytes" in state.error
    assert "artifacts" in state.error
    stored = await rt.get_state(run_id)
    assert own_vars(stored) == {} and stored.status is RunStatus.FAILED  # the last good state
    _, ok = await rt.run(grow(1000))
    assert ok.status is RunStatus.COMPLETED


async def test_start_refuses_vars_over_the_limit_and_creates_nothing(store: Any) -> None:
    rt = Runtime(store=store, config=LIMITS)
    with pytest.raises(SizeLimitError, match="max_state_bytes") as caught:
        await rt.start(workflow=APPROVAL, vars={"big": "x" * 5000})
    assert isinstance(caught.value, SerializationError) and isinstance(caught.value, ValueError)
    assert caught.value.size > 5000 and caught.value.limit == 4096
    assert await store.list_runs() == []


async def test_resume_refuses_a_payload_over_the_limit_and_keeps_waiting(store: Any) -> None:
    rt = Runtime(store=store, config=LIMITS)
    run_id, state = await rt.run(APPROVAL)
    assert state.waiting is not None
    with pytest.raises(SizeLimitError, match="resume payload cannot be stored"):
        await rt.resume(
            workflow=APPROVAL,
            run_id=run_id,
            wait_key=state.waiting.wait_key,
            payload={"text": "y" * 3000},
        )
    assert (await rt.get_state(run_id)).status is RunStatus.WAITING
    done = await rt.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "yes"}
    )
    assert done.status is RunStatus.COMPLETED


async def test_an_effect_result_over_the_limit_fails_the_step(store: Any) -> None:
    def huge(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        return EffectOutcome.completed({"content": "z" * 4000})

    rt = Runtime(store=store, config=LIMITS, effect_handlers={EffectType.LLM_CALL: huge})
    run_id, state = await rt.run(llm_agent_step())
    assert state.status is RunStatus.FAILED
    assert state.error is not None
    assert "the result of effect 'llm_call' cannot be stored" in state.error
    assert "max_payload_bytes" in state.error
    ledger = await rt.get_ledger(run_id)
    assert [(r["status"], r["result"]) for r in ledger] == [("failed", None)]


async def test_an_effect_payload_that_cannot_be_recorded_is_not_performed(store: Any) -> None:
    calls = 0

    def handler(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        nonlocal calls
        calls += 1
        return EffectOutcome.completed({})

    def node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="n", effect=Effect(EffectType.LLM_CALL, {"prompt": "p" * 3000}), next_node="n"
        )

    wf = WorkflowSpec("big_payload", "n", {"n": node})
    rt = Runtime(store=store, config=LIMITS, effect_handlers={EffectType.LLM_CALL: handler})
    _, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED and calls == 0
    assert "the payload of effect 'llm_call' cannot be stored" in (state.error or "")


async def test_a_ledger_record_over_the_limit_fails_the_step_naming_it(store: Any) -> None:
    def echo(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        return EffectOutcome.completed({"echo": effect.payload["prompt"]})

    def node(run: RunState, ctx: Any) -> StepPlan:  # payload and result each under 2048
        return StepPlan(
            node_id="n",
            effect=Effect(EffectType.LLM_CALL, {"prompt": "p" * 1200}, result_key="r"),
            next_node="done",
        )

    wf = WorkflowSpec(
        "big_record",
        "n",
        {"n": node, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})},
    )
    config = RuntimeConfig(max_payload_bytes=2048, max_record_bytes=2048)
    rt = Runtime(store=store, config=config, effect_handlers={EffectType.LLM_CALL: echo})
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert "the ledger record of node 'n' cannot be stored" in (state.error or "")
    assert "RuntimeConfig.max_record_bytes = 2048 bytes" in (state.error or "")
    ledger = await rt.get_ledger(run_id)
    assert [(r["status"], r["result"]) for r in ledger] == [("failed", None)]
    ok = Runtime(store=store, effect_handlers={EffectType.LLM_CALL: echo})  # default limits
    assert (await ok.run(wf))[1].status is RunStatus.COMPLETED


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1024"):
        RuntimeConfig(max_state_bytes=10)
