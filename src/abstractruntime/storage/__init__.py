"""Storage backends behind one interface (``Store``): in memory, or SQL."""

from __future__ import annotations

from .base import RunHandle, Store
from .memory import InMemoryLedgerStore, InMemoryRunStore, MemoryStore
from .sql import SqlStore

__all__ = [
    "InMemoryLedgerStore",
    "InMemoryRunStore",
    "MemoryStore",
    "RunHandle",
    "SqlStore",
    "Store",
]
