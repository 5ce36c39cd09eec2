"""The installed ``abstractruntime`` command, for the tests that run it as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def _installed() -> str:
    # This environment's command first: another one on $PATH may be another version.
    sibling = Path(sys.executable).with_name("abstractruntime")
    if sibling.exists():
        return str(sibling)
    return shutil.which("abstractruntime") or str(sibling)


EXE = _installed()


def cli(*args: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command to its end; ``url`` becomes ``$ABSTRACTRUNTIME_DATABASE_URL``, which is
    otherwise never inherited from the test's environment."""
    env = {k: v for k, v in os.environ.items() if k != "ABSTRACTRUNTIME_DATABASE_URL"}
    if url is not None:
        env["ABSTRACTRUNTIME_DATABASE_URL"] = url
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
