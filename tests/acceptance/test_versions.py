"""Rolling deploys: worker processes of two versions on one database, each run driven only by
the code it started with, through a kill -9 and a restart; ``runs list`` / ``runs migrate``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.storage import SqlStore
from tests.acceptance.versions_app import APPROVAL_V1, APPROVAL_V2, DEPLOY_V1, DEPLOY_V2, STEPS
from tests.helpers import EXE, cli, eventually

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 1.5
RUNS = 15


def start_worker(url: str, app: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                EXE,
                "--database-url",
                url,
                "worker",
                "--app",
                f"tests.acceptance.versions_app:{app}",
                "--poll-interval",
                "0.2",
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


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()


async def statuses(rt: Runtime, run_ids: list[str]) -> list[RunStatus]:
    return [(await rt.get_state(run_id)).status for run_id in run_ids]


async def test_each_run_is_driven_by_its_own_version_through_a_restart(
    db_url: str, tmp_path: Path
) -> None:
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    async with SqlStore(db_url) as store:
        await store.check()  # creates and migrates a SQLite file before the workers open it
        rt = Runtime(store=store)
        v1 = [await rt.start(workflow=DEPLOY_V1) for _ in range(RUNS)]
        old = start_worker(db_url, "old", old_log)
        new = start_worker(db_url, "new", new_log)
        try:
            v2 = [await rt.start(workflow=DEPLOY_V2) for _ in range(RUNS)]

            async def some_v1_progress() -> bool:
                return any(s is not RunStatus.RUNNING for s in await statuses(rt, v1))

            await eventually(some_v1_progress, "the old worker drove nothing", timeout=60)
            old.send_signal(signal.SIGKILL)
            assert old.wait(10) == -signal.SIGKILL

            async def v2_done() -> bool:
                return set(await statuses(rt, v2)) == {RunStatus.COMPLETED}

            await eventually(v2_done, "the new worker did not finish its runs", timeout=60)

            # The new worker never takes the old version's runs, even with their worker dead;
            # once the dead worker's heartbeat has expired, they are listed as orphaned.
            async def listed_orphaned() -> list[str]:
                result = cli("runs", "list", "--orphaned", "--json", cwd=ROOT, url=db_url)
                assert result.returncode == 0, result.stderr
                found = sorted(run["run_id"] for run in json.loads(result.stdout))
                pending = sorted(
                    run_id
                    for run_id, status in zip(v1, await statuses(rt, v1), strict=True)
                    if status is not RunStatus.COMPLETED
                )
                assert pending and found == pending, (found, pending)
                return found

            pending = await eventually(listed_orphaned, "no orphaned runs listed", timeout=30)
            assert set(await statuses(rt, pending)) <= {RunStatus.RUNNING, RunStatus.WAITING}

            old = start_worker(db_url, "old", old_log)  # the restart

            async def all_done() -> bool:
                return set(await statuses(rt, v1 + v2)) == {RunStatus.COMPLETED}

            await eventually(all_done, "the restarted old worker stalled", timeout=60)
            for version, run_ids in (("1", v1), ("2", v2)):
                for run_id in run_ids:
                    state = await rt.get_state(run_id)
                    assert state.workflow_version == version
                    assert state.output == {"driven_by": [version] * STEPS}, run_id
                    assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]
            for worker in (old, new):
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(30) == 0
        finally:
            stop(old)
            stop(new)
    assert "deploy (1)" in old_log.read_text() and "deploy (2)" in new_log.read_text()
    assert "Traceback" not in old_log.read_text() + new_log.read_text()


@pytest.mark.parametrize("dry_run", [True, False])
async def test_runs_migrate_moves_waiting_runs_from_the_command_line(
    sqlite_url: str, tmp_path: Path, dry_run: bool
) -> None:
    async with SqlStore(sqlite_url) as store:
        rt = Runtime(store=store, workflow_registry=[APPROVAL_V1])
        run_ids = sorted([(await rt.run(APPROVAL_V1))[0] for _ in range(3)])
    listing = cli("runs", "list", "--version", "1", cwd=ROOT, url=sqlite_url)
    assert listing.stdout.split("\n")[0].split()[:3] == ["RUN_ID", "WORKFLOW", "VERSION"]
    assert all(f"{run_id}  approval  1" in listing.stdout for run_id in run_ids)
    args = ["runs", "migrate", "approval", "--from", "1", "--to", "2", "--json"]
    args += ["--app", "tests.acceptance.versions_app:new", "--node-map", "review=approve"]
    args += ["--node-map", "done=finish", "--vars-fn", "tests.acceptance.versions_app:add_tier"]
    result = cli(*args, *(["--dry-run"] if dry_run else []), cwd=ROOT, url=sqlite_url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is dry_run and report["skipped"] == []
    assert sorted(m["run_id"] for m in report["moved"]) == run_ids
    async with SqlStore(sqlite_url) as store:
        rt = Runtime(store=store, workflow_registry=[APPROVAL_V2])
        for run_id in run_ids:
            state = await rt.get_state(run_id)
            if dry_run:
                assert state.workflow_version == "1" and "tier" not in state.vars
                continue
            state = await rt.resume(workflow=APPROVAL_V2, run_id=run_id, wait_key=None, payload={})
            assert state.output == {"version": "2", "answer": {}, "tier": "gold"}


def test_runs_migrate_reports_unmapped_runs_and_exits_1(sqlite_url: str, tmp_path: Path) -> None:
    import asyncio

    async def setup() -> str:
        async with SqlStore(sqlite_url) as store:
            rt = Runtime(store=store, workflow_registry=[APPROVAL_V1])
            return (await rt.run(APPROVAL_V1))[0]

    run_id = asyncio.run(setup())
    app = "tests.acceptance.versions_app:new"
    result = cli(
        "runs",
        "migrate",
        "approval",
        "--from",
        "1",
        "--to",
        "2",
        "--app",
        app,
        cwd=ROOT,
        url=sqlite_url,
    )
    assert result.returncode == 1
    assert "moved 0 runs, skipped 1" in result.stdout
    assert run_id in result.stdout and "'review' has no target" in result.stdout
    for bad, message in [
        (["--node-map", "review"], "expected OLD=NEW"),
        (["--to", "7"], "no version '7'"),
        (["--vars-fn", "nomodule_q:f"], "cannot import 'nomodule_q'"),
    ]:
        base = ["runs", "migrate", "approval", "--from", "1", "--to", "2", "--app", app]
        result = cli(*base, *bad, cwd=ROOT, url=sqlite_url)
        assert result.returncode == 2, result
        assert message in result.stderr and "Traceback" not in result.stderr
