"""Workflows the benchmarks run, importable by worker processes (``--app benchmarks.app:...``)."""

from __future__ import annotations

import time
from typing import Any

from abstractruntime import Effect, EffectOutcome, EffectType, RunState, StepPlan, WorkflowSpec

STEPS = 10

#: run_id -> perf_counter() when its first node ran (same-process latency measurements).
FIRST_STEP_AT: dict[str, float] = {}


def _node(i: int) -> Any:
    """Each node performs a trivial effect, so that every step commits (pure transitions would
    be committed together, ten to one commit)."""

    def node(run: RunState, ctx: Any) -> StepPlan:
        if i == 0:
            FIRST_STEP_AT.setdefault(run.run_id, time.perf_counter())
        last = i + 1 == STEPS
        return StepPlan(
            node_id=f"n{i}",
            effect=Effect(EffectType.TOOL_CALLS, {"i": i}, result_key="last"),
            next_node=None if last else f"n{i + 1}",
            complete_output={"n": STEPS} if last else None,
        )

    return node


def _trivial(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
    return EffectOutcome.completed(effect.payload["i"])


CHAIN = WorkflowSpec("bench_chain", "n0", {f"n{i}": _node(i) for i in range(STEPS)})
EFFECTS = {EffectType.TOOL_CALLS: _trivial}
#: For ``abstractruntime worker --app benchmarks.app:app``.
app = {"workflows": [CHAIN], "effect_handlers": EFFECTS}
