"""File persistence in the original AbstractRuntime 0.2's on-disk layout, made crash-safe.

One directory holds ``run_<id>.json`` (``JsonFileRunStore``), ``ledger_<id>.jsonl``
(``JsonlLedgerStore``) and ``snapshot_<id>.json`` (``JsonSnapshotStore``): a directory the
original wrote opens here and its waiting runs resume, and the original can read what we write.
``Runtime(run_store=JsonFileRunStore(d), ledger_store=JsonlLedgerStore(d))`` drives it through
``FileStore`` (atomic, fsynced commits; one process per directory). ``import_files`` copies a
directory into a SQL database (``abstractruntime db import-files DIR``). See docs/files.md.
"""

from __future__ import annotations

from .ledger import JsonlLedgerStore
from .runs import JsonFileRunStore
from .snapshots import JsonSnapshotStore
from .store import FileStore

__all__ = ["FileStore", "JsonFileRunStore", "JsonSnapshotStore", "JsonlLedgerStore"]
