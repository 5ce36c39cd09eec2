"""``abstractruntime db backup``: a SQLite backup taken while a worker writes is consistent,
verifies, and restores (a worker finishes every run in it)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.provenance import verify_all
from abstractruntime.storage import SqlStore
from tests.acceptance.test_workers import (
    check_every_run,
    count_completed,
    start_worker,
    wait_until_completed,
)
from tests.acceptance.worker_app import TEN_STEPS
from tests.helpers import cli, eventually

ROOT = Path(__file__).resolve().parents[2]
RUNS = 150


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def test_backups_taken_under_load_verify_and_restore(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    log = tmp_path / "worker.log"
    async with SqlStore(url_of(live)) as store:
        rt = Runtime(store=store)
        run_ids = [await rt.start(workflow=TEN_STEPS) for _ in range(RUNS)]
        worker = start_worker(url_of(live), log)
        feeding = True

        async def feed() -> None:  # new runs all along: the worker never runs out of work
            while feeding:
                run_ids.append(await rt.start(workflow=TEN_STEPS))
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(feed())
        backups: list[tuple[Path, int]] = []
        try:
            for i in range(3):
                done_before = await count_completed(store)
                target = tmp_path / f"backup{i}.db"
                args = ("--json", "db", "backup", str(target))
                # In a thread: the feeder goes on starting runs meanwhile.
                result = await asyncio.to_thread(cli, *args, cwd=tmp_path, url=url_of(live))
                assert result.returncode == 0, result.stderr
                report = json.loads(result.stdout)
                assert report["path"] == str(target) and report["runs"] >= RUNS
                assert report["bytes"] == target.stat().st_size > 0
                backups.append((target, done_before))

                async def progressed(before: int = done_before) -> bool:
                    return await count_completed(store) > before

                await eventually(progressed, f"no progress: {log.read_text()}", timeout=60)
            feeding = False
            await feeder
            await wait_until_completed(store, len(run_ids), timeout=120)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            feeding = False
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    in_first: list[str] = []
    for target, done_before in backups:
        assert not list(tmp_path.glob(f".{target.name}.partial-*"))
        assert not Path(f"{target}-wal").exists()  # a standalone file
        async with SqlStore(url_of(target)) as copy:
            reports = [report async for report in verify_all(copy)]
            assert reports and all(r["ok"] for r in reports), reports
            completed = await count_completed(copy)
            assert completed >= done_before  # nothing committed before the backup is missing
            assert completed < len(reports)  # taken under load: some runs were mid-way
            if not in_first:
                in_first = [r["run_id"] for r in reports]
    # Restore the first backup in place of the database, and let a worker finish its runs.
    restored = tmp_path / "restored.db"
    shutil.copyfile(backups[0][0], restored)
    async with SqlStore(url_of(restored)) as store:
        worker = start_worker(url_of(restored), tmp_path / "restored.log")
        try:
            await wait_until_completed(store, len(in_first), timeout=120)
            await check_every_run(store, in_first)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)


async def test_a_backup_is_refused_with_a_clear_line_where_it_cannot_be_made(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live.db"
    async with SqlStore(url_of(live)) as store:
        _, state = await Runtime(store=store).run(TEN_STEPS)
        assert state.status is RunStatus.WAITING  # (a timer)
        with pytest.raises(ValueError, match="the backup target is the database itself"):
            await store.backup(live, overwrite=True)
    (tmp_path / "taken.db").write_bytes(b"keep me")
    for args, message in [
        (["db", "backup", str(tmp_path / "taken.db")], "exists; remove it or pass"),
        (["db", "backup", str(tmp_path)], "is a directory"),
        (["db", "backup", str(tmp_path / "no" / "dir.db")], "does not exist"),
    ]:
        result = cli(*args, cwd=tmp_path, url=url_of(live))
        assert result.returncode == 2 and message in result.stderr, result
        assert "Traceback" not in result.stderr
    assert (tmp_path / "taken.db").read_bytes() == b"keep me"
    result = cli(
        "db", "backup", "--force", str(tmp_path / "taken.db"), cwd=tmp_path, url=url_of(live)
    )
    assert result.returncode == 0 and "backed up 1 runs" in result.stdout
    async with SqlStore(url_of(tmp_path / "taken.db")) as copy:
        ledger = await copy.get_ledger((await copy.list_runs())[0].run_id)
        assert len(ledger) == 6 and verify_ledger_chain(ledger)["ok"]  # n0..n4, the timer


@pytest.mark.postgres
def test_postgres_backups_point_to_pg_dump(pg_url: str, tmp_path: Path) -> None:
    result = cli("db", "backup", str(tmp_path / "x.db"), cwd=tmp_path, url=pg_url)
    assert result.returncode == 2 and "pg_dump" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_an_in_memory_database_has_nothing_to_back_up(tmp_path: Path) -> None:
    env_url = "sqlite+aiosqlite://"
    result = cli("db", "backup", str(tmp_path / "x.db"), cwd=tmp_path, url=env_url)
    assert result.returncode == 2 and "in-memory database" in result.stderr
    assert os.listdir(tmp_path) == []
