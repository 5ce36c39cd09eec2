"""Child process of the SIGKILL test: commits steps to a file-store directory until killed.

It first finishes the runs a killed predecessor left running (no lease survives a process:
they are free at once), then starts run after run of ``counter``, committing every step
(``max_batched_steps=1``), and says "ready" once its first commit landed.
"""

from __future__ import annotations

import asyncio
import sys

from abstractruntime import (
    HashChainedLedgerStore,
    JsonFileRunStore,
    JsonlLedgerStore,
    RunStatus,
    Runtime,
    RuntimeConfig,
    WorkflowSpec,
)
from tests.workflows import slow_counter

COUNTER_STEPS = 25


def counter() -> WorkflowSpec:
    return slow_counter(COUNTER_STEPS, 0.0)


async def main(directory: str, generation: int) -> None:
    runs = JsonFileRunStore(directory)
    ledger = JsonlLedgerStore(directory)
    chained = HashChainedLedgerStore(ledger) if generation % 2 else ledger
    rt = Runtime(run_store=runs, ledger_store=chained, config=RuntimeConfig(max_batched_steps=1))
    announced = False
    for state in await runs.list_runs(status=RunStatus.RUNNING, limit=10_000):
        await rt.tick(workflow=counter(), run_id=state.run_id, max_steps=3)
        if not announced:
            print("ready", flush=True)
            announced = True
    while True:
        run_id = await rt.start(workflow=counter())
        await rt.tick(workflow=counter(), run_id=run_id, max_steps=7)  # some stay running
        if not announced:
            print("ready", flush=True)
            announced = True


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
