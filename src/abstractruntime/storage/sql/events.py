"""Buffered events and messages in SQL (the ``EventStore`` methods of ``SqlStore``).

They take the cold path (SQLAlchemy Core on the engine, statements of ``statements.py``): a
delivery is one resume per message or event, not the step every run makes, so the hot path's
single statement stays as it is. ``commit_delivery`` is a step's commit (run update under the
version check, ledger rows, a waiting parent made due) plus the message's delete or the
event's delivery row, in one transaction; each part that matches no row rolls it all back.
See ``core/events.py`` for why emit and wait need no lock between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...core.kernel import unstorable
from ...core.models import RunState, StepRecord
from ...core.ports import Delivery, RunHandle
from ...core.serde import decode
from ...errors import ConcurrentUpdateError, RunNotFoundError
from . import statements

if TYPE_CHECKING:
    import contextlib

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


async def write_step(
    conn: AsyncConnection,
    handle: RunHandle,
    state: RunState,
    values: dict[str, Any],
    rows: list[dict[str, Any]],
    now: datetime,
) -> list[str]:
    """Commit a step on the cold path, inside the caller's transaction: the run's row under
    the version check, its ledger rows, and a waiting parent made due when the run ended;
    returns the ids of the runs made due (the parent, if any). ``RunNotFoundError`` /
    ``ConcurrentUpdateError`` roll the transaction back."""
    run_id = state.run_id
    update = statements.update_run_query(run_id, handle.version, values)
    if (await conn.execute(update)).rowcount != 1:
        if await conn.scalar(statements.run_exists_query(run_id)) is None:
            raise RunNotFoundError(run_id)
        raise ConcurrentUpdateError(run_id, handle.version)
    if rows:
        await conn.execute(statements.insert_records(), rows)
    parent = state.parent_run_id
    if not (state.status.is_terminal and parent):
        return []
    made_due = (await conn.execute(statements.mark_parent_due(parent, now))).rowcount
    return [parent] if made_due else []


class SqlEvents:
    """The ``EventStore`` methods (a mixin of ``SqlStore``, which gives the engine, the
    transaction, the error boundary and the schema check)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        dialect: str

        def _write(self) -> Any: ...

        def _reaching(self, what: str) -> contextlib.AbstractAsyncContextManager[None]: ...

        async def _ensure_ready(self) -> None: ...

    async def buffer_event(
        self,
        key: str,
        payload_json: str,
        *,
        now: datetime,
        expires_at: datetime,
        idempotency_key: str | None = None,
    ) -> int:
        await self._ensure_ready()
        query = statements.insert_event(key, payload_json, now, expires_at)
        async with self._reaching("cannot store an event in"), self._write() as conn:
            if idempotency_key is not None:
                await conn.execute(statements.claim_emit_key(self.dialect, idempotency_key, now))
                # The row is ours now (made, or made by a transaction that has committed).
                found = (await conn.execute(statements.emit_key_query(idempotency_key))).first()
                if found is not None and found.event_id is not None:
                    return int(found.event_id)  # buffered by an earlier call with the key
            event_id = int((await conn.execute(query)).scalar_one())
            if idempotency_key is not None:
                await conn.execute(statements.set_emit_event(idempotency_key, event_id))
            return event_id

    async def emit_result(self, idempotency_key: str) -> list[str] | None:
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            found = (await conn.execute(statements.emit_key_query(idempotency_key))).first()
        return None if found is None or found.resumed is None else list(found.resumed)

    async def record_emit(self, idempotency_key: str, resumed: list[str], *, now: datetime) -> None:
        await self._ensure_ready()
        async with self._reaching("cannot store an event in"), self._write() as conn:
            await conn.execute(statements.claim_emit_key(self.dialect, idempotency_key, now))
            await conn.execute(statements.set_emit_resumed(idempotency_key, resumed))

    async def delete_old_emit_keys(self, before: datetime, limit: int) -> int:
        await self._ensure_ready()
        if not await self._any(statements.old_emit_keys_query(before)):
            return 0
        async with self._reaching("cannot clean up"), self._write() as conn:
            return int(
                (await conn.execute(statements.delete_old_emit_keys(before, limit))).rowcount
            )

    async def send_message(self, run_id: str, key: str, payload_json: str, *, now: datetime) -> int:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        async with self._reaching("cannot store a message in"), self._write() as conn:
            if await conn.scalar(statements.run_exists_query(run_id)) is None:
                raise RunNotFoundError(run_id)
            query = statements.insert_message(run_id, key, payload_json, now)
            return int((await conn.execute(query)).scalar_one())

    async def find_delivery(self, run_id: str, key: str, now: datetime) -> Delivery | None:
        if unstorable(run_id, key):
            return None
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            row = (await conn.execute(statements.next_message_query(run_id, key))).first()
            if row is not None:
                return Delivery(decode(row[1]), message_id=int(row[0]))
            query = statements.buffered_event_query(run_id, key, now)
            row = (await conn.execute(query)).first()
        return None if row is None else Delivery(decode(row[1]), event_id=int(row[0]))

    async def commit_delivery(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        delivery: Delivery,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        await self._ensure_ready()
        run_id = state.run_id
        values, rows = statements.cold_commit_values(
            handle, state, state_json, records, now, lease_until, max_record_bytes
        )
        where = f"could not deliver to run {run_id!r} in"
        async with self._reaching(where), self._write() as conn:
            if delivery.message_id is not None:
                gone = statements.delete_message(delivery.message_id, run_id)
                if (await conn.execute(gone)).rowcount != 1:
                    raise ConcurrentUpdateError(run_id, handle.version)
            if delivery.event_id is not None:
                noted = statements.insert_delivery(self.dialect, delivery.event_id, run_id)
                if (await conn.execute(noted)).rowcount != 1:
                    raise ConcurrentUpdateError(run_id, handle.version)
            await self._notify(conn, await write_step(conn, handle, state, values, rows, now))
        return statements.committed_handle(handle, state, state_json, values)

    async def wake_waiting(self, run_ids: Sequence[str], now: datetime) -> None:
        ids = [run_id for run_id in run_ids if not unstorable(run_id)]
        if not ids:
            return
        await self._ensure_ready()
        async with self._reaching("cannot wake runs in"), self._write() as conn:
            woken = (await conn.execute(statements.wake_waiting(ids, now))).scalars().all()
            await self._notify(conn, woken)

    async def _any(self, query: Any) -> bool:
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            return bool(await conn.scalar(query))

    async def _notify(self, conn: Any, run_ids: Sequence[str]) -> None:
        if self.dialect == "postgresql":
            for run_id in run_ids:
                await conn.execute(statements.notify_due(run_id))

    async def wake_deliverable(self, now: datetime, limit: int) -> int:
        await self._ensure_ready()
        # The scheduler asks every cycle: two reads of the (few) messages and events, and no
        # write lock for nothing.
        messages = await self._any(statements.messages_pending_query(now))
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            keys = (await conn.execute(statements.live_event_keys(now, limit))).scalars().all()
        if not messages and not keys:
            return 0
        woken: list[str] = []
        async with self._reaching("cannot wake runs in"), self._write() as conn:
            if messages:
                woken += (
                    (await conn.execute(statements.wake_for_messages(now, limit))).scalars().all()
                )
            if keys and len(woken) < limit:
                query = statements.wake_for_events(now, keys, limit - len(woken))
                woken += (await conn.execute(query)).scalars().all()
            await self._notify(conn, woken)
        return len(woken)

    async def delete_expired_events(self, now: datetime, limit: int) -> int:
        await self._ensure_ready()
        if not await self._any(statements.expired_events_query(now)):
            return 0
        async with self._reaching("cannot delete expired events in"), self._write() as conn:
            return int((await conn.execute(statements.delete_expired_events(now, limit))).rowcount)
