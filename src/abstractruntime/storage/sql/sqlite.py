"""The SQLite hot path: one writer thread, one connection, and group commit.

SQLAlchemy's async engine over aiosqlite makes about three thread hops per statement, so a naive
step costs several times what SQLite itself does. Every write of the hot path (create, claim,
commit a step, release, renew) is instead a small function run on ONE dedicated thread that owns
one stdlib ``sqlite3`` connection: one thread hop per write, statements prepared once (sqlite3's
statement cache). Writes that queue up while a transaction is open are committed together in the
next one (group commit), each inside its own SAVEPOINT so that one write's failure - a version
conflict, say - undoes only that write; every caller still waits for the COMMIT that holds its
write before it goes on. SQLite allows one writer at a time anyway, so nothing is lost by
serialising writes on one thread, while readers (on SQLAlchemy's pool, WAL mode) never wait.

The column lists here must match ``schema.runs`` / ``schema.ledger``; every SQLite integration
test runs through this path. Timestamps are stored the way SQLAlchemy's ``DateTime`` stores them
on SQLite (naive UTC text, microseconds always present), so both paths compare and sort alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from ...core.crashpoints import crash_point

logger = logging.getLogger("abstractruntime.storage")

T = TypeVar("T")

#: Writes committed in one transaction at most (a bound on the latency a batch adds).
MAX_GROUP = 256


def ts(value: datetime | None) -> str | None:
    """A timestamp as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC, microseconds)."""
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


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

    def __init__(self, path: str, *, busy_timeout_ms: int, uri: bool = False) -> None:
        self.path = path
        self.uri = uri
        self.busy_timeout_ms = busy_timeout_ms
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

    # -- the writer thread --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(  # blocking-ok: runs on the writer thread, never the loop
            self.path, isolation_level=None, check_same_thread=False, uri=self.uri
        )
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
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


# -- the statements of the hot path ------------------------------------------------------------

_HANDLE = "CAST(state AS TEXT), version, ledger_seq, ledger_head"
_UNLEASED = "(lease_expires_at IS NULL OR lease_expires_at <= ?)"

INSERT_RUN = (
    "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node, wait_reason, "
    "wait_key, wait_until, parent_run_id, actor_id, session_id, created_at, updated_at, version, "
    "ledger_seq, ledger_head, lease_owner, lease_expires_at, state, due_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, ?, ?, ?, ?)"
)
UPDATE_RUN = (
    "UPDATE abstractruntime_runs SET workflow_id = ?, status = ?, current_node = ?, "
    "wait_reason = ?, wait_key = ?, wait_until = ?, parent_run_id = ?, actor_id = ?, "
    "session_id = ?, updated_at = ?, state = ?, version = version + 1, ledger_seq = ?, "
    "ledger_head = ?, lease_owner = ?, lease_expires_at = ?, due_at = ? "
    "WHERE run_id = ? AND version = ?"
)
INSERT_RECORD = (
    "INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, status, attempt, "
    "idempotency_key, prev_hash, record_hash, created_at, record) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
MARK_PARENT_DUE = (
    "UPDATE abstractruntime_runs SET due_at = ?, version = version + 1 "
    "WHERE run_id = ? AND status = 'waiting' AND wait_reason = 'subworkflow'"
)
_CLAIM = (
    "UPDATE abstractruntime_runs SET lease_owner = ?, lease_expires_at = ?, due_at = ?, "
    "version = version + 1 WHERE "
)
CLAIM_RUN = f"{_CLAIM}run_id = ? AND {_UNLEASED} RETURNING {_HANDLE}"
RELEASE = (
    "UPDATE abstractruntime_runs SET lease_owner = NULL, lease_expires_at = NULL, "
    "due_at = CASE WHEN version = ? THEN ? ELSE due_at END WHERE run_id = ? AND lease_owner = ?"
)


def claim_due_sql(workflows: int | None) -> str:
    """Claim up to ``?`` due, unclaimed runs (oldest due first) by the ``due_at`` index."""
    only = "" if workflows is None else f" AND workflow_id IN ({', '.join('?' * workflows)})"
    return (
        f"{_CLAIM}run_id IN (SELECT run_id FROM abstractruntime_runs WHERE due_at <= ? AND "
        f"{_UNLEASED}{only} ORDER BY due_at LIMIT ?) RETURNING {_HANDLE}"
    )


HandleRow = tuple[str, int, int, "str | None"]


def _projected(run: dict[str, Any]) -> tuple[Any, ...]:
    """The run's columns that project its state, in the order the statements take them."""
    return (
        run["workflow_id"],
        run["status"],
        run["current_node"],
        run["wait_reason"],
        run["wait_key"],
        ts(run["wait_until"]),
        run["parent_run_id"],
        run["actor_id"],
        run["session_id"],
    )


