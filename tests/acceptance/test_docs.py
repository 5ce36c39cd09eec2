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
        ("scheduler.md", 4),  # Timeouts
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


def test_the_timeouts_example_runs(tmp_path: Path) -> None:
    [code] = [code for code in blocks("scheduler.md", "python") if "timeout_node" in code]
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
    out = result.stdout.splitlines()
    assert out[1:3] == ["True", "{'approved': 'yes'}"], out
    assert re.fullmatch(
        r"\{'escalated': \{'timed_out': True, 'wait_key': 'user:\w+:ask', 'waited_s': 0\.5\d*\}\}",
        out[3],
    ), out


def section(page: str, title: str) -> str:
    """The text of one ``## title`` section of a page."""
    text = (DOCS / page).read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def test_the_deploy_session_of_operations_runs(tmp_path: Path) -> None:
    code = [c for lang, c in BLOCK.findall(section("operations.md", "Deploys")) if lang == "bash"]
    env = {**_env(), "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "moved 0 runs, skipped 2" in out and "exit status 1" in out
    assert "would move 2 runs, skipped 0" in out and "1 -> 2: moved 2 runs, skipped 0" in out
    listings = [line for line in out.splitlines() if "  approval  " in line]
    assert len(listings) == 6  # two runs, listed on version 1, as orphaned, then on 2
    assert sum("  approval  2  " in line for line in listings) == 2
