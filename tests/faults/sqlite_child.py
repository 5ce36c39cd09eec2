"""Child of the SQLite two-process test: ``N`` runs of an effectful chain at once, one file."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    Runtime,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime.storage import SqlStore


def _node(i: int) -> Any:
    def node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id=f"n{i}",
            effect=Effect(EffectType.TOOL_CALLS, {"i": i}, result_key=f"r{i}"),
            next_node=f"n{i + 1}" if i < 2 else None,
            complete_output={"done": True} if i == 2 else None,
        )

    return node


CHAIN = WorkflowSpec("busy", "n0", {f"n{i}": _node(i) for i in range(3)})


def echo(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
    return EffectOutcome.completed(effect.payload)


async def main(url: str, runs: int) -> None:
    async with SqlStore(url) as store:
        rt = Runtime(store=store, effect_handlers={EffectType.TOOL_CALLS: echo})
        results = await asyncio.gather(*(rt.run(CHAIN) for _ in range(runs)))
    print(json.dumps(sorted({state.status.value for _, state in results})))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
