"""The installed ``abstractruntime`` command, run as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abstractruntime.storage.sql import migrate
from tests.helpers import cli


def test_demo_pauses_and_resumes_in_a_second_process(tmp_path: Path) -> None:
    first = cli("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "waiting" in first.stdout and "Approve the expense" in first.stdout
    assert (tmp_path / "abstractruntime.db").exists()  # the embedded default, in the cwd

    second = cli("--json", "demo", "--answer", "yes", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)
    assert data["state"]["status"] == "completed"
    assert data["state"]["output"] == {"approved": True, "amount": 420}
    assert data["verify"]["ok"] is True and data["verify"]["count"] == 4


def test_demo_against_postgres(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("postgresql"):
        assert cli("db", "upgrade", cwd=tmp_path, url=db_url).returncode == 0
    assert cli("demo", cwd=tmp_path, url=db_url).returncode == 0
    result = cli("demo", "--answer", "no", cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    assert "Ledger chain verified: 4 records" in result.stdout
    assert "'approved': False" in result.stdout


def test_db_commands(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert cli("db", "current", cwd=tmp_path, url=url).stdout.strip() == (
        "(no abstractruntime tables)"
    )
    head = migrate.head_revision()
    assert head in cli("db", "upgrade", cwd=tmp_path, url=url).stdout
    assert json.loads(cli("--json", "db", "current", cwd=tmp_path, url=url).stdout) == {
        "revision": head
    }
    assert "0001_initial" in cli("db", "downgrade", "0001_initial", cwd=tmp_path, url=url).stdout
    assert "base" in cli("db", "downgrade", "base", cwd=tmp_path, url=url).stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root:hunter2@localhost/db", "unsupported database 'mysql'"),
        ("postgresql://app:hunter2@127.0.0.1:1/db", "cannot read"),
    ],
)
def test_errors_are_one_line_without_traceback_or_password(
    tmp_path: Path, url: str, expected: str
) -> None:
    result = cli("--database-url", url, "db", "current", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
