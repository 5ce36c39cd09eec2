"""The in-memory stores at the original's path (they live in ``core.memory``)."""

from __future__ import annotations

from ..core.memory import InMemoryLedgerStore, InMemoryRunStore

__all__ = ["InMemoryLedgerStore", "InMemoryRunStore"]
