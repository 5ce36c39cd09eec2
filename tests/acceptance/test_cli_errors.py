"""What the installed command does with a mistake and with a bug.

A mistake (an error of ``abstractruntime.errors``, or bad arguments) is one line on stderr with
exit status 2 and no traceback; anything else is a bug, shown with its traceback (status 1).
Passwords are masked in both. More mistakes: ``test_cli_operate.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli

APP = "abstractruntime.demo:DEMO_WORKFLOW"


def _one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr
    assert result.stderr.startswith("abstractruntime")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--database-url", "postgresql://a:hunter2@h:abc/db", "runs", "list"], "not a database"),
        (["--database-url", "sqlite:////proc/no/such/dir/x.db", "runs", "list"], "cannot open"),
        (["--database-url", "", "runs", "list"], "the database URL is empty"),
        (["--database-url", "  ", "ledger", "verify", "--all"], "the database URL is empty"),
        (["db", "downgrade", "nope"], "Can't locate revision identified by 'nope'"),
        (["snapshot", "show", "nope"], "unknown snapshot 'nope'"),
        (["snapshot", "delete", "nope"], "unknown snapshot 'nope'"),
        (["snapshot", "fork", "nope"], "unknown snapshot 'nope'"),
        (["runs", "cancel", "nope"], "unknown run 'nope'"),
        (
            ["runs", "respond", "x", "--app", "abstractruntime.demo", "--payload", "{}"],
            "MODULE:ATTR",
        ),
        (
            ["runs", "respond", "x", "--app", "abstractruntime.demo:nope", "--payload", "{}"],
            "no 'nope'",
        ),
        (
            [
                "runs",
                "respond",
                "x",
                "--app",
                "abstractruntime.demo:WORKFLOW_ID",
                "--payload",
                "{}",
            ],
            "is a str, not a WorkflowRegistry",
        ),
        (["worker", "--app", APP, "--poll-interval", "0"], "0 is not a positive number"),
        (["worker", "--app", APP, "--max-concurrency", "0"], "0 is not a positive number"),
        (["worker", "--app", APP, "--lease", "-1"], "-1 is not a positive number"),
        (["worker", "--app", APP, "--grace", "soon"], "'soon' is not a number"),
    ],
)
def test_a_mistake_is_one_line_with_status_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
    _one_line(cli(*args, cwd=tmp_path, url=url), expected)


def test_mistakes_about_an_existing_run(sqlite_url: str, tmp_path: Path) -> None:
    assert cli("demo", cwd=tmp_path, url=sqlite_url).returncode == 0
    runs = json.loads(cli("--json", "runs", "list", cwd=tmp_path, url=sqlite_url).stdout)
    run_id = runs[0]["run_id"]

    def mistake(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, cwd=tmp_path, url=sqlite_url)

    _one_line(mistake("snapshot", "create", run_id, "--name", " "), "needs a non-empty name")
    _one_line(mistake("snapshot", "create", run_id, "--name", "n" * 256), "at most 255")
    _one_line(mistake("snapshot", "create", run_id, "--name", "x", "--tag", "t" * 256), "at most")
    (tmp_path / "other_app.py").write_text(
        "from abstractruntime import StepPlan, WorkflowSpec\n"
        "done = StepPlan(node_id='a', complete_output={})\n"
        "flows = [WorkflowSpec('other', 'a', {'a': lambda run, ctx: done})]\n"
    )
    _one_line(
        mistake("runs", "respond", run_id, "--app", "other_app:flows", "--payload", "{}"),
        "belongs to workflow 'demo.expense_approval' version '1', which --app other_app:flows "
        "does not have (it has: other (1))",
    )
    answer = ("runs", "respond", run_id, "--app", APP, "--payload", '{"answer": "yes"}')
    assert mistake(*answer).returncode == 0
    _one_line(mistake(*answer), "is completed, not waiting")


def test_a_bug_shows_its_traceback_with_the_password_masked(tmp_path: Path) -> None:
    (tmp_path / "buggy_app.py").write_text(
        "import os\n\n"
        "def build():\n"
        "    url = os.environ['ABSTRACTRUNTIME_DATABASE_URL']\n"
        "    raise RuntimeError('a bug in the app, near ' + url)\n"
    )
    url = "postgresql://app:hunter2@127.0.0.1:1/db"
    result = cli(
        "runs", "respond", "x", "--app", "buggy_app:build", "--payload", "{}", cwd=tmp_path, url=url
    )
    assert result.returncode == 1, result
    assert result.stderr.startswith("Traceback (most recent call last):")
    last = result.stderr.strip().splitlines()[-1]
    assert last == "RuntimeError: a bug in the app, near postgresql://app:***@127.0.0.1:1/db"
    assert "hunter2" not in result.stderr + result.stdout


def test_python_dash_m_runs_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "abstractruntime.cli",
            "--database-url",
            url,
            "--json",
            "runs",
            "list",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
