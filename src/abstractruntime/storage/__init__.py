"""Storage backends behind one interface (``Store``): in memory, or SQL."""

from __future__ import annotations

from .base import ArtifactStore, LedgerHead, RunHandle, SnapshotStore, Store
from .memory import (
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
    MemoryStore,
)
from .sql import SqlStore

__all__ = [
    "ArtifactStore",
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
