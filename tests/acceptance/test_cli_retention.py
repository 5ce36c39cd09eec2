"""``runs export | purge``, ``ledger verify --file`` and ``db import-archive`` of the installed
``abstractruntime``, as subprocesses against SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from abstractruntime import Runtime, RuntimeConfig
from abstractruntime.storage import SqlStore
from tests.helpers import cli
from tests.integration.test_purge import ASK
from tests.workflows import counter

LONG_AGO = datetime.now(timezone.utc) - timedelta(days=40)


def _fill(url: str) -> dict[str, Any]:
    """Runs that ended 40 days ago: a tree (parent, child), a single run; a waiting one."""

    async def fill() -> dict[str, Any]:
        store = SqlStore(url)
        try:
            rt = Runtime(store=store, config=RuntimeConfig(clock=lambda: LONG_AGO))
            workflow = counter(3)
            parent, _ = await rt.run(workflow)
            child = await rt.start(workflow=workflow, parent_run_id=parent)
            await rt.tick(workflow=workflow, run_id=child)
            single, _ = await rt.run(workflow)
            waiting = await rt.start(workflow=ASK)
            await rt.tick(workflow=ASK, run_id=waiting)
            await store.artifacts.store(b"kept with its run", run_id=child)
            return {"tree": [parent, child], "single": single, "waiting": waiting}
        finally:
            await store.close()

    return asyncio.run(fill())


def _run_ids(url: str, tmp_path: Path) -> set[str]:
    listed = cli("--json", "runs", "list", "--limit", "100", cwd=tmp_path, url=url)
    assert listed.returncode == 0, listed.stderr
    return {run["run_id"] for run in json.loads(listed.stdout)}


def test_export_verify_purge_import(db_url: str, tmp_path: Path) -> None:
    runs = _fill(db_url)
    finished = {*runs["tree"], runs["single"]}

    # export to stdout: the archive; the summary on stderr
    exported = cli("runs", "export", "--older-than", "30d", cwd=tmp_path, url=db_url)
    assert exported.returncode == 0, exported.stderr
    archive = tmp_path / "stdout.jsonl"
    archive.write_text(exported.stdout)
    assert "exported 3 runs, 9 ledger records" in exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert {line["run_id"] for line in lines if line["type"] == "run"} == finished

    verified = cli("ledger", "verify", "--file", str(archive), cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "all 3 ledgers" in verified.stdout and "9 records" in verified.stdout

    # Nothing recent enough: a dry run counts, deletes nothing.
    dry = cli(
        "--json", "runs", "purge", "--older-than", "30d", "--dry-run", cwd=tmp_path, url=db_url
    )
    assert json.loads(dry.stdout) == {"dry_run": True, "runs": 3, "ledger_records": 9}
    assert finished <= _run_ids(db_url, tmp_path)
    none = cli("runs", "purge", "--older-than", "50d", cwd=tmp_path, url=db_url)
    assert none.returncode == 0 and "deleted 0 runs" in none.stdout

    saved = tmp_path / "purged.jsonl"
    purged = cli(
        "--json", "runs", "purge", "--older-than", "30d", "--export", str(saved), "--batch", "1",
        cwd=tmp_path, url=db_url,
    )  # fmt: skip
    assert purged.returncode == 0, purged.stderr
    counts = json.loads(purged.stdout)
    assert counts["exported"]["runs"] == 3
    assert counts["deleted"] == {"runs": 3, "ledger_records": 9, "snapshots": 0, "artifacts": 1}
    assert _run_ids(db_url, tmp_path) == {runs["waiting"]}

    imported = cli("db", "import-archive", str(saved), cwd=tmp_path, url=db_url)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 runs (9 ledger records, 0 snapshots, 1 artifacts)" in imported.stdout
    assert _run_ids(db_url, tmp_path) == {*finished, runs["waiting"]}
    every = cli("ledger", "verify", "--all", cwd=tmp_path, url=db_url)
    assert every.returncode == 0 and "all 4 ledgers intact" in every.stdout

    again = cli("--json", "db", "import-archive", str(saved), cwd=tmp_path, url=db_url)
    assert again.returncode == 0
    report = json.loads(again.stdout)
    assert report["imported"] == [] and sorted(report["skipped"]) == sorted(finished)


def test_a_tampered_archive_fails_verify_and_import(db_url: str, tmp_path: Path) -> None:
    runs = _fill(db_url)
    archive = tmp_path / "a.jsonl"
    exported = cli(
        "runs", "export", "--older-than", "30d", "--output", str(archive), cwd=tmp_path, url=db_url
    )
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 runs" in exported.stdout
    lines = archive.read_text().splitlines()
    victim = runs["single"]
    for i, text in enumerate(lines):
        item = json.loads(text)
        if item["type"] == "record" and item["run_id"] == victim:
            item["record"]["node_id"] = "forged"
            lines[i] = json.dumps(item)
            break
    archive.write_text("\n".join(lines) + "\n")

    verified = cli("ledger", "verify", "--file", str(archive), cwd=tmp_path)
    assert verified.returncode == 1
    assert f"run {victim}: chain BROKEN at index 0" in verified.stdout
    assert "1 problem in" in verified.stdout
    as_json = cli("--json", "ledger", "verify", "--file", str(archive), cwd=tmp_path)
    assert as_json.returncode == 1
    assert [b["run_id"] for b in json.loads(as_json.stdout)["broken"]] == [victim]

    purge = cli("runs", "purge", "--older-than", "30d", cwd=tmp_path, url=db_url)
    assert purge.returncode == 0 and "deleted 3 runs" in purge.stdout
    refused = cli("db", "import-archive", str(archive), cwd=tmp_path, url=db_url)
    assert refused.returncode == 1
    assert f"refused {victim}" in refused.stdout and "nothing imported" in refused.stdout
    assert _run_ids(db_url, tmp_path) == {runs["waiting"]}


def test_user_mistakes_are_one_line(tmp_path: Path, sqlite_url: str) -> None:
    cases = [
        (("runs", "purge", "--older-than=-3d"), 2, "not a duration"),
        (("runs", "purge", "--older-than", "30d", "--status", "running"), 2, "invalid choice"),
        (("runs", "purge"), 2, "--older-than"),
        (("runs", "export", "--older-than", "1d", "--batch", "0"), 2, "not a positive"),
        (("ledger", "verify", "--file", str(tmp_path / "none.jsonl")), 2, "cannot read archive"),
        (("ledger", "verify", "--file", "x", "--all"), 2, "no RUN_ID and no --all"),
        (("db", "import-archive", str(tmp_path / "none.jsonl")), 2, "no archive file"),
    ]
    (tmp_path / "x").write_text("{}\n")
    for args, status, message in cases:
        result = cli(*args, cwd=tmp_path, url=sqlite_url)
        assert result.returncode == status, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 or "usage" in result.stderr