def create_run(
    run: dict[str, Any], run_id: str, created_at: datetime
) -> Callable[[sqlite3.Connection], None]:
    params = (
        run_id,
        *_projected(run),
        ts(created_at),
        ts(run["updated_at"]),
        run["lease_owner"],
        ts(run["lease_expires_at"]),
        str(run["state"]),
        ts(run["due_at"]),
    )

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(INSERT_RUN, params)

    return write


def commit_step(
    run_id: str,
    version: int,
    run: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    parent_due: tuple[str, datetime] | None,
    conflict: Callable[[bool], Exception],
) -> Callable[[sqlite3.Connection], None]:
    """The step's write; ``conflict(exists)`` makes the error of a failed version check."""
    params = (
        *_projected(run),
        ts(run["updated_at"]),
        str(run["state"]),
        run["ledger_seq"],
        run["ledger_head"],
        run["lease_owner"],
        ts(run["lease_expires_at"]),
        ts(run["due_at"]),
        run_id,
        version,
    )
    records = [
        (
            run_id,
            row["seq"],
            row["step_id"],
            row["node_id"],
            row["status"],
            row["attempt"],
            row["idempotency_key"],
            row["prev_hash"],
            row["record_hash"],
            ts(row["created_at"]),
            str(row["record"]),
        )
        for row in rows
    ]

    def write(conn: sqlite3.Connection) -> None:
        if conn.execute(UPDATE_RUN, params).rowcount != 1:
            found = conn.execute(
                "SELECT 1 FROM abstractruntime_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            raise conflict(found is not None)
        try:
            conn.executemany(INSERT_RECORD, records)
        except sqlite3.IntegrityError as exc:  # someone appended at our seq
            raise conflict(True) from exc
        if parent_due is not None:
            conn.execute(MARK_PARENT_DUE, (ts(parent_due[1]), parent_due[0]))

    return write


def claim_run(
    run_id: str, owner: str, now: datetime, lease_until: datetime
) -> Callable[[sqlite3.Connection], HandleRow | tuple[None, str | None, datetime | None] | None]:
    """The claimed run's handle row; else the live lease ``(None, owner, until)``; else None."""
    until = ts(lease_until)
    params = (owner, until, until, run_id, ts(now))

    def write(
        conn: sqlite3.Connection,
    ) -> HandleRow | tuple[None, str | None, datetime | None] | None:
        row = conn.execute(CLAIM_RUN, params).fetchone()
        if row is not None:
            return tuple(row)
        lease = conn.execute(
            "SELECT lease_owner, lease_expires_at FROM abstractruntime_runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        return None if lease is None else (None, lease[0], parse_ts(lease[1]))

    return write


def claim_due(
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    workflow_ids: Sequence[str] | None,
) -> Callable[[sqlite3.Connection], list[HandleRow]]:
    sql = claim_due_sql(None if workflow_ids is None else len(workflow_ids))
    until, at = ts(lease_until), ts(now)
    params = (owner, until, until, at, at, *(workflow_ids or ()), limit)
    return lambda conn: [tuple(row) for row in conn.execute(sql, params).fetchall()]


def release(
    run_id: str, owner: str | None, version: int, due: datetime | None
) -> Callable[[sqlite3.Connection], bool]:
    params = (version, ts(due), run_id, owner)
    return lambda conn: conn.execute(RELEASE, params).rowcount > 0


def renew(
    owner: str, run_ids: Sequence[str], lease_until: datetime
) -> Callable[[sqlite3.Connection], None]:
    until = ts(lease_until)
    sql = (
        "UPDATE abstractruntime_runs SET lease_expires_at = ?, due_at = ? "
        f"WHERE lease_owner = ? AND run_id IN ({', '.join('?' * len(run_ids))})"
    )
    params = (until, until, owner, *run_ids)

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return write
