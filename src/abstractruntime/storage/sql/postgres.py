"""The Postgres backend: the hot path on raw asyncpg, and the LISTEN loop.

A step's commit is what a durable runtime pays all the time, so it skips SQLAlchemy's execution
layer: one statement (``statements.Postgres.COMMIT_STEP``, prepared once per connection by
asyncpg's statement cache) whose data-modifying CTEs update the run under the version check,
append the ledger rows, mark a waiting parent due and NOTIFY idle workers. A single statement is
its own transaction: one round trip per step instead of BEGIN / UPDATE / INSERT / COMMIT.

Two pools, sized by the same ``pool_size`` / ``max_overflow``: the hot writes take connections
from an asyncpg pool (which skips its reset query: the hot statements leave no session state),
the cold paths (reads, snapshots, artifacts, migrations) from the SQLAlchemy engine's. One pool
for both was tried: borrowing the engine's connections for the hot path cost 17% of the steps/s
of 500 concurrent runs (SQLAlchemy's pool, through its greenlet bridge, hands out and takes back
connections about a third slower than asyncpg's under contention). docs/storage.md counts the
connections.

The LISTEN connection is a third, single connection, held while a scheduler listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from ...core.ports import Served
from ...errors import ConcurrentUpdateError, RunExistsError, RunLeasedError, RunNotFoundError
from .backend import create_engine
from .statements import (
    NOTIFY_CHANNEL,
    HandleRow,
    Postgres,
    claim_due_args,
    claim_run_args,
    commit_step_args,
    insert_run_args,
    release_args,
    renew_args,
    served_args,
)
from .urls import PoolOptions

logger = logging.getLogger("abstractruntime.storage")

#: How long ``close`` lets hot statements still running finish.
_CLOSE_GRACE_S = 5.0

#: Arguments of SQLAlchemy's asyncpg dialect that asyncpg itself does not take.
_DIALECT_ONLY_ARGS = ("prepared_statement_cache_size", "prepared_statement_name_func")


class _NoResetConnection(asyncpg.Connection):  # type: ignore[misc]
    """Skips the pool's reset query on release: the hot path runs single statements only."""

    def get_reset_query(self) -> str:
        return ""


def _drop_closed(
    _dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Pool checkout: a connection the server closed meanwhile is replaced, not handed out
    (asyncpg knows without a round trip)."""
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this connection")


class PostgresBackend:
    """The hot path on asyncpg (see the module docstring and ``backend.SqlBackend``)."""

    read_only = False

    def __init__(self, url: URL, pool: PoolOptions, engine_kwargs: Mapping[str, Any], masked: str):
        self.url = url
        self.engine = create_engine(url, pool, engine_kwargs)
        event.listen(self.engine.sync_engine, "checkout", _drop_closed)
        self._masked = masked
        self._connect_kwargs: dict[str, Any] = dict(engine_kwargs.get("connect_args") or {})
        #: The hot path's pool, made at its first use.
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._hot_size = pool.pool_size + pool.max_overflow

    async def _get_pool(self) -> asyncpg.Pool:
        """The hot path's pool (its statements run on it directly: each takes a connection
        for itself and gives it back)."""
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    **self._connect_args(),
                    min_size=1,
                    max_size=self._hot_size,
                    connection_class=_NoResetConnection,
                )
        return self._pool

    async def create_run(self, values: Mapping[str, Any], *, notify: bool) -> None:
        try:
            pool = await self._get_pool()
            await pool.execute(Postgres.INSERT_RUN, *insert_run_args(values), notify)
        except asyncpg.UniqueViolationError as exc:
            raise RunExistsError(values["run_id"]) from exc

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> HandleRow:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            Postgres.CLAIM_RUN, *claim_run_args(run_id, owner, now, lease_until)
        )
        if row is not None:
            return tuple(row)
        lease = await pool.fetchrow(Postgres.LEASE_OF, run_id)
        if lease is None:
            raise RunNotFoundError(run_id)
        raise RunLeasedError(run_id, lease[0], lease[1])

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None,
    ) -> list[HandleRow]:
        sql = Postgres.CLAIM_DUE if workflows is None else Postgres.CLAIM_DUE_FILTERED
        args = claim_due_args(owner, now, lease_until, limit, served_args(workflows, True))
        pool = await self._get_pool()
        rows = await pool.fetch(sql, *args)
        return [tuple(row) for row in rows]

    async def commit_step(
        self,
        run_id: str,
        version: int,
        values: Mapping[str, Any],
        rows: Sequence[Mapping[str, Any]],
        *,
        notify: bool,
        parent_due: tuple[str, datetime] | None,
    ) -> None:
        args = commit_step_args(run_id, version, values, rows, notify=notify, parent_due=parent_due)
        try:
            pool = await self._get_pool()
            if await pool.fetchval(Postgres.COMMIT_STEP, *args):
                return
            exists = await pool.fetchval(Postgres.RUN_EXISTS, run_id)
        except asyncpg.UniqueViolationError as exc:  # someone else appended at our seq
            raise ConcurrentUpdateError(run_id, version) from exc
        if exists is None:
            raise RunNotFoundError(run_id)
        raise ConcurrentUpdateError(run_id, version)

    async def release(
        self, run_id: str, owner: str | None, version: int, due: datetime | None
    ) -> None:
        pool = await self._get_pool()
        await pool.execute(Postgres.RELEASE, *release_args(run_id, owner, version, due))

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        pool = await self._get_pool()
        rows = await pool.fetch(Postgres.RENEW, *renew_args(owner, lease_until, list(run_ids)))
        return [row[0] for row in rows]

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """A dedicated connection LISTENs (reopened with backoff when it drops; the scheduler
        keeps polling meanwhile)."""
        task = asyncio.create_task(self._listen_forever(callback), name="abstractruntime-listen")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return stop

    def _connect_args(self) -> dict[str, Any]:
        """asyncpg's arguments for a connection to the engine's URL, as the engine makes them."""
        _args, kwargs = self.engine.dialect.create_connect_args(self.url)
        for name in _DIALECT_ONLY_ARGS:
            kwargs.pop(name, None)
        return {**kwargs, **self._connect_kwargs}

    async def _connect(self) -> asyncpg.Connection:
        """A connection of its own (the LISTEN connection)."""
        return await asyncpg.connect(**self._connect_args())

    async def _listen_forever(self, callback: Callable[[], None]) -> None:
        backoff = 0.1
        while True:
            conn = None
            try:
                conn = await self._connect()
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, done=closed: done.set())
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: callback())
                backoff = 0.1
                callback()  # catch up on what was notified while we were not listening
                await closed.wait()
                logger.warning("LISTEN connection to %s lost; reconnecting", self._masked)
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
                raise
            except Exception as exc:
                logger.warning(
                    "cannot LISTEN on %s (%s); polling only, retrying in %.1fs",
                    self._masked,
                    exc,
                    backoff,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def close(self, *, grace_s: float = _CLOSE_GRACE_S) -> None:
        """Close both pools. Hot statements still running get ``grace_s`` to finish; then their
        connections are closed under them (they fail with a ``StoreError``)."""
        async with self._pool_lock:  # a pool being made meanwhile is closed too, not leaked
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), grace_s)
            except asyncio.TimeoutError:
                pool.terminate()
        await self.engine.dispose()
