"""Kill -9 a process that is driving a run; a new process continues from the last commit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import sqlalchemy as sa

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.storage import SqlStore
from tests.acceptance.crash_child import LEASE_S
from tests.helpers import eventually, tick_when_unleased
from tests.workflows import slow_counter

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12
DELAY_S = 0.05


async def _ledger_length(store: SqlStore, run_id: str) -> int:
    async with store.engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.text("SELECT ledger_seq FROM abstractruntime_runs WHERE run_id = :r"),
                {"r": run_id},
            )
        )


async def test_kill_between_steps_then_continue_in_a_new_runtime(db_url: str) -> None:
    workflow = slow_counter(STEPS, DELAY_S)
    async with SqlStore(db_url) as store:
        run_id = await Runtime(store=store).start(workflow=workflow)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.acceptance.crash_child",
            db_url,
            run_id,
            str(STEPS),
            str(DELAY_S),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

        async def four_committed() -> bool:
            return await _ledger_length(store, run_id) >= 4

        try:
            await eventually(four_committed, "the child committed no steps", timeout=30)
        finally:
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
        committed = await Runtime(store=store).get_state(run_id)
        done_before = len(committed.vars["seen"])
        assert 4 <= done_before < STEPS
        assert committed.status is RunStatus.RUNNING
        assert committed.current_node == f"n{done_before}"

    # A brand-new store and runtime, as after a restart. The dead process's lease blocks it
    # until it expires (LEASE_S), then the run is taken over.
    async with SqlStore(db_url) as store:
        rt = Runtime(store=store)
        state = await tick_when_unleased(rt, workflow, run_id, timeout=LEASE_S + 5)
        assert state.status is RunStatus.COMPLETED
        assert state.output == {"seen": list(range(STEPS))}  # no step lost, none twice
        ledger = await rt.get_ledger(run_id)
        assert [r["node_id"] for r in ledger] == [f"n{i}" for i in range(STEPS)]
        assert verify_ledger_chain(ledger)["ok"]
