"""The SQLite backend: one writer thread, one connection, and group commit.

SQLAlchemy's async engine over aiosqlite makes about three thread hops per statement, so a naive
step costs several times what SQLite itself does. Every write of the hot path (create, claim,
commit a step, release, renew) is instead a small function run on ONE dedicated thread that owns
one stdlib ``sqlite3`` connection: one thread hop per write, statements prepared once (sqlite3's
statement cache). Writes that queue up while a transaction is open are committed together in the
next one (group commit), each inside its own SAVEPOINT so that one write's failure - a version
conflict, say - undoes only that write; every caller still waits for the COMMIT that holds its
write before it goes on. SQLite allows one writer at a time anyway, so nothing is lost by
serialising writes on one thread, while readers (the engine's pool, WAL mode) never wait.

The engine's connections (aiosqlite) serve the reads and the cold writes (snapshots, artifacts,
migrations); this module sets them up too: WAL, ``synchronous=FULL``, a busy timeout, foreign
keys, and ``BEGIN IMMEDIATE`` for a transaction that will write.

An in-memory URL (``sqlite+aiosqlite://``, ``:memory:``) gets a private temporary file, deleted
on close: the writer thread and the engine's connections must see one database, which a
``:memory:`` database per connection is not, and a shared-cache memory database would answer
SQLITE_LOCKED at once under concurrent use (its table locks ignore the busy timeout). Nothing can
read that file after the process, so it is not synced (``synchronous=OFF``).

Timestamps are stored the way SQLAlchemy's ``DateTime`` stores them on SQLite (naive UTC text,
microseconds always present), so that both paths compare and sort alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection

from ...core.crashpoints import crash_point
from ...core.ports import Served
from ...errors import (
    ConcurrentUpdateError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
)
from . import statements
from .backend import create_engine
from .schema import UTCDateTime, ledger, runs
from .statements import HandleRow, Sqlite
from .urls import PoolOptions

logger = logging.getLogger("abstractruntime.storage")

T = TypeVar("T")

#: Writes committed in one transaction at most (a bound on the latency a batch adds).
MAX_GROUP = 256
BUSY_TIMEOUT_MS = 30_000
_WAL_SWITCH_TRIES = 1000


def ts(value: datetime | None) -> str | None:
    """A timestamp as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC, microseconds)."""
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _bind(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Arguments as sqlite3 takes them: timestamps as SQLAlchemy stores them."""
    return tuple(ts(value) if isinstance(value, datetime) else value for value in args)


def _binder(columns: Sequence[str], table: sa.Table) -> Callable[[tuple[Any, ...]], list[Any]]:
    """``_bind`` for arguments that start with ``columns``: only the positions of timestamp
    columns are converted, found once (a step's commit binds some 30 values)."""
    at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, UTCDateTime)]

    def bind(args: tuple[Any, ...]) -> list[Any]:
        bound = list(args)
        for i in at:
            bound[i] = ts(bound[i])
        return bound

    return bind


#: The two binds of a step's commit: the run's update (then its id and version), its records.
_bind_update = _binder(statements.STEP_COLUMNS, runs)
_bind_record = _binder(statements.LEDGER_COLUMNS, ledger)


# -- the writer thread -------------------------------------------------------------------------


