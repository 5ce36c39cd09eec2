"""The chaos test's app (``worker --app tests.chaos.app:app``): a mixed workload of effects,
pure transitions, a timer, a sync subworkflow, an event and a flaky effect that is retried.

Every execution of an effect appends ``run_id node pid`` to ``$CHAOS_EFFECT_LOG`` (fsynced) before
it returns, so the test can match executions against the ledger, and the processes killed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RetryPolicy,
    RunState,
    StepPlan,
    WorkflowSpec,
)
from tests.chaos.trace import append_line

LOG_ENV = "CHAOS_EFFECT_LOG"
EFFECT_NODES = {"chaos_main": ("a", "f"), "chaos_child": ("c0",)}


def executions(path: str) -> list[tuple[str, str, int]]:
    """``(run_id, node, pid)`` of every effect execution so far."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = (line.split() for line in text.splitlines() if line)
    return [(run_id, node, int(pid)) for run_id, node, pid in rows]


def perform(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
    path = os.environ[LOG_ENV]
    node = run.current_node or "?"
    before = sum(1 for r, n, _ in executions(path) if (r, n) == (run.run_id, node))
    append_line(path, f"{run.run_id} {node} {os.getpid()}")
    if effect.payload.get("flaky") and before == 0:
        return EffectOutcome.failed("flaky service: 503 on the first try", retryable=True)
    return EffectOutcome.completed({"node": node, "attempt": before + 1})


def _effect(node: str, nxt: str, **payload: Any) -> Any:
    def handler(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id=node,
            effect=Effect(EffectType.TOOL_CALLS, {"node": node, **payload}, result_key=node),
            next_node=nxt,
        )

    return handler


def _b(run: RunState, ctx: Any) -> StepPlan:
    run.vars["b"] = True  # a pure transition
    return StepPlan(node_id="b", next_node="c")


def _c(run: RunState, ctx: Any) -> StepPlan:
    until = ctx.now() + timedelta(seconds=0.2)
    return StepPlan(
        node_id="c",
        effect=Effect(EffectType.WAIT_UNTIL, {"until": until.isoformat()}, result_key="woke"),
        next_node="d",
    )


def _d(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(
        node_id="d",
        effect=Effect(
            EffectType.START_SUBWORKFLOW,
            {"workflow_id": "chaos_child", "vars": {"parent": run.run_id}},
            result_key="child",
        ),
        next_node="e",
    )


def _e(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(
        node_id="e",
        effect=Effect(EffectType.WAIT_EVENT, {"wait_key": f"evt:{run.run_id}"}, result_key="evt"),
        next_node="f",
    )


def _g(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(node_id="g", complete_output=expected_output(run.vars))


def expected_output(vars: dict[str, Any]) -> dict[str, Any]:
    return {
        "a": vars["a"]["node"],
        "b": vars["b"],
        "child": vars["child"]["output"],
        "evt": vars["evt"],
        "f": vars["f"]["node"],
    }


MAIN = WorkflowSpec(
    "chaos_main",
    "a",
    {
        "a": _effect("a", "b"),
        "b": _b,
        "c": _c,
        "d": _d,
        "e": _e,
        "f": _effect("f", "g", flaky=True),
        "g": _g,
    },
)
CHILD = WorkflowSpec(
    "chaos_child",
    "c0",
    {
        "c0": _effect("c0", "c1"),
        "c1": lambda run, ctx: StepPlan(node_id="c1", next_node="c2"),
        "c2": lambda run, ctx: StepPlan(node_id="c2", complete_output={"c0": run.vars["c0"]}),
    },
)

app = {
    "workflows": [MAIN, CHILD],
    "effect_handlers": {EffectType.TOOL_CALLS: perform},
    "effect_policy": RetryPolicy(tool_max_attempts=3, backoff_base=0.05),
}
