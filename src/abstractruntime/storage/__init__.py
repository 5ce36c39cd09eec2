"""Storage backends behind the core's one interface (``core.ports.Store``): memory, or SQL;
and artifact stores (``FileArtifactStore``: files in the original 0.2's layout).

``SqlStore`` is imported on first use, so that ``import abstractruntime`` loads no SQL driver
(SQLAlchemy, asyncpg, aiosqlite, alembic) for users of the in-memory store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.ports import ArtifactStore, LedgerHead, RunHandle, SnapshotStore, Store
from .artifact_files import FileArtifactStore
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
    "InMemoryArtifactStore",
    "InMemoryLedgerStore",
    "InMemoryRunStore",
    "InMemorySnapshotStore",
    "LedgerHead",
    "MemoryStore",
    "RunHandle",
    "SnapshotStore",
    "SqlStore",
    "Store",
]


def __getattr__(name: str) -> Any:
    if name == "SqlStore":
        from .sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
