"""The two storage forms the ported tests of the original run on, as one pytest fixture.

``backend`` is parametrised over the original's in-memory pair (``Runtime(run_store=
InMemoryRunStore(), ledger_store=InMemoryLedgerStore())``) and a SQLite file (``Runtime(store=
SqlStore("sqlite+aiosqlite:///" + path))``), as ``test_runtime_api.py``'s ``stores`` is. A test
module makes it with ``backend = backend_fixture()``.

``backend.kwargs`` is the storage of the runtime under test; ``backend.reopen()`` is the
same storage as a process started afterwards sees it: a new ``SqlStore`` on the same file (the
original's tests did this with a second ``JsonFileRunStore`` on the same directory), and for the
in-memory pair, which dies with its process, the same two objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore, SqlStore

BACKENDS = ["pair", "sqlite"]


class Backend:
    """One storage of the parametrised ``backend`` fixture (see the module's docstring)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.url = f"sqlite+aiosqlite:///{path}"
        self._opened: list[SqlStore] = []
        if kind == "pair":
            self.kwargs: dict[str, Any] = {
                "run_store": InMemoryRunStore(),
                "ledger_store": InMemoryLedgerStore(),
            }
        else:
            self.kwargs = {"store": self._open()}

    def _open(self) -> SqlStore:
        store = SqlStore(self.url)
        self._opened.append(store)
        return store

    @property
    def persistent(self) -> bool:
        """Whether the storage outlives its process (the SQLite file does)."""
        return self.kind == "sqlite"

    def reopen(self) -> dict[str, Any]:
        """Runtime keyword arguments on the same storage, opened anew where it can be."""
        if self.kind == "pair":
            return dict(self.kwargs)
        return {"store": self._open()}

    async def aclose(self) -> None:
        for store in self._opened:
            await store.close()


def backend_fixture() -> Any:
    """A module's ``backend`` fixture: ``backend = backend_fixture()`` at the top of a test
    module (a factory rather than an imported fixture, which linters take for an unused import
    shadowed by every test's argument)."""

    @pytest.fixture(params=BACKENDS, name="backend")
    async def fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
        """The original's in-memory pair, or a SQLite file (see ``Backend``)."""
        storage = Backend(request.param, tmp_path / "runs.db")
        try:
            yield storage
        finally:
            await storage.aclose()

    return fixture
