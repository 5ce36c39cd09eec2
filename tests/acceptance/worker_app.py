"""The app of the worker tests (``worker --app tests.acceptance.worker_app:registry``).

``ten_steps``: ten nodes, each appending its index to ``vars['seen']``; node 5 first waits
``WAIT_S`` (a ``wait_until``), so every run also goes through the scheduler's timer path.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from abstractruntime import Effect, EffectType, RunState, StepPlan, WorkflowRegistry, WorkflowSpec

STEPS = 10
WAIT_AT = 5
WAIT_S = 0.2


def _node(i: int) -> Any:
    async def node(run: RunState, ctx: Any) -> StepPlan:
        await asyncio.sleep(0.001)  # a little work, so runs interleave
        if i == WAIT_AT and "woke" not in run.vars:
            until = ctx.now() + timedelta(seconds=WAIT_S)
            return StepPlan(
                node_id=f"n{i}",
                effect=Effect(EffectType.WAIT_UNTIL, {"until": until.isoformat()}, "woke"),
                next_node=f"n{i}",
            )
        run.vars.setdefault("seen", []).append(i)
        if i + 1 < STEPS:
            return StepPlan(node_id=f"n{i}", next_node=f"n{i + 1}")
        return StepPlan(node_id=f"n{i}", complete_output={"seen": run.vars["seen"]})

    return node


TEN_STEPS = WorkflowSpec("ten_steps", "n0", {f"n{i}": _node(i) for i in range(STEPS)})
registry = WorkflowRegistry([TEN_STEPS])

#: The node ids of a run's ledger records, in order, when every step committed exactly once.
EXPECTED_LEDGER = (
    [f"n{i}" for i in range(WAIT_AT)]
    + [f"n{WAIT_AT}"] * 3
    + [f"n{i}" for i in range(WAIT_AT, STEPS)][1:]
)
