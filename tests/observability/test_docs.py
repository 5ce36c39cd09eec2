"""The examples of docs/observability.md run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.acceptance.test_docs import blocks

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_continue_trace_example_runs(tmp_path: Path) -> None:
    (code,) = blocks("observability.md", "python")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "waiting ['submit', 'approve']"


def test_the_demo_trace_is_drawn(tmp_path: Path) -> None:
    """The page's command: two processes, one span file, one waterfall with every step."""
    (command,) = blocks("observability.md", "bash")
    command = command.replace("/tmp/otel-demo", str(tmp_path))
    out = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env={**_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    svg = (tmp_path / "demo-trace.svg").read_text()
    for label in ("step #0 submit", "step #1 approve (waiting)", "step #2 approve", "#3 decide"):
        assert label in svg
    assert "demo-start pid" in svg and "demo-answer pid" in svg
