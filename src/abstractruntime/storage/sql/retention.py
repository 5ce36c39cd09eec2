"""``SqlStore.purge``: the purge's operations (``core.retention.PurgeOps``) in SQL.

The statements are here, next to the code that runs them, rather than in ``statements.py``:
they are the retention section of it, kept in a module of their own so that it merges apart
from the hot path's statements. They take the cold path (SQLAlchemy Core on the engine, a
``BEGIN IMMEDIATE`` transaction on SQLite), each transaction short: a claim, a chunk of ledger
rows, or one batch's snapshots, artifacts and run rows. A worker's step waits for at most one
of them.

Candidates come off ``ix_abstractruntime_runs_status_updated_at`` (migration 0009): one index
range per status, keyset-paginated on ``(updated_at, run_id)``. Ledger chunks are primary-key
ranges of one run. The claim and the final delete both check the status and age again, in the
statement that writes: a run that a worker brought back to life meanwhile (a snapshot restored
onto it) is left alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...core.models import RunStatus
from ...core.retention import (
    CLAIM_S,
    PURGE_OWNER_PREFIX,
    PurgeOps,
    PurgeResult,
    PurgeSpec,
    Purging,
    RunInfo,
)
from .schema import (
    FINISHED_RUNS,
    artifact_tags,
    artifacts,
    event_deliveries,
    ledger,
    messages,
    runs,
    snapshot_tags,
    snapshots,
)
from .sqlite import SqliteBackend
from .sqlite import ts as sqlite_ts

if TYPE_CHECKING:
    import contextlib

    from sqlalchemy.ext.asyncio import AsyncEngine

    from .backend import SqlBackend

#: SQLite: a passive checkpoint after every this many purge transactions.
CHECKPOINT_EVERY = 8
SQLITE_PASSIVE_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"

_INFO = (runs.c.run_id, runs.c.parent_run_id, runs.c.status, runs.c.updated_at)


# -- statements --------------------------------------------------------------------------------


def candidates_query(
    status: str, cutoff: datetime, after: tuple[datetime, str] | None, limit: int
) -> sa.Select[Any]:
    """Runs of ``status`` updated before ``cutoff``, oldest first, after the keyset ``after``."""
    query = sa.select(*_INFO).where(
        sa.text(FINISHED_RUNS), runs.c.status == status, runs.c.updated_at < cutoff
    )
    if after is not None:
        at, run_id = after
        # A row value: one index range on both dialects (Postgres plans the OR form as two
        # bitmap scans and a sort).
        after_key = sa.tuple_(
            sa.literal(at, runs.c.updated_at.type), sa.literal(run_id, runs.c.run_id.type)
        )
        query = query.where(sa.tuple_(runs.c.updated_at, runs.c.run_id) > after_key)
    return query.order_by(runs.c.updated_at, runs.c.run_id).limit(limit)


def runs_info_query(run_ids: Collection[str]) -> sa.Select[Any]:
    return sa.select(*_INFO).where(runs.c.run_id.in_(list(run_ids)))


def children_info_query(run_ids: Collection[str]) -> sa.Select[Any]:
    return sa.select(*_INFO).where(runs.c.parent_run_id.in_(list(run_ids)))


def _qualifies(spec: PurgeSpec) -> list[sa.ColumnElement[bool]]:
    return [runs.c.status.in_(spec.status_values), runs.c.updated_at < spec.cutoff]


def claim_update(run_ids: Sequence[str], spec: PurgeSpec, owner: str, now: datetime) -> sa.Update:
    """Lease the runs that still qualify and that nobody holds (or ``owner`` already does) to
    ``owner``; the version bump makes any handle a worker holds stale."""
    return (
        runs.update()
        .where(
            runs.c.run_id.in_(list(run_ids)),
            *_qualifies(spec),
            sa.or_(
                runs.c.lease_expires_at.is_(None),
                runs.c.lease_expires_at <= now,
                runs.c.lease_owner == owner,
            ),
        )
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=CLAIM_S),
            due_at=None,
            version=runs.c.version + 1,
        )
        .returning(runs.c.run_id, runs.c.ledger_seq)
    )


def release_update(run_ids: Sequence[str], owner: str) -> sa.Update:
    return (
        runs.update()
        .where(runs.c.run_id.in_(list(run_ids)), runs.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


def delete_ledger_range(run_id: str, start: int, stop: int, owner: str) -> sa.Delete:
    held = sa.exists().where(runs.c.run_id == run_id, runs.c.lease_owner == owner)
    return ledger.delete().where(
        ledger.c.run_id == run_id, ledger.c.seq >= start, ledger.c.seq < stop, held
    )


def delete_ledgers(run_ids: Sequence[str], owner: str) -> sa.Delete:
    held = sa.select(runs.c.run_id).where(
        runs.c.run_id.in_(list(run_ids)), runs.c.lease_owner == owner
    )
    return ledger.delete().where(ledger.c.run_id.in_(held))


def _doomed(run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> sa.Select[Any]:
    """Those of ``run_ids`` that ``owner`` still holds and that still qualify: every delete of
    the last transaction is of these."""
    return sa.select(runs.c.run_id).where(
        runs.c.run_id.in_(list(run_ids)), runs.c.lease_owner == owner, *_qualifies(spec)
    )


def lock_runs(run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> sa.Select[Any]:
    """Postgres: lock the rows about to go, so that they stay as read until the delete."""
    return _doomed(run_ids, spec, owner).with_for_update()


def delete_runs_with_theirs(
    run_ids: Sequence[str], spec: PurgeSpec, owner: str
) -> tuple[sa.Delete, ...]:
    """The deletes of the last transaction, in order: what is left of the ledgers (nothing,
    unless a purge died half-way: the claim bumped the version, no step appends meanwhile),
    messages and event deliveries (ON DELETE CASCADE would do, but a SQLite connection made by
    someone else may have foreign keys off), snapshot and artifact tags, snapshots, artifacts,
    and the runs."""
    doomed = _doomed(run_ids, spec, owner)
    doomed_snapshots = sa.select(snapshots.c.snapshot_id).where(snapshots.c.run_id.in_(doomed))
    doomed_artifacts = sa.select(artifacts.c.artifact_id).where(artifacts.c.run_id.in_(doomed))
    return (
        ledger.delete().where(ledger.c.run_id.in_(doomed)),
        messages.delete().where(messages.c.run_id.in_(doomed)),
        event_deliveries.delete().where(event_deliveries.c.run_id.in_(doomed)),
        snapshot_tags.delete().where(snapshot_tags.c.snapshot_id.in_(doomed_snapshots)),
        snapshots.delete().where(snapshots.c.run_id.in_(doomed)),
        artifact_tags.delete().where(artifact_tags.c.artifact_id.in_(doomed_artifacts)),
        artifacts.delete().where(artifacts.c.run_id.in_(doomed)),
        runs.delete().where(runs.c.run_id.in_(doomed)),
    )


# -- the operations ------------------------------------------------------------------------------


def _sqlite_args(compiled: Any) -> list[Any]:
    params = compiled.construct_params()
    return [
        sqlite_ts(value) if isinstance(value, datetime) else value
        for value in (params[name] for name in compiled.positiontup)
    ]


def _on_writer(dialect: Any, *queries: Any) -> Callable[[sqlite3.Connection], list[Any]]:
    """A function for the SQLite writer thread that runs ``queries`` in order (stdlib sqlite3,
    timestamps bound as the store writes them) and returns, for each, its rows if it returns
    any, else its row count."""
    compiled = [
        query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        for query in queries
    ]
    texts = [(str(c), _sqlite_args(c)) for c in compiled]

    def write(conn: sqlite3.Connection) -> list[Any]:
        out: list[Any] = []
        for sql, args in texts:
            cursor = conn.execute(sql, args)
            rows = cursor.fetchall() if cursor.description else None
            out.append(rows if rows is not None else cursor.rowcount)
        return out

    return write


def _info(row: Any) -> RunInfo:
    run_id, parent, status, updated_at = row
    return RunInfo(run_id, parent, RunStatus(status), updated_at)


class SqlPurgeOps(PurgeOps):
    def __init__(self, store: SqlRetention) -> None:
        self.store = store
        self._writes = 0

    async def _checkpoint(self) -> None:
        """SQLite: copy the WAL back into the database from a connection of our own, without
        blocking writers (PASSIVE), so that the WAL a purge fills is not checkpointed by the
        writer thread in the middle of a worker's commits (SQLite checkpoints in the commit
        that passes 1000 pages: tens of milliseconds for a step that happens to be there)."""
        store = self.store
        async with store.engine.connect() as conn:
            await conn.exec_driver_sql(SQLITE_PASSIVE_CHECKPOINT)

    async def _read(self, query: Any) -> list[Any]:
        store = self.store
        await store._ensure_ready()
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def candidates(
        self,
        status: RunStatus,
        cutoff: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[RunInfo]:
        return [
            _info(row)
            for row in await self._read(candidates_query(status.value, cutoff, after, limit))
        ]

    async def runs(self, run_ids: Collection[str]) -> list[RunInfo]:
        return [_info(row) for row in await self._read(runs_info_query(run_ids))] if run_ids else []

    async def children(self, run_ids: Collection[str]) -> list[RunInfo]:
        if not run_ids:
            return []
        return [_info(row) for row in await self._read(children_info_query(run_ids))]

    async def _write(self, *queries: Any) -> list[Any]:
        """Run ``queries`` in one transaction: for each, its rows (if it returns any) or its
        row count. On SQLite on the writer thread, with the steps (not against them, for the
        lock: a step that waits for a lock sleeps in backoff steps of up to 100 ms)."""
        store = self.store
        await store._ensure_ready()
        backend = store._backend
        async with store._reaching("cannot purge runs in"):
            if isinstance(backend, SqliteBackend):
                done = await backend.run_write(_on_writer(store.engine.dialect, *queries))
                self._writes += 1
                if self._writes % CHECKPOINT_EVERY == 0:
                    await self._checkpoint()
                return done
            out: list[Any] = []
            async with store._write() as conn:
                for query in queries:
                    result = await conn.execute(query)
                    out.append(result.all() if result.returns_rows else result.rowcount)
            return out

    async def claim(
        self, run_ids: Sequence[str], spec: PurgeSpec, owner: str, now: datetime
    ) -> dict[str, int]:
        assert owner.startswith(PURGE_OWNER_PREFIX)
        (rows,) = await self._write(claim_update(run_ids, spec, owner, now))
        return {run_id: int(seq) for run_id, seq in rows}

    async def release(self, run_ids: Sequence[str], owner: str) -> None:
        if run_ids:
            await self._write(release_update(run_ids, owner))

    async def delete_ledger(self, run_id: str, start: int, stop: int, owner: str) -> int:
        (count,) = await self._write(delete_ledger_range(run_id, start, stop, owner))
        return int(count)

    async def delete_ledgers(self, run_ids: Sequence[str], owner: str) -> int:
        (count,) = await self._write(delete_ledgers(run_ids, owner))
        return int(count)

    async def delete_runs(self, run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> PurgeResult:
        deletes = delete_runs_with_theirs(run_ids, spec, owner)
        if self.store.dialect == "postgresql":
            _, left, _, _, _, snaps, _, blobs, gone = await self._write(
                lock_runs(run_ids, spec, owner), *deletes
            )
        else:
            left, _, _, _, snaps, _, blobs, gone = await self._write(*deletes)
        return PurgeResult(int(gone), int(left), int(snaps), int(blobs))


class SqlRetention(Purging):
    """``purge`` and ``purgeable`` (a mixin of ``SqlStore``)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        dialect: str
        _backend: SqlBackend

        def _write(self) -> Any: ...

        def _reaching(self, what: str) -> contextlib.AbstractAsyncContextManager[None]: ...

        async def _ensure_ready(self) -> None: ...

    def _purge_ops(self) -> PurgeOps:
        return SqlPurgeOps(self)
