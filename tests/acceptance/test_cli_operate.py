"""The ``runs``, ``ledger`` and ``snapshot`` commands of the installed ``abstractruntime``, run as
subprocesses against SQLite and Postgres."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime.core.serde import canonical_json, decode
from abstractruntime.storage import SqlStore
from tests.helpers import EXE, cli

APP = "abstractruntime.demo:DEMO_WORKFLOW"


def ok(*args: str, cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    result = cli(*args, cwd=cwd, url=url)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert result.stderr == ""  # no progress noise when stderr is not a terminal
    return result


def data(*args: str, cwd: Path, url: str) -> Any:
    return json.loads(ok("--json", *args, cwd=cwd, url=url).stdout)


def _columns_aligned(text: str) -> None:
    """Every cell of a table starts where its header starts."""
    header, *rows = text.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    for row in rows:
        for start in starts[1:]:
            assert row[start - 2 : start] == "  " and row[start] != " ", (header, row)


def test_operate_runs_ledgers_and_snapshots(db_url: str, tmp_path: Path) -> None:
    def run(*args: str) -> str:
        return ok(*args, cwd=tmp_path, url=db_url).stdout

    def js(*args: str) -> Any:
        return data(*args, cwd=tmp_path, url=db_url)

    run("demo")  # a run waiting for an answer
    runs = js("runs", "list", "--status", "waiting")
    assert len(runs) == 1
    run_id = runs[0]["run_id"]
    listing = run("runs", "list")
    assert listing.startswith("RUN_ID") and run_id in listing
    _columns_aligned(listing)

    shown = js("runs", "show", run_id)
    assert shown["state"]["status"] == "waiting" and shown["ledger"]["count"] == 2
    assert "Approve the expense" in run("runs", "show", run_id)

    tags = ["--tag", "Prod", "--tag", "eu"]
    snap = js("snapshot", "create", run_id, "--name", "Before approval", *tags)
    assert snap["run_id"] == run_id and snap["tags"] == ["Prod", "eu"]
    assert snap["step_id"] is not None  # the run's last ledger step
    tagged = js("snapshot", "list", "--tag", "PROD")
    assert [s["snapshot_id"] for s in tagged] == [snap["snapshot_id"]]
    assert js("snapshot", "list", "--query", "APPROVAL")[0]["name"] == "Before approval"
    assert js("snapshot", "list", "--query", "%") == []
    snapshots = run("snapshot", "list")
    assert "Before approval" in snapshots and "Prod, eu" in snapshots
    _columns_aligned(snapshots)

    done = js("runs", "respond", run_id, "--app", APP, "--payload", '{"answer": "yes"}')
    assert done["status"] == "completed" and done["output"] == {"approved": True, "amount": 420}
    ledger = js("ledger", "show", run_id)
    assert [r["node_id"] for r in ledger] == ["submit", "approve", "approve", "decide"]
    table = run("ledger", "show", run_id)
    assert len(table.splitlines()) == 5
    _columns_aligned(table)
    assert "ledger intact, 4 records" in run("ledger", "verify", run_id)

    restored = js("snapshot", "restore", snap["snapshot_id"])
    assert restored["run_id"] == run_id and restored["status"] == "waiting"
    fork = js("snapshot", "fork", snap["snapshot_id"])
    assert fork["parent_run_id"] == run_id and fork["status"] == "waiting"
    cancelled = js("runs", "cancel", fork["run_id"], "--reason", "not needed")
    assert cancelled["status"] == "cancelled"
    assert js("runs", "show", run_id)["state"]["status"] == "waiting"

    # 4 records + the restore; the fork's first record + its cancellation.
    summary = js("ledger", "verify", "--all")
    assert summary == {"ok": True, "runs": 2, "records": 7, "broken": []}
    assert "all 2 ledgers intact" in run("ledger", "verify", "--all")

    assert js("snapshot", "delete", snap["snapshot_id"]) == {"deleted": snap["snapshot_id"]}
    assert js("snapshot", "list") == []


def test_options_go_before_or_after_the_command(sqlite_url: str, tmp_path: Path) -> None:
    ok("demo", cwd=tmp_path, url=sqlite_url)
    after = cli("runs", "list", "--json", "--database-url", sqlite_url, cwd=tmp_path)
    first = cli("--database-url", sqlite_url, "--json", "runs", "list", cwd=tmp_path)
    assert after.returncode == first.returncode == 0
    assert json.loads(after.stdout) == json.loads(first.stdout)


async def _tamper(url: str, run_id: str, seq: int) -> None:
    """Edit one ledger row with plain SQL, as an attacker with database access would."""
    async with SqlStore(url) as store, store.engine.begin() as conn:
        params = {"run": run_id, "seq": seq}
        text = await conn.scalar(
            sa.text(
                "SELECT CAST(record AS TEXT) FROM abstractruntime_ledger "
                "WHERE run_id = :run AND seq = :seq"
            ),
            params,
        )
        forged = canonical_json({**decode(text), "result": {"answer": "forged"}})
        await conn.execute(
            sa.text(
                "UPDATE abstractruntime_ledger SET record = :record "
                "WHERE run_id = :run AND seq = :seq"
            ),
            {"record": forged, **params},
        )


async def test_a_tampered_ledger_fails_verification(db_url: str, tmp_path: Path) -> None:
    ok("demo", cwd=tmp_path, url=db_url)
    ok("demo", "--answer", "yes", cwd=tmp_path, url=db_url)
    ok("demo", cwd=tmp_path, url=db_url)  # a second, intact run
    runs = data("runs", "list", cwd=tmp_path, url=db_url)
    tampered = next(r["run_id"] for r in runs if r["status"] == "completed")
    await _tamper(db_url, tampered, 2)

    result = cli("ledger", "verify", "--all", cwd=tmp_path, url=db_url)
    assert result.returncode == 1, result.stderr
    assert f"run {tampered}: chain BROKEN at index 2" in result.stdout
    assert "1 of 2 runs have a broken ledger" in result.stdout

    one = cli("--json", "ledger", "verify", tampered, cwd=tmp_path, url=db_url)
    assert one.returncode == 1
    report = json.loads(one.stdout)
    assert report["run_id"] == tampered and report["first_bad_index"] == 2
    assert report["errors"][0]["error"] == "record_hash does not match the record's content"
    assert report["errors"][0]["type"] == "record_hash_mismatch"

    summary = json.loads(
        cli("--json", "ledger", "verify", "--all", cwd=tmp_path, url=db_url).stdout
    )
    assert summary["ok"] is False and summary["runs"] == 2
    assert [(b["run_id"], b["first_bad_index"]) for b in summary["broken"]] == [(tampered, 2)]


async def test_a_forged_ledger_column_fails_verification(db_url: str, tmp_path: Path) -> None:
    """The node_id column edited by hand: the chain of records is intact, but SQL queries see
    the forged value, so ``ledger verify`` must report it."""
    ok("demo", cwd=tmp_path, url=db_url)
    ok("demo", "--answer", "yes", cwd=tmp_path, url=db_url)
    ok("demo", cwd=tmp_path, url=db_url)  # a second, intact run
    runs = data("runs", "list", cwd=tmp_path, url=db_url)
    forged = next(r["run_id"] for r in runs if r["status"] == "completed")
    shown = data("ledger", "show", forged, cwd=tmp_path, url=db_url)
    async with SqlStore(db_url) as store, store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE abstractruntime_ledger SET node_id = 'forged' "
                "WHERE run_id = :run AND seq = 1"
            ),
            {"run": forged},
        )

    result = cli("ledger", "verify", "--all", cwd=tmp_path, url=db_url)
    assert result.returncode == 1, result.stderr
    node = shown[1]["node_id"]
    said = f"column 'node_id' holds 'forged' but the hashed record says {node!r}"
    assert f"run {forged}: chain BROKEN at index 1: {said}" in result.stdout
    assert "1 of 2 runs have a broken ledger" in result.stdout

    one = cli("--json", "ledger", "verify", forged, cwd=tmp_path, url=db_url)
    assert one.returncode == 1
    [error] = json.loads(one.stdout)["errors"]
    assert error["type"] == "column_mismatch" and error["index"] == 1
    assert (error["column"], error["stored"], error["hashed"]) == ("node_id", "forged", node)


def _old_sqlite_file(tmp_path: Path) -> str:
    """A SQLite database at the first revision that the store did not create itself, so it is
    not upgraded behind the operator's back."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    ok("db", "upgrade", cwd=tmp_path, url=url)
    ok("db", "downgrade", "0001_initial", cwd=tmp_path, url=url)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("PRAGMA application_id=0")
    return url