@dataclass
class _Job(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile; the write stands or not, as decided
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteWriter:
    """Runs write functions on one thread and commits the queued ones together."""

    def __init__(self, path: str, *, busy_timeout_ms: int, durable: bool, uri: bool) -> None:
        self.path = path
        self.uri = uri
        self.busy_timeout_ms = busy_timeout_ms
        self.durable = durable
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: Transactions committed, and writes they held (for the benchmarks' figures).
        self.commits = 0
        self.writes = 0

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a write transaction; returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_thread()
        self._jobs.put(_Job(fn, future, loop))
        return await future

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._serve, name="abstractruntime-sqlite-writer", daemon=True
                )
                thread.start()
                self._thread = thread

    async def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(  # blocking-ok: runs on the writer thread, never the loop
            self.path, isolation_level=None, check_same_thread=False, uri=self.uri
        )
        for setting in statements.sqlite_settings(self.busy_timeout_ms, durable=self.durable):
            conn.execute(setting)
        return conn

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                batch = [job]
                while len(batch) < MAX_GROUP:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._jobs.put(None)  # stop after this batch
                        break
                    batch.append(more)
                if conn is None:
                    try:
                        conn = self._connect()
                    except Exception as exc:
                        for item in batch:
                            item.loop.call_soon_threadsafe(_settle, item.future, None, exc)
                        continue
                self._commit_batch(conn, batch)
        finally:
            if conn is not None:
                conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job[Any]]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                outcomes.append(_attempt(conn, batch[0].fn, savepoint=False))
                if outcomes[0][1] is not None:
                    conn.execute("ROLLBACK")
                    _deliver(batch, outcomes)
                    return
            else:
                outcomes.extend(_attempt(conn, job.fn, savepoint=True) for job in batch)
            crash_point("in_group_commit")
            conn.execute("COMMIT")
            self.commits += 1
            self.writes += len(batch)
        except Exception as exc:  # BEGIN or COMMIT failed (locked too long, disk full...)
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            outcomes = [(None, exc)] * len(batch)
        _deliver(batch, outcomes)


def _attempt(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any], *, savepoint: bool
) -> tuple[Any, BaseException | None]:
    if savepoint:
        conn.execute("SAVEPOINT write")
    try:
        result = fn(conn)
    except Exception as exc:
        if savepoint:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
        return None, exc
    if savepoint:
        conn.execute("RELEASE write")
    return result, None


def _deliver(
    batch: Sequence[_Job[Any]], outcomes: Sequence[tuple[Any, BaseException | None]]
) -> None:
    for job, (result, error) in zip(batch, outcomes, strict=True):
        try:
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)
        except RuntimeError:  # that loop is closed: nobody waits for the answer any more
            logger.debug("a write finished after its event loop closed")


# -- the engine's connections ------------------------------------------------------------------


def _on_read_only_media(path: Path) -> bool:
    """Whether ``path`` is an existing file on a read-only filesystem."""
    try:
        return path.is_file() and bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _switch_to_wal(cursor: Any) -> None:
    """Put a SQLite file in WAL mode, even when several connections open a new file at once.

    Switching needs an exclusive lock; two connections that both hold a shared lock and wait for
    it would wait out any busy timeout. So each try waits a short, random while, then lets go.
    """
    for _ in range(_WAL_SWITCH_TRIES):
        cursor.execute(statements.sqlite_busy_timeout(random.randint(5, 60)))
        try:
            for statement in (statements.SQLITE_JOURNAL_MODE, statements.SQLITE_WAL):
                cursor.execute(statement)
                if str(cursor.fetchone()[0]).lower() == "wal":
                    return
        except Exception as exc:  # the adapted driver's OperationalError: locked / busy
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
    raise StoreError("could not switch the SQLite file to WAL mode: it stays locked")


