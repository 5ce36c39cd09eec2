"""Three worker processes racing over one cron schedule on Postgres: one run per fire time, even
when a worker is killed between creating a fire time's run and moving the schedule on."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from abstractruntime import RunStatus
from abstractruntime.core import crashpoints
from abstractruntime.core.schedules import check_definition, fire_run_id
from abstractruntime.core.serde import utc_now
from abstractruntime.storage import SqlStore
from tests.acceptance.test_workers import check_every_run, start_worker
from tests.acceptance.worker_app import TEN_STEPS
from tests.helpers import eventually

FIRES = 30


def start_crashing_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    """A worker killed (SIGKILL) right after it created its first fire time's run."""
    os.environ[crashpoints.ENV] = "after_fire@1"
    try:
        return start_worker(url, log)
    finally:
        del os.environ[crashpoints.ENV]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_three_workers_one_schedule_every_second_one_run_per_fire_time(
    pg_url: str, tmp_path: Path
) -> None:
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with SqlStore(pg_url) as store:
            schedule = check_definition(
                "every-second",
                TEN_STEPS.workflow_id,
                "* * * * * *",
                tz="UTC",
                catch_up="all",
                vars={"from": "cron"},
                now=utc_now(),
            )
            await store.schedules.put(schedule)

            # One worker first, killed mid-fire: its run exists, the schedule did not move on.
            first = start_crashing_worker(pg_url, tmp_path / "crashed.log")
            workers.append(first)
            assert first.wait(60) == -signal.SIGKILL, (tmp_path / "crashed.log").read_text()
            (crashed_fire,) = await store.list_runs(workflow_id=TEN_STEPS.workflow_id)
            stuck = await store.schedules.get("every-second")
            assert stuck is not None and stuck.last_run_id is None
            assert stuck.next_fire_at.isoformat() == crashed_fire.vars["scheduled_at"]

            # Three workers race over it from then on.
            workers += [start_worker(pg_url, tmp_path / f"worker{i}.log") for i in range(3)]
            last_wanted = stuck.next_fire_at + timedelta(seconds=FIRES - 1)

            async def fired_enough() -> bool:
                now = await store.schedules.get("every-second")
                assert now is not None and now.last_fired_at is not None
                return now.last_fired_at >= last_wanted

            await eventually(fired_enough, "the workers did not fire 30 times", timeout=90)
            assert await store.schedules.delete("every-second")

            runs = await store.list_runs(workflow_id=TEN_STEPS.workflow_id, limit=10_000)
            fired = sorted(s.vars["scheduled_at"] for s in runs)
            first_fire = stuck.next_fire_at
            expected = [(first_fire + timedelta(seconds=i)).isoformat() for i in range(len(fired))]
            # One run per fire time: none missing (the crash's included), none twice.
            assert fired == expected and len(fired) >= FIRES
            assert {s.run_id for s in runs} == {
                fire_run_id("every-second", first_fire + timedelta(seconds=i))
                for i in range(len(fired))
            }
            # And every run is driven to its end exactly once per step.
            await eventually(
                lambda: _all_done(store, len(fired)),
                "the scheduled runs did not finish",
                timeout=60,
            )
            await check_every_run(store, [s.run_id for s in runs])
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for i, worker in enumerate(workers[1:]):
            assert worker.wait(30) == 0, (tmp_path / f"worker{i}.log").read_text()
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(3))
        assert "Traceback" not in logs and "firing failed" not in logs, logs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


async def _all_done(store: SqlStore, n: int) -> bool:
    done = await store.list_runs(
        workflow_id=TEN_STEPS.workflow_id, status=RunStatus.COMPLETED, limit=10_000
    )
    return len(done) >= n
