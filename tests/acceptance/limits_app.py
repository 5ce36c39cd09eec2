"""The app of the limit tests' workers (``worker --app tests.acceptance.limits_app:app``).

One workflow, ``limited``: one ``llm_call`` effect, then done. The effect appends ``start`` and
``end`` lines (run id, pid, wall time) to ``LIMITS_TRACE``, each fsynced before it goes on, so
the trace survives a SIGKILL. ``LIMITS_MODE``: ``concurrent`` (at most 2 effects at once) or
``rate`` (at most 20 per second); ``LIMITS_EFFECT_S``: how long an effect takes.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    Limit,
    RunState,
    StepPlan,
    WorkflowSpec,
)
from tests.chaos.trace import append_line

MAX_CONCURRENT = 2
RATE = 20


def _call(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(
        "call", effect=Effect(EffectType.LLM_CALL, {"prompt": "hi"}, "answer"), next_node="done"
    )


def _done(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan("done", complete_output={"answer": run.vars.get("answer")})


LIMITED = WorkflowSpec("limited", "call", {"call": _call, "done": _done})


def app() -> dict[str, Any]:
    trace = os.environ["LIMITS_TRACE"]
    effect_s = float(os.environ.get("LIMITS_EFFECT_S", "0.2"))
    if os.environ.get("LIMITS_MODE", "concurrent") == "rate":
        limit = Limit(effect_type=EffectType.LLM_CALL, rate=RATE, per_s=1.0)
    else:
        limit = Limit(effect_type=EffectType.LLM_CALL, max_concurrent=MAX_CONCURRENT)

    async def effect(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        append_line(trace, f"start {run.run_id} {os.getpid()} {time.time():.6f}")
        if effect_s:
            await asyncio.sleep(effect_s)
        append_line(trace, f"end {run.run_id} {os.getpid()} {time.time():.6f}")
        return EffectOutcome.completed({"pid": os.getpid()})

    return {
        "workflows": [LIMITED],
        "effect_handlers": {EffectType.LLM_CALL: effect},
        "limits": [limit],
    }
