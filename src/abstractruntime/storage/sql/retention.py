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

from collections.abc import Collection, Sequence
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
    artifact_tags,
    artifacts,
    event_deliveries,
    ledger,
    messages,
    runs,
    snapshot_tags,
    snapshots,
)

if TYPE_CHECKING:
    import contextlib

    from sqlalchemy.ext.asyncio import AsyncEngine

_INFO = (runs.c.run_id, runs.c.parent_run_id, runs.c.status, runs.c.updated_at)


# -- statements --------------------------------------------------------------------------------


def candidates_query(
    status: str, cutoff: datetime, after: tuple[datetime, str] | None, limit: int
) -> sa.Select[Any]:
    """Runs of ``status`` updated before ``cutoff``, oldest first, after the keyset ``after``."""
    query = sa.select(*_INFO).where(runs.c.status == status, runs.c.updated_at < cutoff)
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


def _held(owner: str) -> sa.ScalarSelect[Any]:
    return sa.select(runs.c.run_id).where(runs.c.lease_owner == owner).scalar_subquery()


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


def doomed_query(run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> sa.Select[Any]:
    """Those of ``run_ids`` that ``owner`` holds and that still qualify (read in the deleting
    transaction, under its write lock on SQLite and row locks on Postgres)."""
    query = sa.select(runs.c.run_id).where(
        runs.c.run_id.in_(list(run_ids)), runs.c.lease_owner == owner, *_qualifies(spec)
    )
    return query


def lock_runs(run_ids: Sequence[str]) -> sa.Select[Any]:
    return sa.select(runs.c.run_id).where(runs.c.run_id.in_(list(run_ids))).with_for_update()


def delete_run_rows(run_ids: Sequence[str]) -> list[sa.Delete]:
    """What belongs to the runs besides their snapshots and artifacts, and would go by ON
    DELETE CASCADE; deleted by name because a SQLite connection made by someone else may have
    foreign keys off."""
    ids = list(run_ids)
    return [
        ledger.delete().where(ledger.c.run_id.in_(ids)),
        messages.delete().where(messages.c.run_id.in_(ids)),
        event_deliveries.delete().where(event_deliveries.c.run_id.in_(ids)),
    ]


def delete_run_snapshot_tags(run_ids: Sequence[str]) -> sa.Delete:
    of_runs = sa.select(snapshots.c.snapshot_id).where(snapshots.c.run_id.in_(list(run_ids)))
    return snapshot_tags.delete().where(snapshot_tags.c.snapshot_id.in_(of_runs))


def delete_run_artifact_tags(run_ids: Sequence[str]) -> sa.Delete:
    of_runs = sa.select(artifacts.c.artifact_id).where(artifacts.c.run_id.in_(list(run_ids)))
    return artifact_tags.delete().where(artifact_tags.c.artifact_id.in_(of_runs))


def delete_run_snapshots(run_ids: Sequence[str]) -> sa.Delete:
    return snapshots.delete().where(snapshots.c.run_id.in_(list(run_ids)))


def delete_run_artifacts(run_ids: Sequence[str]) -> sa.Delete:
    return artifacts.delete().where(artifacts.c.run_id.in_(list(run_ids)))


def delete_runs(run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> sa.Delete:
    return runs.delete().where(
        runs.c.run_id.in_(list(run_ids)), runs.c.lease_owner == owner, *_qualifies(spec)
    )


# -- the operations ------------------------------------------------------------------------------


def _info(row: Any) -> RunInfo:
    run_id, parent, status, updated_at = row
    return RunInfo(run_id, parent, RunStatus(status), updated_at)


class SqlPurgeOps(PurgeOps):
    def __init__(self, store: SqlRetention) -> None:
        self.store = store

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

    async def claim(
        self, run_ids: Sequence[str], spec: PurgeSpec, owner: str, now: datetime
    ) -> dict[str, int]:
        assert owner.startswith(PURGE_OWNER_PREFIX)
        store = self.store
        await store._ensure_ready()
        async with store._reaching("cannot purge runs in"), store._write() as conn:
            rows = (await conn.execute(claim_update(run_ids, spec, owner, now))).all()
        return {run_id: int(seq) for run_id, seq in rows}

    async def release(self, run_ids: Sequence[str], owner: str) -> None:
        if not run_ids:
            return
        store = self.store
        async with store._reaching("cannot purge runs in"), store._write() as conn:
            await conn.execute(release_update(run_ids, owner))

    async def delete_ledger(self, run_id: str, start: int, stop: int, owner: str) -> int:
        store = self.store
        async with store._reaching("cannot purge runs in"), store._write() as conn:
            result = await conn.execute(delete_ledger_range(run_id, start, stop, owner))
        return int(result.rowcount)

    async def delete_ledgers(self, run_ids: Sequence[str], owner: str) -> int:
        store = self.store
        async with store._reaching("cannot purge runs in"), store._write() as conn:
            result = await conn.execute(delete_ledgers(run_ids, owner))
        return int(result.rowcount)

    async def delete_runs(self, run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> PurgeResult:
        store = self.store
        async with store._reaching("cannot purge runs in"), store._write() as conn:
            if store.dialect == "postgresql":  # the rows stay as read until the delete
                await conn.execute(lock_runs(run_ids))
            doomed = list((await conn.execute(doomed_query(run_ids, spec, owner))).scalars())
            if not doomed:
                return PurgeResult()
            # What is left of the ledgers: nothing, unless a purge died half-way (the claim
            # bumped the version: no step appends records meanwhile).
            left = 0
            for i, statement in enumerate(delete_run_rows(doomed)):
                deleted = (await conn.execute(statement)).rowcount
                left += deleted if i == 0 else 0
            await conn.execute(delete_run_snapshot_tags(doomed))
            snaps = (await conn.execute(delete_run_snapshots(doomed))).rowcount
            await conn.execute(delete_run_artifact_tags(doomed))
            blobs = (await conn.execute(delete_run_artifacts(doomed))).rowcount
            gone = (await conn.execute(delete_runs(doomed, spec, owner))).rowcount
        return PurgeResult(int(gone), left, int(snaps), int(blobs))


class SqlRetention(Purging):
    """``purge`` and ``purgeable`` (a mixin of ``SqlStore``)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        dialect: str

        def _write(self) -> Any: ...

        def _reaching(self, what: str) -> contextlib.AbstractAsyncContextManager[None]: ...

        async def _ensure_ready(self) -> None: ...

    def _purge_ops(self) -> PurgeOps:
        return SqlPurgeOps(self)
