"""The in-memory stores, under the storage package with the other backends.

They are implemented in ``abstractruntime.core.memory``: pure data structures, the default of
``Runtime()``, which the core may not import from here.
"""

from __future__ import annotations

from ..core.memory import (
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
    MemoryStore,
)

__all__ = [
    "InMemoryArtifactStore",
    "InMemoryLedgerStore",
    "InMemoryRunStore",
    "InMemorySnapshotStore",
    "MemoryStore",
]
