"""Child process of the crash tests: ticks one run of ``slow_counter`` until killed."""

from __future__ import annotations

import asyncio
import sys

from abstractruntime import Runtime, RuntimeConfig
from abstractruntime.storage import SqlStore
from tests.workflows import slow_counter

LEASE_S = 1.0


async def main(url: str, run_id: str, steps: int, delay_s: float) -> None:
    async with SqlStore(url) as store:
        # A short lease so that the test's new runtime may take the run over soon after the kill.
        runtime = Runtime(store=store, config=RuntimeConfig(lease_s=LEASE_S))
        await runtime.tick(workflow=slow_counter(steps, delay_s), run_id=run_id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
