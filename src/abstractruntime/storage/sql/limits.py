"""Shared concurrency and rate limits in SQL (the ``LimitStore`` methods of ``SqlStore``).

Cold path, SQLAlchemy Core on the engine: only steps that match a limit come here (the runtime
decides that in memory). Every transaction locks the budget rows it touches first, in name
order (``SELECT ... FOR UPDATE`` on Postgres; SQLite's ``BEGIN IMMEDIATE`` makes every write
serial anyway), then reads the budget's slots with their runs and decides with the same
functions as the memory store (``core.throttle``). Locking budgets before runs, in one order,
keeps two transactions from waiting on each other.

The statements are here, next to their one user, built from ``schema.py``'s tables; the
merger may move them into ``statements.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ...core import throttle
from ...core.models import RunState, RunStatus, StepRecord
from ...core.ports import RunHandle
from ...core.throttle import Request, Verdict
from . import statements
from .events import write_step
from .schema import UTCDateTime, limit_budgets, limit_slots, runs

if TYPE_CHECKING:
    import contextlib

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_SLOT_COLUMNS = (
    limit_slots.c.run_id,
    limit_slots.c.kind,
    limit_slots.c.scope,
    limit_slots.c.version,
    limit_slots.c.since,
    runs.c.status,
    runs.c.wait_key,
    runs.c.version,
    runs.c.lease_expires_at,
)


class _Census:
    """A budget's live slots and waiters as one transaction read them (dead rows deleted)."""

    def __init__(self, rows: Sequence[Any], now: datetime) -> None:
        #: run id -> (kind, scope, since, lease expiry)
        self.live: dict[str, tuple[str, str, datetime, datetime | None]] = {}
        self.dead: list[str] = []
        for run_id, kind, scope, version, since, status, wait_key, run_version, expires in rows:
            if status is None:
                alive = False
            elif kind == "reserved":
                alive = not throttle.is_terminal(status)
            elif kind == "waiting":
                alive = throttle.waiter_live(status, wait_key)
            elif scope == "run":
                alive = not throttle.is_terminal(status)
            else:
                alive = run_version == version and expires is not None and expires > now
            if alive:
                self.live[run_id] = (kind, scope, since, expires)
            else:
                self.dead.append(run_id)

    def reserved_at(self, run_id: str) -> float | None:
        """The time of the run's rate reservation, if it has one."""
        found = self.live.get(run_id)
        return throttle.ts(found[2]) if found is not None and found[0] == "reserved" else None

    def held_by_others(self, run_id: str) -> int:
        return sum(1 for other, v in self.live.items() if v[0] == "held" and other != run_id)

    def waiters(self) -> list[str]:
        """Live waiters in order of arrival."""
        found = [(v[2], other) for other, v in self.live.items() if v[0] == "waiting"]
        return [other for _since, other in sorted(found)]

    def last_arrival(self) -> datetime | None:
        return max((v[2] for v in self.live.values() if v[0] == "waiting"), default=None)

    def ahead_of(self, run_id: str) -> int:
        waiters = self.waiters()
        return waiters.index(run_id) if run_id in waiters else len(waiters)

    def expiries(self) -> list[datetime | None]:
        return [v[3] for v in self.live.values() if v[0] == "held" and v[1] == "effect"]


