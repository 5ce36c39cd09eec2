"""A worker process, started after the runs parked, times out their waits (real time, ~1 s)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.storage import SqlStore
from tests.acceptance.timeout_app import PROMPT
from tests.helpers import EXE, eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_a_worker_started_later_times_out_the_waits(db_url: str, tmp_path: Path) -> None:
    async with SqlStore(db_url) as store:
        await store.check()
        rt = Runtime(store=store)
        run_ids = [(await rt.run(PROMPT))[0] for _ in range(5)]  # this process only parks them
        await rt.aclose()
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [
                    EXE,
                    "--database-url",
                    db_url,
                    "worker",
                    "--app",
                    "tests.acceptance.timeout_app:registry",
                    "--poll-interval",
                    "5",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:

            async def all_timed_out() -> bool:
                states = [await store.load_run(run_id) for run_id in run_ids]
                assert all(h.state.status is RunStatus.COMPLETED for h in states), log.read_text()
                return True

            # Their due time is their timeout: the worker claims them then, whatever its poll.
            await eventually(all_timed_out, "the worker did not time the runs out", timeout=30)
            for run_id in run_ids:
                state = (await store.load_run(run_id)).state
                assert state.output is not None and state.output["at"] == "late"
                assert state.output["r"]["timed_out"] is True
                ledger = await store.get_ledger(run_id)
                assert verify_ledger_chain(ledger)["ok"] is True
            worker.send_signal(signal.SIGINT)
            assert worker.wait(30) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
