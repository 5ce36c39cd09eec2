"""Child process of the crash-point tests: drives one run of ``EFFECTFUL`` until it completes or
``ABSTRACTRUNTIME_CRASH_POINTS`` kills it. Every execution of the effect is appended to a file."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    Runtime,
    RuntimeConfig,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime.storage import SqlStore
from tests.chaos.trace import append_line

LEASE_S = 0.5


def _call(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(
        node_id="call",
        effect=Effect(EffectType.TOOL_CALLS, {"charge": 42}, result_key="receipt"),
        next_node="done",
    )


def _done(run: RunState, ctx: Any) -> StepPlan:
    return StepPlan(node_id="done", complete_output={"receipt": run.vars["receipt"]})


EFFECTFUL = WorkflowSpec("effectful", "call", {"call": _call, "done": _done})


def recorder(path: str) -> Any:
    """An effect that leaves a durable trace of every execution (a payment, say)."""

    def charge(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        append_line(path, run.run_id)
        return EffectOutcome.completed({"charged": effect.payload["charge"]})

    return charge


def runtime(store: SqlStore, effects_log: str) -> Runtime:
    return Runtime(
        store=store,
        effect_handlers={EffectType.TOOL_CALLS: recorder(effects_log)},
        config=RuntimeConfig(lease_s=LEASE_S, max_batched_steps=1),
    )


async def main(url: str, run_id: str, effects_log: str) -> None:
    async with SqlStore(url) as store:
        await runtime(store, effects_log).tick(workflow=EFFECTFUL, run_id=run_id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