class SqlLimits:
    """The ``LimitStore`` methods (a mixin of ``SqlStore``)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        dialect: str

        def _write(self) -> Any: ...

        def _reaching(self, what: str) -> contextlib.AbstractAsyncContextManager[None]: ...

        async def _ensure_ready(self) -> None: ...

        async def _notify(self, conn: Any, run_ids: Sequence[str]) -> None: ...

    # -- statements --------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def _lock(
        self, conn: AsyncConnection, request: Request, now: datetime
    ) -> tuple[list[float], _Census]:
        """Lock the budget's row (made if new) and read its window and its slots."""
        new = self._insert(limit_budgets).values(
            name=request.name,
            key=request.key,
            kind=request.kind,
            scope=request.scope,
            capacity=request.capacity,
            per_s=request.per_s,
            grants="[]",
            updated_at=now,
        )
        await conn.execute(new.on_conflict_do_nothing())
        where = (limit_budgets.c.name == request.name, limit_budgets.c.key == request.key)
        query = sa.select(limit_budgets.c.grants).where(*where).with_for_update()
        grants = json.loads((await conn.execute(query)).scalar_one())
        slots = (
            sa.select(*_SLOT_COLUMNS)
            .select_from(limit_slots.outerjoin(runs, runs.c.run_id == limit_slots.c.run_id))
            .where(limit_slots.c.name == request.name, limit_slots.c.key == request.key)
        )
        census = _Census(self._dated((await conn.execute(slots)).all()), now)
        if census.dead:
            await conn.execute(
                limit_slots.delete().where(
                    limit_slots.c.name == request.name,
                    limit_slots.c.key == request.key,
                    limit_slots.c.run_id.in_(census.dead),
                )
            )
        return [float(t) for t in grants], census

    def _dated(self, rows: Sequence[Any]) -> list[Any]:
        """Rows of ``_SLOT_COLUMNS`` with aware datetimes (a join's columns keep their types
        on Postgres, but be sure on both)."""
        utc = UTCDateTime()
        out = []
        for row in rows:
            values = list(row)
            for i in (4, 8):
                if values[i] is not None and getattr(values[i], "tzinfo", None) is None:
                    values[i] = utc.process_result_value(values[i], self.engine.dialect)
            out.append(values)
        return out

    async def _note(
        self, conn: AsyncConnection, request: Request, run_id: str, values: dict[str, Any]
    ) -> None:
        """Put the run's row of the budget (replacing one it had)."""
        await conn.execute(
            limit_slots.delete().where(
                limit_slots.c.name == request.name,
                limit_slots.c.key == request.key,
                limit_slots.c.run_id == run_id,
            )
        )
        await conn.execute(
            limit_slots.insert().values(
                name=request.name, key=request.key, run_id=run_id, scope=request.scope, **values
            )
        )

    async def _set_grants(
        self, conn: AsyncConnection, request: Request, grants: list[float], now: datetime
    ) -> None:
        await conn.execute(
            limit_budgets.update()
            .where(limit_budgets.c.name == request.name, limit_budgets.c.key == request.key)
            .values(
                grants=json.dumps(grants),
                capacity=request.capacity,
                per_s=request.per_s,
                updated_at=now,
            )
        )

    async def _forget(self, conn: AsyncConnection, request: Request, run_id: str) -> None:
        await conn.execute(
            limit_slots.delete().where(
                limit_slots.c.name == request.name,
                limit_slots.c.key == request.key,
                limit_slots.c.run_id == run_id,
            )
        )

    async def _drop_waits(self, conn: AsyncConnection, run_id: str, keep: Request | None) -> None:
        query = limit_slots.delete().where(
            limit_slots.c.run_id == run_id, limit_slots.c.kind == "waiting"
        )
        if keep is not None:
            query = query.where(
                sa.not_(sa.and_(limit_slots.c.name == keep.name, limit_slots.c.key == keep.key))
            )
        await conn.execute(query)

    # -- the LimitStore interface --------------------------------------------------------------

    async def acquire_limits(
        self, run_id: str, version: int, requests: Sequence[Request], now: datetime
    ) -> Verdict:
        await self._ensure_ready()
        now_ts = throttle.ts(now)
        async with self._reaching("cannot take a limit's slot in"), self._write() as conn:
            ordered = sorted(requests, key=lambda r: r.budget)
            locked = {r.budget: await self._lock(conn, r, now) for r in ordered}
            for request in ordered:
                if request.kind == "concurrent":
                    census = locked[request.budget][1]
                    ahead = census.ahead_of(run_id)
                    if not throttle.slots_free(
                        census.held_by_others(run_id), ahead, request.capacity
                    ):
                        retry_at = throttle.slot_retry_at(now, census.expiries())
                        return Verdict(False, request, retry_at)
            takes = {}
            for request in ordered:
                if request.kind == "rate":
                    grants, census = locked[request.budget]
                    reserved = census.reserved_at(run_id)
                    takes[request.budget] = throttle.rate_take(
                        grants, reserved, now_ts, request.capacity, request.per_s
                    )
            late = [(take.at, budget) for budget, take in takes.items() if not take.granted]
            for request in ordered:
                take = takes.get(request.budget)
                if take is None:
                    if not late:
                        held = {"kind": "held", "version": version, "since": now}
                        await self._note(conn, request, run_id, held)
                    continue
                if late and take.granted:
                    continue  # not taken: the run asks again when its reservation comes
                if take.grants is not None:
                    await self._set_grants(conn, request, take.grants, now)
                if take.granted:
                    await self._forget(conn, request, run_id)
                else:
                    at = datetime.fromtimestamp(take.at, now.tzinfo)
                    reserved_row = {"kind": "reserved", "version": 0, "since": at}
                    await self._note(conn, request, run_id, reserved_row)
            if late:
                at_ts, blocked = max(late)
                request = next(r for r in ordered if r.budget == blocked)
                return Verdict(False, request, datetime.fromtimestamp(at_ts, now.tzinfo))
            await self._drop_waits(conn, run_id, None)
        return Verdict(True)

    async def commit_limited(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        release: Sequence[Request],
        wait: Request | None,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        await self._ensure_ready()
        run_id = state.run_id
        values, rows = statements.cold_commit_values(
            handle, state, state_json, records, now, lease_until, max_record_bytes
        )
        budgets = {r.budget: r for r in release}
        if wait is not None:
            budgets[wait.budget] = wait
        woken: list[str] = []
        where = f"could not commit a step of run {run_id!r} to"
        async with self._reaching(where), self._write() as conn:
            censuses = {}
            for budget in sorted(budgets):  # budgets first, then runs: one lock order
                censuses[budget] = await self._lock(conn, budgets[budget], now)
            woken += await write_step(conn, handle, state, values, rows, now)
            for request in release:
                census = censuses[request.budget][1]
                await conn.execute(
                    limit_slots.delete().where(
                        limit_slots.c.name == request.name,
                        limit_slots.c.key == request.key,
                        limit_slots.c.run_id == run_id,
                        limit_slots.c.kind == "held",
                    )
                )
                census.live.pop(run_id, None)
                room = request.capacity - census.held_by_others(run_id)
                woken += await self._wake(conn, census.waiters()[: max(room, 0)], now)
            if wait is not None:
                await self._drop_waits(conn, run_id, wait)
                census = censuses[wait.budget][1]
                if run_id not in census.live or census.live[run_id][0] != "waiting":
                    since = throttle.arrival(wait, state, now, census.last_arrival())
                    await self._note(
                        conn, wait, run_id, {"kind": "waiting", "version": 0, "since": since}
                    )
                    census.live[run_id] = ("waiting", wait.scope, since, None)
                ahead = census.ahead_of(run_id)
                fits = throttle.slots_free(census.held_by_others(run_id), ahead, wait.capacity)
                if fits:  # a release came between the refusal and now: go again at once
                    woken += await self._wake(conn, [run_id], now)
            await self._notify(conn, woken)
        return statements.committed_handle(handle, state, state_json, values)

    async def _wake(
        self, conn: AsyncConnection, run_ids: Sequence[str], now: datetime
    ) -> list[str]:
        """Make those of ``run_ids`` that wait unclaimed due now."""
        if not run_ids:
            return []
        query = (
            runs.update()
            .where(
                runs.c.run_id.in_(list(run_ids)),
                runs.c.status == RunStatus.WAITING.value,
                sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at <= now),
            )
            .values(due_at=now)
            .returning(runs.c.run_id)
        )
        return list((await conn.execute(query)).scalars().all())

    async def limit_usage(self, now: datetime) -> list[dict[str, Any]]:
        await self._ensure_ready()
        usage = []
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            budgets = (
                await conn.execute(
                    sa.select(limit_budgets).order_by(limit_budgets.c.name, limit_budgets.c.key)
                )
            ).all()
            for row in budgets:
                request = Request(
                    row.name, row.key, row.kind, row.scope, row.capacity, float(row.per_s)
                )
                slots = (
                    sa.select(*_SLOT_COLUMNS)
                    .select_from(limit_slots.outerjoin(runs, runs.c.run_id == limit_slots.c.run_id))
                    .where(limit_slots.c.name == row.name, limit_slots.c.key == row.key)
                )
                census = _Census(self._dated((await conn.execute(slots)).all()), now)
                grants = json.loads(row.grants)
                usage.append(
                    throttle.usage_row(
                        request,
                        held=sum(1 for v in census.live.values() if v[0] == "held"),
                        waiting=sum(1 for v in census.live.values() if v[0] != "held"),
                        in_window=throttle.granted_in_window(
                            grants, throttle.ts(now), request.per_s
                        ),
                    )
                )
        return usage
