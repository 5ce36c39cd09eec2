"""``abstractruntime events emit | send``, run as subprocesses against SQLite and Postgres."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from abstractruntime.cli.base import duration_s
from tests.helpers import cli

APP = "abstractruntime.demo:DEMO_WORKFLOW"


def _waiting_demo(tmp_path: Path, url: str) -> tuple[str, str]:
    assert cli("demo", cwd=tmp_path, url=url).returncode == 0
    runs = json.loads(cli("--json", "runs", "list", cwd=tmp_path, url=url).stdout)
    run_id = runs[0]["run_id"]
    return run_id, runs[0]["waiting"]["wait_key"]


def _state(tmp_path: Path, url: str, run_id: str) -> Any:
    shown = cli("--json", "runs", "show", run_id, cwd=tmp_path, url=url)
    return json.loads(shown.stdout)["state"]


def test_send_answers_a_waiting_run_with_app(db_url: str, tmp_path: Path) -> None:
    run_id, key = _waiting_demo(tmp_path, db_url)
    sent = cli(
        "events", "send", run_id, key, '{"answer": "yes"}', "--app", APP, cwd=tmp_path, url=db_url
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"message sent to run {run_id}: completed")
    assert _state(tmp_path, db_url, run_id)["output"]["approved"] is True


def test_send_without_app_leaves_the_run_due_for_a_worker(db_url: str, tmp_path: Path) -> None:
    run_id, key = _waiting_demo(tmp_path, db_url)
    sent = cli("events", "send", run_id, key, '{"answer": "no"}', cwd=tmp_path, url=db_url)
    assert sent.returncode == 0, sent.stderr
    assert "waiting" in sent.stdout.splitlines()[0]
    assert _state(tmp_path, db_url, run_id)["status"] == "waiting"


def test_emit_and_send_errors_are_one_line(db_url: str, tmp_path: Path) -> None:
    _, key = _waiting_demo(tmp_path, db_url)
    for args, says in [
        (("events", "emit", "k", "{}"), "--buffer"),
        (("events", "emit", "k", "[1]", "--buffer", "1h"), "JSON object"),
        (("events", "send", "nope", "k", "{}"), "unknown run"),
        (("events", "emit", "k", "{}", "--buffer", "soon"), "not a duration"),
    ]:
        result = cli(*args, cwd=tmp_path, url=db_url)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert says in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    emitted = cli(
        "events", "emit", key, '{"answer": "yes"}', "--buffer", "1h", cwd=tmp_path, url=db_url
    )
    assert emitted.returncode == 0, emitted.stderr
    assert emitted.stdout.startswith(f"event {key}: resumed 0 run(s), kept for 1:00:00")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds
