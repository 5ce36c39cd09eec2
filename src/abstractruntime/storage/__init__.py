"""Storage backends behind the core's one interface (``core.ports.Store``): memory, files, SQL.

The original 0.2's interfaces (``RunStore``, ``LedgerStore``, ``QueryableRunStore``) and file
stores (``JsonFileRunStore``, ``JsonlLedgerStore``, ``JsonSnapshotStore``,
``HashChainedLedgerStore``, ``FileArtifactStore``) are here too; ``Runtime(run_store=...,
ledger_store=...)`` drives any such pair (``PairedStore``, or the crash-safe ``FileStore`` for
the file pair).

``SqlStore`` is imported on first use, so that ``import abstractruntime`` loads no SQL driver
(SQLAlchemy, asyncpg, aiosqlite, alembic) for users of the in-memory store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.ledger import verify_ledger_chain
from ..core.paired import PairedStore
from ..core.ports import (
    ArtifactStore,
    LedgerHead,
    LedgerStore,
    QueryableRunStore,
    RunHandle,
    RunStore,
    SnapshotStore,
    Store,
)
from ..core.retention import PurgeResult
from ..core.snapshot import Snapshot
from .artifact_files import FileArtifactStore
from .files import FileStore, JsonFileRunStore, JsonlLedgerStore, JsonSnapshotStore
from .ledger_chain import HashChainedLedgerStore
from .memory import (
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
    MemoryStore,
)

if TYPE_CHECKING:
    from .sql import SqlStore

__all__ = [
    "ArtifactStore",
    "FileArtifactStore",
    "FileStore",
    "HashChainedLedgerStore",
    "InMemoryArtifactStore",
    "InMemoryLedgerStore",
    "InMemoryRunStore",
    "InMemorySnapshotStore",
    "JsonFileRunStore",
    "JsonSnapshotStore",
    "JsonlLedgerStore",
    "LedgerHead",
    "LedgerStore",
    "MemoryStore",
    "PairedStore",
    "PurgeResult",
    "QueryableRunStore",
    "RunHandle",
    "RunStore",
    "Snapshot",
    "SnapshotStore",
    "SqlStore",
    "Store",
    "verify_ledger_chain",
]


def __getattr__(name: str) -> Any:
    if name == "SqlStore":
        from .sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
