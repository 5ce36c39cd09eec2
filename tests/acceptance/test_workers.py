"""Worker processes sharing one database: a durable work queue that survives kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.storage import SqlStore
from tests.acceptance.worker_app import EXPECTED_LEDGER, STEPS, TEN_STEPS
from tests.helpers import EXE, eventually

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.acceptance.worker_app:registry"
LEASE_S = 2.0


def start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                EXE,
                "--database-url",
                url,
                "worker",
                "--app",
                APP,
                "--poll-interval",
                "0.5",
                "--lease",
                str(LEASE_S),
                "--grace",
                "5",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def count_completed(store: SqlStore) -> int:
    async with store.engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.text("SELECT count(*) FROM abstractruntime_runs WHERE status = 'completed'")
            )
        )


async def wait_until_completed(store: SqlStore, n: int, timeout: float) -> None:
    async def all_completed() -> bool:
        done = await count_completed(store)
        assert done >= n, f"only {done} of {n} runs completed"
        return True

    await eventually(all_completed, "the workers stalled", timeout=timeout, interval=0.1)


async def check_every_run(store: SqlStore, run_ids: list[str]) -> None:
    rt = Runtime(store=store)
    for run_id in run_ids:
        state = await rt.get_state(run_id)
        assert state.status is RunStatus.COMPLETED, (run_id, state.status, state.error)
        assert state.output == {"seen": list(range(STEPS))}
        ledger = await rt.get_ledger(run_id)
        assert verify_ledger_chain(ledger)["ok"], run_id
        # Exactly one committed record per step: no step committed twice, none lost.
        assert [r["node_id"] for r in ledger] == EXPECTED_LEDGER, run_id


@pytest.mark.postgres
async def test_four_postgres_workers_survive_a_kill_9(pg_url: str, tmp_path: Path) -> None:
    runs = 500
    workers = [start_worker(pg_url, tmp_path / f"worker{i}.log") for i in range(4)]
    try:
        async with SqlStore(pg_url) as store:
            rt = Runtime(store=store)
            run_ids = [await rt.start(workflow=TEN_STEPS) for _ in range(runs)]
            await wait_until_completed(store, runs // 2, timeout=120)
            workers[0].send_signal(signal.SIGKILL)
            assert workers[0].wait(10) == -signal.SIGKILL
            await wait_until_completed(store, runs, timeout=120)
            await check_every_run(store, run_ids)
            async with store.engine.connect() as conn:
                held = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM abstractruntime_runs WHERE lease_owner IS NOT NULL"
                    )
                )
            assert held == 0  # nothing left claimed (the dead worker's leases were taken over)
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for i, worker in enumerate(workers[1:], start=1):
            assert worker.wait(30) == 0, (tmp_path / f"worker{i}.log").read_text()
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(1, 4))
        assert "stopped:" in logs and "Traceback" not in logs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


async def test_one_sqlite_worker_drives_started_runs(sqlite_url: str, tmp_path: Path) -> None:
    async with SqlStore(sqlite_url) as store:
        rt = Runtime(store=store)
        run_ids = [await rt.start(workflow=TEN_STEPS) for _ in range(20)]
        worker = start_worker(sqlite_url, tmp_path / "worker.log")
        try:
            await wait_until_completed(store, len(run_ids), timeout=60)
            await check_every_run(store, run_ids)
            worker.send_signal(signal.SIGINT)
            assert worker.wait(30) == 0, (tmp_path / "worker.log").read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_worker_with_a_bad_app_is_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    for app, message in [
        ("nomodule_xyz:registry", "cannot import 'nomodule_xyz'"),
        ("tests.acceptance.worker_app:nothing", "has no 'nothing'"),
        ("justamodule", "expected MODULE:ATTR"),
    ]:
        result = subprocess.run(
            [EXE, "--database-url", url, "worker", "--app", app],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


async def test_a_verbose_sqlite_worker_logs_no_driver_noise(
    sqlite_url: str, tmp_path: Path
) -> None:
    """``-v`` turns on abstractruntime's DEBUG lines, not aiosqlite's (one per call)."""
    log = tmp_path / "worker.log"
    async with SqlStore(sqlite_url) as store:
        await store.check()
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [
                    EXE,
                    "--database-url",
                    sqlite_url,
                    "worker",
                    "--app",
                    APP,
                    "-v",
                    "--poll-interval",
                    "0.05",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            rt = Runtime(store=store)
            run_id = await rt.start(workflow=TEN_STEPS)
            await wait_until_completed(store, 1, timeout=60)
            await check_every_run(store, [run_id])
            worker.send_signal(signal.SIGINT)
            assert worker.wait(30) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    text = log.read_text()
    assert "ten_steps (1)" in text and "stopped:" in text
    assert " aiosqlite:" not in text, text  # the logger name, not the URL
