"""``FileStore``: the crash-safe ``Store`` over ``JsonFileRunStore`` + ``JsonlLedgerStore``.

``Runtime(run_store=JsonFileRunStore(d), ledger_store=JsonlLedgerStore(d))`` (optionally with
the ledger in a ``HashChainedLedgerStore``) gets this store. A step's commit is:

1. its records appended to ``ledger_<id>.jsonl`` in one write, then fsynced - after cutting
   whatever lies past the committed length (the records of a step that died before its commit);
2. ``run_<id>.json`` replaced atomically (temp file, fsync, rename, fsync of the directory),
   with ``"_ledger": {"count", "head", "bytes"}``: the length, last hash and byte size of the
   committed ledger. **This rename is the commit point.**

So a process killed at any instant leaves every run at its last commit: ledger lines past the
run file's ``bytes`` are not read, and are cut before the next append; the ledger never forks.
A run file the original 0.2 wrote has no ``"_ledger"``: its ledger is taken as it is (minus a
torn last line).

Limits: **one process drives a directory at a time** (versions and leases are in its memory).
The first write takes an ``fcntl`` lock on ``.abstractruntime.lock`` in each directory and a
second process fails at once with a clear error; ``await store.close()`` (or closing the
``ScheduledRuntime``) lets go of it. Reading (``get_state``, ``get_ledger``, queries) takes no
lock. Windows has no ``fcntl``: there nothing stops a second process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ...core.models import RunState, StepRecord
from ...core.paired import PairedRun, PairedStore
from ...core.ports import ArtifactStore, RunHandle, Served, SnapshotStore
from ...errors import InvalidArgumentError, StoreError
from ..ledger_chain import HashChainedLedgerStore
from ._io import DirectoryLock, append_lines, scan_jsonl
from .ledger import JsonlLedgerStore, record_line
from .runs import JsonFileRunStore
from .snapshots import JsonSnapshotStore

#: Buffered events and messages would live only in this process's memory: refused rather than
#: lost at the next restart.
_NO_EVENTS = (
    "{what} is not supported by the file stores (they keep runs, not events or messages, on "
    "disk); use a SqlStore (SQLite or Postgres) or the memory store"
)

#: ``PairedRun.extra`` keys: the run file's ``_ledger`` as read, and the committed byte size.
_META = "meta"
_BYTES = "bytes"


class FileStore(PairedStore):
    """See the module docstring. ``store.snapshots`` defaults to a ``JsonSnapshotStore`` on
    the run directory (where the original's users usually kept them)."""

    run_store: JsonFileRunStore

    def __init__(
        self,
        run_store: JsonFileRunStore,
        ledger_store: JsonlLedgerStore | HashChainedLedgerStore,
        *,
        snapshot_store: SnapshotStore | None = None,
        artifact_store: ArtifactStore | None = None,
    ) -> None:
        if not self.accepts(ledger_store):
            raise TypeError(
                "FileStore needs a JsonlLedgerStore (or one in a HashChainedLedgerStore); use "
                "PairedStore for other ledger stores"
            )
        super().__init__(
            run_store,
            ledger_store,
            snapshot_store=(
                snapshot_store
                if snapshot_store is not None
                else JsonSnapshotStore(run_store.base_dir)
            ),
            artifact_store=artifact_store,
        )
        self.jsonl: JsonlLedgerStore = (
            ledger_store.inner if isinstance(ledger_store, HashChainedLedgerStore) else ledger_store
        )
        dirs = {run_store.base_dir.resolve(), self.jsonl.base_dir.resolve()}
        self._locks = [DirectoryLock(d) for d in sorted(dirs)]

    # -- events and messages: not kept by the file stores ------------------------------------

    async def buffer_event(
        self,
        key: str,
        payload_json: str,
        *,
        now: datetime,
        expires_at: datetime,
        idempotency_key: str | None = None,
    ) -> int:
        raise InvalidArgumentError(_NO_EVENTS.format(what="emit_event(buffer_s=...)"))

    async def emit_result(self, idempotency_key: str) -> list[str] | None:
        raise InvalidArgumentError(_NO_EVENTS.format(what="emit_event(idempotency_key=...)"))

    async def send_message(self, run_id: str, key: str, payload_json: str, *, now: datetime) -> int:
        raise InvalidArgumentError(_NO_EVENTS.format(what="send"))

    @staticmethod
    def accepts(ledger_store: Any) -> bool:
        if isinstance(ledger_store, HashChainedLedgerStore):
            ledger_store = ledger_store.inner
        return type(ledger_store) is JsonlLedgerStore

    def _lock(self) -> None:
        for lock in self._locks:
            if not lock.held:
                lock.acquire()

    @property
    def directories(self) -> list[Path]:
        return [lock.directory for lock in self._locks]

    # -- I/O hooks ----------------------------------------------------------------------------

    async def _read(self, run_id: str) -> tuple[RunState, dict[str, Any]] | None:
        found = await asyncio.to_thread(self.run_store.read_sync, run_id)
        return None if found is None else (found[0], {_META: found[1]})

    async def _read_all(self) -> list[tuple[RunState, dict[str, Any]]] | None:
        return [
            (state, {_META: meta})
            for state, meta in await asyncio.to_thread(self.run_store.scan_sync)
        ]

    async def _read_position(self, run: PairedRun) -> tuple[int, str | None]:
        meta = run.extra.get(_META)
        if _valid_meta(meta):
            assert isinstance(meta, dict)
            run.extra[_BYTES] = meta["bytes"]
            return meta["count"], meta["head"]
        # Written by the original (or by JsonFileRunStore.save): the ledger as it is.
        path = self.jsonl.path(run.state.run_id)
        records, valid_bytes, _ = await asyncio.to_thread(scan_jsonl, path)
        run.extra[_BYTES] = valid_bytes
        return len(records), (records[-1].get("record_hash") if records else None)

    async def _read_ledger(self, run: PairedRun) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.jsonl.read_sync, run.state.run_id, run.seq)

    async def _write_new(self, state: RunState, run: PairedRun) -> None:
        self._lock()
        await asyncio.to_thread(self._create_sync, state)
        run.extra[_BYTES] = 0

    def _create_sync(self, state: RunState) -> None:
        ledger = self.jsonl.path(state.run_id)
        if ledger.exists() and ledger.stat().st_size > 0:
            raise StoreError(
                f"{ledger} exists but {self.run_store.path(state.run_id).name} does not: a "
                "ledger without its run. Move it away (or restore the run file) and retry."
            )
        self.run_store.write_sync(state, {"count": 0, "head": None, "bytes": 0})

    async def _write_step(
        self,
        run: PairedRun,
        state: RunState,
        records: Sequence[StepRecord],
        dicts: Sequence[dict[str, Any]],
    ) -> None:
        self._lock()
        count = (run.seq or 0) + len(dicts)
        head = dicts[-1]["record_hash"] if dicts else run.head
        committed = run.extra.get(_BYTES)
        size = await asyncio.to_thread(
            self._commit_sync, state, [record_line(d) for d in dicts], committed, count, head
        )
        run.extra[_BYTES] = size
        run.extra[_META] = {"count": count, "head": head, "bytes": size}
        if isinstance(self.ledger_store, HashChainedLedgerStore):
            self.ledger_store.note_head(state.run_id, head)

    def _commit_sync(
        self,
        state: RunState,
        lines: list[str],
        committed: int | None,
        count: int,
        head: str | None,
    ) -> int:
        path = self.jsonl.path(state.run_id)
        if lines:
            size = append_lines(path, lines, committed)
        else:
            size = committed if committed is not None else scan_jsonl(path)[1]
        self.run_store.write_sync(state, {"count": count, "head": head, "bytes": size})
        return size

    # -- the Store port: claims take the directory lock ----------------------------------------

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> RunHandle:
        self._lock()
        return await super().claim_run(run_id, owner, now, lease_until)

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None = None,
    ) -> list[RunHandle]:
        self._lock()
        return await super().claim_due(owner, now, lease_until, limit, workflows)

    async def close(self) -> None:
        """Let go of the directory lock (leases held are forgotten with this store)."""
        for lock in self._locks:
            lock.release()


def _valid_meta(meta: Any) -> bool:
    return (
        isinstance(meta, dict)
        and isinstance(meta.get("count"), int)
        and isinstance(meta.get("bytes"), int)
        and (meta.get("head") is None or isinstance(meta.get("head"), str))
    )
