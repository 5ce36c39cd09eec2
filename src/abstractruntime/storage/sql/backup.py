"""Online backups of a SQLite database (``SqlStore.backup``, ``abstractruntime db backup``).

SQLite's backup API copies the database page by page through a connection of its own; done in
one step it reads one consistent snapshot (a read transaction: in WAL mode, writers in this and
other processes go on meanwhile). The copy is written next to the target under a temporary
name, checked (``PRAGMA quick_check``), fsynced and renamed into place, so a crash leaves either
no backup or a whole one. Postgres has ``pg_dump`` for this (docs/reliability.md#backups).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import anyio

from ...errors import InvalidArgumentError, StoreError


@dataclass(frozen=True)
class BackupResult:
    """What a backup wrote: where, its size, and how many runs and ledger records it holds."""

    path: str
    bytes: int
    runs: int
    ledger_records: int

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "bytes": self.bytes,
            "runs": self.runs,
            "ledger_records": self.ledger_records,
        }


def check_target(target: Path, overwrite: bool) -> None:
    """``InvalidArgumentError`` for a target that cannot be written (before any copy)."""
    if target.is_dir():
        raise InvalidArgumentError(f"backup target {str(target)!r} is a directory; name a file")
    if target.exists() and not overwrite:
        raise InvalidArgumentError(
            f"backup target {str(target)!r} exists; remove it or pass overwrite=True (--force)"
        )
    if not target.parent.is_dir():
        raise InvalidArgumentError(f"the directory of backup target {str(target)!r} does not exist")


async def backup_sqlite(source: Path, target: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the SQLite database ``source`` to ``target`` while it is in use (in a thread)."""
    target = target.expanduser().resolve()
    check_target(target, overwrite)
    if target == source.expanduser().resolve():
        raise InvalidArgumentError("the backup target is the database itself")
    return await anyio.to_thread.run_sync(_copy, source, target)


def _copy(source: Path, target: Path) -> BackupResult:
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with _connect(f"file:{source}?mode=ro", uri=True) as src, _connect(str(partial)) as dst:
            src.backup(dst)  # one step: one consistent snapshot
            if dst.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise StoreError(f"the backup of {source} did not pass SQLite's quick_check")
            runs = dst.execute("SELECT count(*) FROM abstractruntime_runs").fetchone()[0]
            records = dst.execute("SELECT count(*) FROM abstractruntime_ledger").fetchone()[0]
            # A standalone file: no WAL beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
        with partial.open("rb") as copy:
            os.fsync(copy.fileno())
        os.replace(partial, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up {source}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(str(target), target.stat().st_size, int(runs), int(records))


class _connect:
    """A ``sqlite3`` connection closed on exit (its own context manager only commits)."""

    def __init__(self, database: str, *, uri: bool = False) -> None:
        # blocking-ok: backups copy in a worker thread (backup_sqlite -> _copy)
        self.conn = sqlite3.connect(database, uri=uri, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
