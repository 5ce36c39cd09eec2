"""The original AbstractRuntime 0.2.0 itself, for the tests that check it reads what we write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ORIGINAL_ENV = "ABSTRACTRUNTIME_ORIGINAL_PYTHON"


@pytest.fixture(scope="session")
def original_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with ``abstractruntime==0.2.0`` installed: ``$ABSTRACTRUNTIME_ORIGINAL_PYTHON``,
    or a throwaway virtualenv made once per session from the package index."""
    given = os.environ.get(ORIGINAL_ENV)
    if given:
        return given
    venv = tmp_path_factory.mktemp("original-0.2.0")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(Path(venv, "bin", "python"))
    installed = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "abstractruntime==0.2.0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        pytest.fail(
            f"cannot install abstractruntime==0.2.0 from the package index (set {ORIGINAL_ENV} "
            f"to a Python that has it):\n{installed.stderr[-2000:]}"
        )
    return python
