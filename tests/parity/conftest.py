"""Fixtures of the parity tests: the original's two storage forms, made async.

``rt_factory`` builds a ``Runtime`` on the in-memory pair (``run_store=InMemoryRunStore(),
ledger_store=InMemoryLedgerStore()``, the original's form) or on a SQLite file
(``store=SqlStore("sqlite+aiosqlite:///...")``): every parity test runs on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import Runtime
from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore, SqlStore

RuntimeFactory = Callable[..., Runtime]


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
