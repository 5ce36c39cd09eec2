"""Postgres restarted under load: workers log, back off, reconnect and finish every run; no run is
left claimed. The server is a throwaway one of the test's own, so stopping it harms nobody."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from abstractruntime import RunStatus, Runtime
from abstractruntime.provenance import verify_all
from abstractruntime.storage import SqlStore
from tests.acceptance.worker_app import EXPECTED_LEDGER, STEPS, TEN_STEPS
from tests.faults import pg_server
from tests.faults.pg_server import ThrowawayPostgres
from tests.helpers import EXE, eventually

ROOT = Path(__file__).resolve().parents[2]
RUNS = 120


async def completed(store: SqlStore) -> int:
    async with store.engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.text("SELECT count(*) FROM abstractruntime_runs WHERE status = 'completed'")
            )
        )


async def completed_at_least(store: SqlStore, n: int) -> bool:
    done = await completed(store)
    assert done >= n, f"only {done} of {n} runs completed"
    return True


@pytest.mark.slow
@pytest.mark.postgres
async def test_workers_survive_a_postgres_restart(tmp_path: Path) -> None:
    missing = pg_server.available()
    if missing:
        pytest.skip(missing)
    server = ThrowawayPostgres()
    server.init()
    server.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with SqlStore(server.url) as store:
            await store.upgrade()
            rt = Runtime(store=store)
            run_ids = [await rt.start(workflow=TEN_STEPS) for _ in range(RUNS)]
        for i in range(2):
            with (tmp_path / f"worker{i}.log").open("wb") as out:
                workers.append(
                    subprocess.Popen(
                        [
                            EXE,
                            "--database-url",
                            server.url,
                            "worker",
                            "--app",
                            "tests.acceptance.worker_app:registry",
                            "--poll-interval",
                            "0.2",
                            "--lease",
                            "2",
                            "--max-concurrency",
                            "20",
                        ],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

        async with SqlStore(server.url) as store:
            await eventually(
                lambda: completed_at_least(store, RUNS // 4),
                "the workers made no progress",
                timeout=60,
                interval=0.05,
            )
        await asyncio.to_thread(server.stop, "immediate")  # a crash of the server
        await asyncio.sleep(2)
        assert all(worker.poll() is None for worker in workers), "a worker died with the server"
        await asyncio.to_thread(server.start)

        async with SqlStore(server.url) as store:
            await eventually(
                lambda: completed_at_least(store, RUNS),
                "the workers stalled",
                timeout=120,
                interval=0.2,
            )
            rt = Runtime(store=store)
            for run_id in run_ids:
                state = await rt.get_state(run_id)
                assert state.status is RunStatus.COMPLETED
                assert state.output == {"seen": list(range(STEPS))}
                ledger = await rt.get_ledger(run_id)
                assert [r["node_id"] for r in ledger] == EXPECTED_LEDGER  # no step twice
            assert all([report["ok"] async for report in verify_all(store)])
            async with store.engine.connect() as conn:
                held = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM abstractruntime_runs WHERE lease_owner IS NOT NULL"
                    )
                )
            assert held == 0
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for i, worker in enumerate(workers):
            assert worker.wait(30) == 0, (tmp_path / f"worker{i}.log").read_text()
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        assert "poll cycle failed; retrying in" in logs  # they noticed, backed off, went on
        assert "LISTEN connection" in logs or "cannot LISTEN" in logs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        server.remove()
