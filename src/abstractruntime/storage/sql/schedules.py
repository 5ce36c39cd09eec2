"""``store.schedules`` of a ``SqlStore``: cron schedules, one row each (statements in
``statements``).

Declaring is race-free without a lock: an ``INSERT ... ON CONFLICT DO NOTHING``, then, when the
name was taken, an ``UPDATE`` that matches only a row whose definition differs, in one
transaction. Firing moves a schedule on with an update conditional on the version it read.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...core.schedules import Schedule
from ...core.serde import decode
from . import statements

if TYPE_CHECKING:
    from .store import SqlStore


def _schedule(row: Any) -> Schedule:
    return Schedule(
        name=row.name,
        workflow_id=row.workflow_id,
        cron=row.cron,
        timezone=row.timezone,
        catch_up=row.catch_up,
        vars=decode(row.vars),
        next_fire_at=row.next_fire_at,
        last_run_id=row.last_run_id,
        last_fired_at=row.last_fired_at,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlScheduleStore:
    """Schedules in the database of a ``SqlStore`` (see ``core.schedules.ScheduleStore``)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def put(self, schedule: Schedule) -> tuple[Schedule, bool]:
        store = self._store
        await store._ensure_ready()
        values = statements.schedule_values(schedule)
        async with store._reaching("cannot save a schedule in"), store._write() as conn:
            inserted = await conn.scalar(
                statements.insert_schedule_if_absent(store.dialect, values)
            )
            written = inserted is not None
            if not written:
                result = await conn.execute(statements.redefine_schedule(values))
                written = bool(result.rowcount)
            row = (await conn.execute(statements.load_schedule_query(schedule.name))).one()
        return _schedule(row), written

    async def get(self, name: str) -> Schedule | None:
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            row = (await conn.execute(statements.load_schedule_query(name))).one_or_none()
        return None if row is None else _schedule(row)

    async def delete(self, name: str) -> bool:
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot delete a schedule in"), store._write() as conn:
            result = await conn.execute(statements.delete_schedule(name))
        return bool(result.rowcount)

    async def list(self) -> builtins.list[Schedule]:
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            rows = (await conn.execute(statements.list_schedules_query())).all()
        return [_schedule(row) for row in rows]

    async def due(
        self, now: datetime, limit: int, workflow_ids: Sequence[str] | None = None
    ) -> builtins.list[Schedule]:
        store = self._store
        await store._ensure_ready()
        query = statements.due_schedules_query(now, limit, workflow_ids)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_schedule(row) for row in rows]

    async def next_fire_at(self, workflow_ids: Sequence[str] | None = None) -> datetime | None:
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            found: datetime | None = await conn.scalar(statements.next_fire_query(workflow_ids))
        return found

    async def advance(
        self,
        name: str,
        version: int,
        next_fire_at: datetime,
        *,
        last_run_id: str | None,
        last_fired_at: datetime | None,
    ) -> bool:
        store = self._store
        await store._ensure_ready()
        update = statements.advance_schedule(
            name, version, next_fire_at, last_run_id, last_fired_at
        )
        async with store._reaching("cannot update a schedule in"), store._write() as conn:
            result = await conn.execute(update)
        return bool(result.rowcount)