@pytest.mark.parametrize(
    ("args", "url", "expected"),
    [
        (["runs", "list"], "mysql://root:hunter2@localhost/db", "unsupported database 'mysql'"),
        (["runs", "list"], "not a url", "is not a database URL"),
        (
            ["ledger", "verify", "--all"],
            "postgresql://app:hunter2@127.0.0.1:1/db",
            "cannot open database postgresql+asyncpg://app:***@127.0.0.1:1/db",
        ),
        (["runs", "list"], "OLD", "is at '0001_initial'"),
        (["runs", "show", "nope"], None, "unknown run 'nope'"),
        (["ledger", "show", "nope"], None, "unknown run 'nope'"),
        (["ledger", "verify", "nope"], None, "unknown run 'nope'"),
        (["snapshot", "create", "nope", "--name", "x"], None, "unknown run 'nope'"),
        (["snapshot", "restore", "nope"], None, "unknown snapshot 'nope'"),
        (
            ["runs", "respond", "nope", "--app", APP, "--payload", "{'a': 1}"],
            None,
            "--payload is not valid JSON",
        ),
        (["runs", "respond", "x", "--app", APP, "--payload", "[1]"], None, "JSON object"),
        (["runs", "respond", "nope", "--app", APP, "--payload", "{}"], None, "unknown run"),
        (["runs", "respond", "x", "--app", "nope:x", "--payload", "{}"], None, "cannot import"),
        (["ledger", "verify"], None, "needs a RUN_ID or --all"),
        (["runs", "list", "--status", "bogus"], None, "invalid choice: 'bogus'"),
    ],
)
def test_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], url: str | None, expected: str
) -> None:
    if url is None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
    elif url == "OLD":
        url = _old_sqlite_file(tmp_path)
    result = cli("--database-url", url, *args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    if expected.startswith("is at"):
        assert "db upgrade" in result.stderr  # and it says what to do


def _with_terminal_stderr(*args: str, cwd: Path, url: str) -> tuple[int, str]:
    """Run the command with stderr on a pseudo-terminal; returns (status, what it showed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "ABSTRACTRUNTIME_DATABASE_URL": url}
    try:
        proc = subprocess.run(
            [EXE, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, timeout=60
        )
    finally:
        os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.returncode, shown.decode()


def test_progress_shows_on_a_terminal_only(sqlite_url: str, tmp_path: Path) -> None:
    ok("demo", cwd=tmp_path, url=sqlite_url)
    status, shown = _with_terminal_stderr("ledger", "verify", "--all", cwd=tmp_path, url=sqlite_url)
    assert status == 0
    assert "verified 1 runs" in shown and shown.endswith("\r\x1b[2K")  # and erased after
    piped = cli("ledger", "verify", "--all", cwd=tmp_path, url=sqlite_url)
    assert piped.returncode == 0 and piped.stderr == ""
