"""The commands and programs of the docs run as written (``bash`` and ``python`` code blocks;
``text`` blocks are illustrations)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: str, language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall((DOCS / page).read_text()) if lang == language]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ABSTRACTRUNTIME_DATABASE_URL"}
    # The installed command and this interpreter first, as for a user of a virtualenv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_cli_session_runs(tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(blocks("cli.md", "bash"))
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "before approval" in out
    assert "chain BROKEN at index 2" in out and "exit status 1" in out
    expected = blocks("cli.md", "text")[-1]  # the output the page shows, but for the run id
    for line in expected.splitlines()[1:]:
        assert line in out, (line, out)


@pytest.mark.parametrize(
    ("page", "index"),
    [
        ("snapshots.md", 0),
        ("snapshots.md", 1),
        ("provenance.md", 0),
        ("integrations.md", 5),
        ("scheduler.md", 2),
    ],
)
def test_the_python_examples_run(tmp_path: Path, page: str, index: int) -> None:
    code = blocks(page, "python")[index]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
