"""``abstractruntime schedules list | add | remove``, run as a subprocess on SQLite and Postgres."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import cli


def test_add_list_update_remove(db_url: str, tmp_path: Path) -> None:
    def run(*args: str, status: int = 0) -> str:
        result = cli(*args, cwd=tmp_path, url=db_url)
        assert result.returncode == status, (args, result.stdout, result.stderr)
        return result.stdout if status == 0 else result.stderr

    def js(*args: str) -> Any:
        return json.loads(run("--json", *args))

    assert run("schedules", "list").strip() == "(no schedules)"
    out = run("schedules", "add", "nightly", "report", "0 3 * * *", "--vars", '{"k": 1}')
    assert out.startswith("schedule nightly created; next fire at ")
    assert "unchanged" in run(
        "schedules", "add", "nightly", "report", "0 3 * * *", "--vars", '{"k": 1}'
    )
    added = js(
        "schedules", "add", "nightly", "report", "30 2 * * *",
        "--timezone", "Europe/Paris", "--catch-up", "all",
    )  # fmt: skip
    assert added["result"] == "updated" and added["vars"] == {}
    assert (added["cron"], added["timezone"], added["catch_up"]) == (
        "30 2 * * *", "Europe/Paris", "all",
    )  # fmt: skip
    listing = run("schedules", "list")
    assert listing.splitlines()[0].split() == [
        "NAME", "WORKFLOW", "CRON", "TIMEZONE", "CATCH_UP", "NEXT_FIRE", "LAST_RUN",
    ]  # fmt: skip
    assert "nightly" in listing and "Europe/Paris" in listing
    (listed,) = js("schedules", "list")
    assert listed["name"] == "nightly" and listed["last_run_id"] is None
    assert run("schedules", "remove", "nightly").strip() == "schedule nightly removed"
    assert js("schedules", "list") == []


def test_errors_are_one_line_and_exit_2(db_url: str, tmp_path: Path) -> None:
    def error(*args: str) -> str:
        result = cli(*args, cwd=tmp_path, url=db_url)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        return result.stderr

    assert "invalid cron expression '61 * * * *'" in error(
        "schedules", "add", "x", "wf", "61 * * * *"
    )
    assert "unknown timezone 'Mars/Base'" in error(
        "schedules", "add", "x", "wf", "* * * * *", "--timezone", "Mars/Base"
    )
    assert "--vars must be a JSON object" in error(
        "schedules", "add", "x", "wf", "* * * * *", "--vars", "[1]"
    )
    assert "invalid choice" in error("schedules", "add", "x", "wf", "* * * * *", "--catch-up", "x")
    assert "unknown schedule 'nope'" in error("schedules", "remove", "nope")
