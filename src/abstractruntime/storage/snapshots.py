"""Snapshots at the original's path (``abstractruntime.storage.snapshots``).

``Snapshot`` is pure data (``core.snapshot``), ``SnapshotStore`` the port every store's
``store.snapshots`` implements (``core.ports``), ``InMemorySnapshotStore`` the in-memory one
(``core.memory``), ``JsonSnapshotStore`` the original's files (``storage.files``); a
``SqlStore``'s is ``store.snapshots``.
"""

from __future__ import annotations

from ..core.memory import InMemorySnapshotStore
from ..core.ports import SnapshotStore
from ..core.snapshot import Snapshot
from .files import JsonSnapshotStore

__all__ = ["InMemorySnapshotStore", "JsonSnapshotStore", "Snapshot", "SnapshotStore"]
