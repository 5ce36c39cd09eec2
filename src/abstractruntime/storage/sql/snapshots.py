"""``store.snapshots`` of a ``SqlStore``: snapshots and their tags, and their statements.

A snapshot is one row (the run state as JSON, the name and description also case-folded for
search) plus one row per tag, case-folded, in ``abstractruntime_snapshot_tags`` so that the tag
filter is an index lookup. Every value reaches the database as a bound parameter; the search
escapes ``%``, ``_`` and the escape character in the value itself, so a query is matched
literally whatever it holds.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ...core.kernel import unstorable
from ...core.serde import decode, encode, to_utc, utc_now
from ...core.snapshot import Snapshot, fold
from .schema import RawJSON, snapshot_tags, snapshots

if TYPE_CHECKING:
    from .store import SqlStore

_COLUMNS = (
    snapshots.c.snapshot_id,
    snapshots.c.run_id,
    snapshots.c.step_id,
    snapshots.c.name,
    snapshots.c.description,
    snapshots.c.tags,
    snapshots.c.created_at,
    snapshots.c.updated_at,
    sa.cast(snapshots.c.run_state, sa.Text).label("run_state"),
)


def _row_values(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.snapshot_id,
        "run_id": snapshot.run_id,
        "step_id": snapshot.step_id,
        "name": snapshot.name,
        "description": snapshot.description,
        "tags": list(snapshot.tags),
        "created_at": snapshot.created_at,
        "updated_at": snapshot.updated_at,
        "search_name": fold(snapshot.name),
        "search_description": None if snapshot.description is None else fold(snapshot.description),
        # Encoded here so a value JSON cannot hold fails with the key that holds it.
        "run_state": RawJSON(encode(snapshot.run_state, root="run_state")),
    }


def upsert_statement(dialect: str, values: dict[str, Any]) -> sa.Insert:
    """Insert the snapshot, or replace every column but its id and ``created_at``; returns the
    ``created_at`` that is stored."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(snapshots).values(values)
    keep = {"snapshot_id", "created_at"}
    return statement.on_conflict_do_update(
        index_elements=[snapshots.c.snapshot_id],
        set_={name: statement.excluded[name] for name in values if name not in keep},
    ).returning(snapshots.c.created_at)


def list_query(
    *,
    run_id: str | None = None,
    tag: str | None = None,
    query: str | None = None,
    limit: int | None = 100,
) -> sa.Select[Any]:
    """The snapshots passing every given filter, newest first."""
    select = sa.select(*_COLUMNS)
    if run_id is not None:
        select = select.where(snapshots.c.run_id == run_id)
    if tag is not None:
        tagged = sa.select(snapshot_tags.c.snapshot_id).where(
            snapshot_tags.c.tag == fold(tag.strip())
        )
        select = select.where(snapshots.c.snapshot_id.in_(tagged))
    if query is not None:
        # LIKE '%' || :needle || '%' ESCAPE '/', with '%', '_' and '/' escaped in :needle.
        needle = fold(query)
        select = select.where(
            sa.or_(
                snapshots.c.search_name.contains(needle, autoescape=True),
                snapshots.c.search_description.contains(needle, autoescape=True),
            )
        )
    select = select.order_by(snapshots.c.created_at.desc(), snapshots.c.snapshot_id.desc())
    return select if limit is None else select.limit(max(limit, 0))


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
        values = _row_values(snapshot)
        tags = sorted({fold(tag) for tag in snapshot.tags})
        async with store._reaching("cannot save a snapshot in"), store._write() as conn:
            created = await conn.scalar(upsert_statement(store.dialect, values))
            await conn.execute(
                snapshot_tags.delete().where(snapshot_tags.c.snapshot_id == snapshot.snapshot_id)
            )
            if tags:
                await conn.execute(
                    snapshot_tags.insert(),
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
        query = sa.select(*_COLUMNS).where(snapshots.c.snapshot_id == snapshot_id)
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
            await conn.execute(
                snapshot_tags.delete().where(snapshot_tags.c.snapshot_id == snapshot_id)
            )
            result = await conn.execute(
                snapshots.delete().where(snapshots.c.snapshot_id == snapshot_id)
            )
        return bool(result.rowcount)

    async def list(
        self,
        *,
        run_id: str | None = None,
        tag: str | None = None,
        query: str | None = None,
        limit: int | None = 100,
    ) -> builtins.list[Snapshot]:
        """Snapshots passing every filter, newest first (see ``SnapshotStore.list``)."""
        if unstorable(run_id, tag, query):
            return []
        store = self._store
        await store._ensure_ready()
        select = list_query(run_id=run_id, tag=tag, query=query, limit=limit)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            rows = (await conn.execute(select)).all()
        return [_snapshot(row) for row in rows]
