"""``store.snapshots`` of a ``SqlStore``: snapshots and their tags (statements in ``statements``).

A snapshot is one row (the run state as JSON, the name and description also case-folded for
search) plus one row per tag, case-folded, in ``abstractruntime_snapshot_tags`` so that the tag
filter is an index lookup. Every value reaches the database as a bound parameter; the search
escapes ``%``, ``_`` and the escape character in the value itself, so a query is matched
literally whatever it holds.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...core.kernel import unstorable
from ...core.serde import decode, to_utc, utc_now
from ...core.snapshot import Snapshot, fold
from . import statements

if TYPE_CHECKING:
    from .store import SqlStore


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        snapshot_id=row.snapshot_id,
        run_id=row.run_id,
        step_id=row.step_id,
        name=row.name,
        description=row.description,
        tags=list(row.tags or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
        run_state=decode(row.run_state),
    )


class SqlSnapshotStore:
    """Snapshots in the database of a ``SqlStore`` (see ``core.ports.SnapshotStore``)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def save(self, snapshot: Snapshot) -> None:
        """Insert or replace the snapshot with this id, its tags with it, in one transaction."""
        store = self._store
        await store._ensure_ready()
        snapshot.updated_at = max(utc_now(), snapshot.created_at)
        values = statements.snapshot_values(snapshot)
        tags = sorted({fold(tag) for tag in snapshot.tags})
        async with store._reaching("cannot save a snapshot in"), store._write() as conn:
            created = await conn.scalar(statements.upsert_snapshot(store.dialect, values))
            await conn.execute(statements.delete_snapshot_tags(snapshot.snapshot_id))
            if tags:
                await conn.execute(
                    statements.insert_snapshot_tags(),
                    [{"snapshot_id": snapshot.snapshot_id, "tag": tag} for tag in tags],
                )
        if created is not None:
            snapshot.created_at = to_utc(created)

    async def load(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None when unknown."""
        if unstorable(snapshot_id):
            return None
        store = self._store
        await store._ensure_ready()
        query = statements.load_snapshot_query(snapshot_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _snapshot(row)

    async def delete(self, snapshot_id: str) -> bool:
        """Delete it and its tags; whether it existed."""
        if unstorable(snapshot_id):
            return False
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot delete a snapshot in"), store._write() as conn:
            # Not left to ON DELETE CASCADE alone: a SQLite connection made by someone else may
            # have foreign keys off.
            await conn.execute(statements.delete_snapshot_tags(snapshot_id))
            result = await conn.execute(statements.delete_snapshot(snapshot_id))
        return bool(result.rowcount)

    async def list(
        self,
        *,
        run_id: str | None = None,
        tag: str | None = None,
        query: str | None = None,
        limit: int | None = 100,
        after: tuple[datetime, str] | None = None,
    ) -> builtins.list[Snapshot]:
        """Snapshots passing every filter, newest first (see ``SnapshotStore.list``)."""
        if unstorable(run_id, tag, query):
            return []
        store = self._store
        await store._ensure_ready()
        select = statements.list_snapshots_query(
            run_id=run_id, tag=tag, query=query, limit=limit, after=after
        )
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            rows = (await conn.execute(select)).all()
        return [_snapshot(row) for row in rows]