def _set_up_connections(engine: Any, *, wal: bool, durable: bool) -> None:
    """Settings of every connection of the engine, and ``BEGIN IMMEDIATE`` for a transaction
    that will write (``execution_options(abstractruntime_write=True)``)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the driver's implicit BEGIN is deferred and late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if wal:
            _switch_to_wal(cursor)
        for setting in statements.sqlite_settings(BUSY_TIMEOUT_MS, durable=durable):
            cursor.execute(setting)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front, so it waits for the busy timeout
        # instead of failing when it upgrades from a read lock.
        immediate = conn.get_execution_options().get("abstractruntime_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# -- the backend -------------------------------------------------------------------------------


class SqliteBackend:
    """The hot path on the writer thread (see the module docstring and ``backend.SqlBackend``)."""

    def __init__(self, url: URL, pool: PoolOptions, engine_kwargs: Mapping[str, Any]) -> None:
        #: A file on read-only media: opened read-only, so that what it holds stays readable
        #: (writes fail with a StoreError saying so).
        self.read_only = False
        #: The private directory of an in-memory URL's file, removed on close.
        self._private: str | None = None
        durable = True
        if url.database in (None, "", ":memory:"):
            self._private = tempfile.mkdtemp(prefix="abstractruntime-")
            # Removed even if the store is never closed (at garbage collection, or exit).
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._private, True)
            url = url.set(database=str(Path(self._private) / "memory.db"))
            durable = False
        path = Path(str(url.database)).expanduser()
        #: The database file (``SqlStore.backup`` copies it); None for an in-memory URL.
        self.path: Path | None = None if self._private else path
        writer_path = str(path)
        if _on_read_only_media(path):
            # WAL needs its -shm file beside the database, which cannot be made there; SQLite
            # reads the file anyway when told that nothing can change it.
            self.read_only = True
            writer_path = f"file:{path}?mode=ro&immutable=1"
            url = url.set(
                database=f"file:{path}", query={"mode": "ro", "immutable": "1", "uri": "true"}
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = create_engine(url, pool, engine_kwargs)
        _set_up_connections(self.engine.sync_engine, wal=not self.read_only, durable=durable)
        self._writer = SqliteWriter(
            writer_path, busy_timeout_ms=BUSY_TIMEOUT_MS, durable=durable, uri=self.read_only
        )

    async def create_run(self, values: Mapping[str, Any], *, notify: bool) -> None:
        run_id = values["run_id"]
        args = _bind(statements.insert_run_args(values))

        def write(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(Sqlite.INSERT_RUN, args)
            except sqlite3.IntegrityError as exc:  # the run id is taken
                raise RunExistsError(run_id) from exc

        await self._writer.run(write)

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> HandleRow:
        args = _bind(statements.claim_run_args(run_id, owner, now, lease_until))

        def write(conn: sqlite3.Connection) -> HandleRow:
            row = conn.execute(Sqlite.CLAIM_RUN, args).fetchone()
            if row is not None:
                return tuple(row)
            lease = conn.execute(Sqlite.LEASE_OF, (run_id,)).fetchone()
            if lease is None:
                raise RunNotFoundError(run_id)
            raise RunLeasedError(run_id, lease[0], parse_ts(lease[1]))

        return await self._writer.run(write)

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None,
    ) -> list[HandleRow]:
        if workflows is not None and not workflows:
            return []  # a worker that serves nothing claims nothing
        sql = Sqlite.claim_due(None if workflows is None else len(workflows))
        served = statements.served_args(workflows, False)
        args = _bind(statements.claim_due_args(owner, now, lease_until, limit, served))

        def write(conn: sqlite3.Connection) -> list[HandleRow]:
            return [tuple(row) for row in conn.execute(sql, args).fetchall()]

        return await self._writer.run(write)

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
        update = _bind_update(statements.update_run_args(run_id, version, values))
        records = [_bind_record(statements.record_args(row)) for row in rows]
        parent = None if parent_due is None else (ts(parent_due[1]), parent_due[0])

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute(Sqlite.UPDATE_RUN, update).rowcount != 1:
                if conn.execute(Sqlite.RUN_EXISTS, (run_id,)).fetchone() is None:
                    raise RunNotFoundError(run_id)
                raise ConcurrentUpdateError(run_id, version)
            try:
                conn.executemany(Sqlite.INSERT_RECORD, records)
            except sqlite3.IntegrityError as exc:  # someone appended at our seq
                raise ConcurrentUpdateError(run_id, version) from exc
            if parent is not None:
                conn.execute(Sqlite.MARK_PARENT_DUE, parent)

        await self._writer.run(write)

    async def release(
        self, run_id: str, owner: str | None, version: int, due: datetime | None
    ) -> None:
        args = _bind(statements.release_args(run_id, owner, version, due))

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(Sqlite.RELEASE, args)

        await self._writer.run(write)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        args = [_bind(statements.renew_args(owner, lease_until, run_id)) for run_id in run_ids]

        def write(conn: sqlite3.Connection) -> list[str]:
            # One writer: no row is ever locked against us, so nothing is skipped.
            return [
                run_id
                for run_id, a in zip(run_ids, args, strict=True)
                if conn.execute(Sqlite.RENEW, a).rowcount
            ]

        return await self._writer.run(write)

    async def run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer thread, in its next transaction: a cold write
        that must not contend with the hot path for the lock (``store.purge``); keep it short,
        the steps committed with it wait for it."""
        return await self._writer.run(fn)

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Nothing to listen to: the scheduler polls, and hears its own process' runs."""

        async def nothing() -> None:
            return None

        return nothing

    async def close(self) -> None:
        await self._writer.close()
        await self.engine.dispose()
        if self._private is not None:
            self._cleanup()
