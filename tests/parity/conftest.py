"""Fixtures of the parity tests.

``rt_factory`` builds a ``Runtime`` on the in-memory pair (``run_store=InMemoryRunStore(),
ledger_store=InMemoryLedgerStore()``, the original's form) or on a SQLite file
(``store=SqlStore("sqlite+aiosqlite:///...")``): every parity test runs on both.
``original_python`` is the original AbstractRuntime 0.2.0 itself, for the tests that check it
reads what we write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import Runtime
from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore, SqlStore

RuntimeFactory = Callable[..., Runtime]
ORIGINAL_ENV = "ABSTRACTRUNTIME_ORIGINAL_PYTHON"


@pytest.fixture(params=["memory", "sqlite"])
async def rt_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """``rt_factory(**runtime_kwargs)``: a Runtime on the parametrised storage; every runtime
    it makes shares that storage, as two processes would share a database."""
    if request.param == "memory":
        run_store, ledger_store = InMemoryRunStore(), InMemoryLedgerStore()

        def make_memory(**kwargs: Any) -> Runtime:
            return Runtime(run_store=run_store, ledger_store=ledger_store, **kwargs)

        yield make_memory
        return
    store = SqlStore("sqlite+aiosqlite:///" + str(tmp_path / "parity.db"))

    def make_sqlite(**kwargs: Any) -> Runtime:
        return Runtime(store=store, **kwargs)

    try:
        yield make_sqlite
    finally:
        await store.close()


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
