"""``SqlStore``: runs and ledgers in SQLite (aiosqlite) or Postgres (asyncpg).

Every statement of the store lives here, next to the tables of ``schema``. A step is one
transaction: a version-checked ``UPDATE`` of the run (the optimistic lock) followed by the
``INSERT`` of its ledger rows, chained onto the head the runtime holds. If the ``UPDATE`` matches
no row, somebody else committed first and nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio.to_thread
import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ...core.kernel import due_at, unstorable
from ...core.ledger import chain_records
from ...core.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from ...core.ports import LedgerHead, RunHandle
from ...core.serde import canonical_json, decode
from ...errors import (
    ConcurrentUpdateError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    SchemaOutOfDateError,
    StoreError,
)
from . import migrate, sqlite
from .artifacts import SqlArtifactStore
from .postgres import NOTIFY_CHANNEL, PostgresHotPath
from .schema import RawJSON, UTCDateTime, ledger, runs
from .snapshots import SqlSnapshotStore
from .sqlite import SqliteWriter
from .urls import mask_url, parse_url

logger = logging.getLogger("abstractruntime.storage")

#: What the drivers raise for a constraint violation (a duplicate run id, a ledger position
#: taken): callers turn them into their own errors.
_CONSTRAINT_ERRORS = (
    IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
    sqlite3.IntegrityError,
)
#: What the drivers (and the network under them) raise when the database fails.
_DRIVER_ERRORS = (OSError, DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error)

T = TypeVar("T")

#: ``PRAGMA application_id`` of SQLite files this store created (ASCII "ARt1"): such a file is
#: the embedded default and is upgraded automatically when a newer version needs it.
_SQLITE_APP_ID = 0x41527431
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_WAL_SWITCH_TRIES = 1000


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
        cursor.execute(f"PRAGMA busy_timeout={random.randint(5, 60)}")
        try:
            for statement in ("PRAGMA journal_mode", "PRAGMA journal_mode=WAL"):
                cursor.execute(statement)
                if str(cursor.fetchone()[0]).lower() == "wal":
                    return
        except Exception as exc:  # the adapted driver's OperationalError: locked / busy
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
    raise StoreError("could not switch the SQLite file to WAL mode: it stays locked")


def _json_serializer(value: Any) -> str:
    return value if isinstance(value, RawJSON) else canonical_json(value)


_HANDLE_COLUMNS = (
    sa.cast(runs.c.state, sa.Text).label("state_json"),
    runs.c.version,
    runs.c.ledger_seq,
    runs.c.ledger_head,
)


def _handle_of(row: sqlite.HandleRow, owner: str | None) -> RunHandle:
    state_json, version, seq, head = row
    return RunHandle(RunState.from_dict(decode(state_json)), version, seq, head, state_json, owner)


def _handle(row: Any, owner: str | None = None) -> RunHandle:
    return RunHandle(
        state=RunState.from_dict(decode(row.state_json)),
        version=row.version,
        seq=row.ledger_seq,
        head=row.ledger_head,
        state_json=row.state_json,
        owner=owner,
    )


def _unleased(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at <= now)


def due_runs_query(
    now: datetime, limit: int, workflow_ids: Sequence[str] | None = None
) -> sa.Select[Any]:
    """The ids of up to ``limit`` due, unclaimed runs: a range scan of the ``due_at`` index that
    reads the due rows only, however many runs wait for later."""
    due = sa.select(runs.c.run_id).where(runs.c.due_at <= now, _unleased(now))
    if workflow_ids is not None:
        due = due.where(runs.c.workflow_id.in_(list(workflow_ids)))
    # SKIP LOCKED: concurrent workers take disjoint batches instead of queueing on row locks.
    return due.order_by(runs.c.due_at).limit(limit).with_for_update(skip_locked=True)


def find_effect_query(run_id: str, idempotency_key: str) -> sa.Select[Any]:
    """The newest completed record of ``run_id`` with ``idempotency_key``, by the ledger's
    (run_id, idempotency_key) index."""
    return (
        sa.select(sa.cast(ledger.c.record, sa.Text))
        .where(
            ledger.c.run_id == run_id,
            ledger.c.idempotency_key == idempotency_key,
            ledger.c.status == StepStatus.COMPLETED.value,
        )
        .order_by(ledger.c.seq.desc())
        .limit(1)
    )


#: Rows a ledger scan fetches at a time: its memory does not grow with the ledger.
_SCAN_BATCH = 1000


def ledger_scan_query(run_id: str | None = None) -> sa.Select[Any]:
    """Every run (or one) with its ledger head and its records in order, runs without records
    included (a LEFT JOIN row with no record); both primary keys give the order."""
    query = (
        sa.select(
            runs.c.run_id,
            runs.c.ledger_seq,
            runs.c.ledger_head,
            sa.cast(ledger.c.record, sa.Text).label("record"),
        )
        .select_from(runs.outerjoin(ledger, ledger.c.run_id == runs.c.run_id))
        .order_by(runs.c.run_id, ledger.c.seq)
    )
    return query if run_id is None else query.where(runs.c.run_id == run_id)


def next_due_query(workflow_ids: Sequence[str] | None = None) -> sa.Select[Any]:
    """The earliest ``due_at`` (the first entry of the index)."""
    query = sa.select(sa.func.min(runs.c.due_at))
    if workflow_ids is not None:
        query = query.where(runs.c.workflow_id.in_(list(workflow_ids)))
    return query


def _run_columns(state: RunState, state_json: str) -> dict[str, Any]:
    waiting = state.waiting
    return {
        "workflow_id": state.workflow_id,
        "status": state.status.value,
        "current_node": state.current_node,
        "wait_reason": waiting.reason.value if waiting else None,
        "wait_key": waiting.wait_key if waiting else None,
        "wait_until": waiting.until if waiting else None,
        "parent_run_id": state.parent_run_id,
        "actor_id": state.actor_id,
        "session_id": state.session_id,
        "updated_at": state.updated_at,
        "state": RawJSON(state_json),
    }


class SqlStore:
    """Runs and ledgers in a SQL database, each step committed in one transaction.

    Args:
        url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://user:pw@host/db``
            (``sqlite:///`` and ``postgresql://`` are accepted and switched to those drivers).
        **engine_kwargs: passed to SQLAlchemy's ``create_async_engine``.

    The schema must be at the newest migration (``await store.upgrade()`` or
    ``abstractruntime db upgrade``); a SQLite file this store creates is migrated by itself.
    """

    def __init__(self, url: str | URL, **engine_kwargs: Any) -> None:
        self.url = parse_url(url)
        self.dialect = self.url.get_backend_name()
        # Masked from the text as given (a parsed URL may hide a bad spelling of the password),
        # shown with the driver actually used.
        self._masked = mask_url(make_url(mask_url(url)).set(drivername=self.url.drivername))
        self._memory = self.dialect == "sqlite" and self.url.database in (None, "", ":memory:")
        #: A SQLite file on read-only media: opened read-only, so that what it holds stays
        #: readable (writes fail with a StoreError saying so).
        self.read_only = False
        writer_path = str(self.url.database)
        if self.dialect == "sqlite" and not self._memory:
            path = Path(str(self.url.database)).expanduser()
            if _on_read_only_media(path):
                # WAL needs its -shm file beside the database, which cannot be made here; SQLite
                # reads the file anyway when told nothing can change it.
                self.read_only = True
                writer_path = f"file:{path}?mode=ro&immutable=1"
                self.url = self.url.set(
                    database=f"file:{path}",
                    query={"mode": "ro", "immutable": "1", "uri": "true"},
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"json_serializer": _json_serializer}
        if self._memory:
            kwargs["poolclass"] = StaticPool
        kwargs.update(engine_kwargs)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            self._install_sqlite_hooks()
        self._ready = False
        self._ready_lock = asyncio.Lock()
        #: Snapshots of the runs (``Runtime.restore_snapshot`` / ``fork_snapshot`` use them).
        self.snapshots = SqlSnapshotStore(self)
        #: Content-addressed artifacts.
        self.artifacts = SqlArtifactStore(self)
        #: Postgres: the per-step statements on raw asyncpg (see ``postgres.py``).
        self._pg = PostgresHotPath(self.url) if self.dialect == "postgresql" else None
        #: SQLite files: every hot-path write on one writer thread, group-committed.
        self._sqlite = (
            SqliteWriter(writer_path, busy_timeout_ms=_SQLITE_BUSY_TIMEOUT_MS, uri=self.read_only)
            if self.dialect == "sqlite" and not self._memory
            else None
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SqlStore({self._masked!r})"

    async def __aenter__(self) -> SqlStore:
        # No schema check here, so that ``async with SqlStore(url) as s: await s.upgrade()``
        # works; the first operation (or ``check()``) checks it.
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._pg is not None:
            await self._pg.close()
        await self.engine.dispose()

    def _install_sqlite_hooks(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (the driver's implicit BEGIN is deferred and late).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not self._memory and not self.read_only:
                _switch_to_wal(cursor)
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A write transaction takes the write lock up front (BEGIN IMMEDIATE), so it waits
            # for the busy timeout instead of failing when it upgrades from a read lock.
            immediate = conn.get_execution_options().get("abstractruntime_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def _write(self) -> Any:
        """A transaction that will write (``BEGIN IMMEDIATE`` on SQLite)."""
        return self.engine.execution_options(abstractruntime_write=True).begin()

    # -- schema -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reaching(self, what: str) -> AsyncIterator[None]:
        """The one boundary where failures of any driver (SQLAlchemy's, raw asyncpg, sqlite3)
        and of the network become a ``StoreError`` naming the (masked) database. Constraint
        violations pass through: the caller knows what they mean."""
        try:
            yield
        except _CONSTRAINT_ERRORS:
            raise
        except _DRIVER_ERRORS as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"{what} {self._masked}: {reason}") from exc

    async def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations up to ``revision`` (alembic ``upgrade``), programmatically."""
        async with self._reaching("cannot upgrade"), self._write() as conn:
            await self._lock_migrations(conn)
            await conn.run_sync(migrate.upgrade, revision)
            if self.dialect == "sqlite":
                await conn.exec_driver_sql(f"PRAGMA application_id={_SQLITE_APP_ID}")
        self._ready = False

    async def downgrade(self, revision: str) -> None:
        """Revert the migrations down to ``revision`` (``"base"`` drops every table)."""
        async with self._reaching("cannot downgrade"), self._write() as conn:
            await self._lock_migrations(conn)
            await conn.run_sync(migrate.downgrade, revision)
        self._ready = False

    async def current_revision(self) -> str | None:
        """The alembic revision the database is at (None: no abstractruntime tables)."""
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            return await conn.run_sync(migrate.current_revision)

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":  # two processes upgrading at once take turns
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(4152317201)"))

    async def check(self) -> None:
        """Connect and check the schema now, instead of at the first operation.

        Raises ``StoreError`` (unreachable) or ``SchemaOutOfDateError`` (needs an upgrade).
        """
        await self._ensure_ready()

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            async with self._reaching("cannot open database"):
                await self._check_schema()
            self._ready = True

    async def _check_schema(self) -> None:
        head = await anyio.to_thread.run_sync(migrate.head_revision)
        async with self.engine.connect() as conn:
            current = await conn.run_sync(migrate.current_revision)
            auto = False
            if self.dialect == "sqlite" and current != head:
                app_id = (await conn.exec_driver_sql("PRAGMA application_id")).scalar()
                tables = (
                    await conn.exec_driver_sql(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                    )
                ).scalar()
                auto = app_id == _SQLITE_APP_ID or not tables
        if current == head:
            return
        known = await anyio.to_thread.run_sync(migrate.known_revisions)
        if current is not None and current not in known:
            raise SchemaOutOfDateError(
                f"database {self._masked} is at revision {current!r}, which this version of "
                "abstractruntime does not know: it was migrated by a newer version; upgrade the "
                "abstractruntime package"
            )
        if auto:
            await self.upgrade()
            return
        where = "has no abstractruntime tables" if current is None else f"is at {current!r}"
        raise SchemaOutOfDateError(
            f"database {self._masked} {where} but this version of abstractruntime needs "
            f"revision {head!r}: run `abstractruntime --database-url '{self._masked}' db upgrade` "
            "(or `await SqlStore(url).upgrade()`)"
        )

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` whenever a run becomes due (Postgres ``LISTEN``); returns a stopper.

        A dedicated asyncpg connection listens; when it drops it is reopened with backoff (the
        scheduler keeps polling meanwhile). On SQLite there is nothing to listen to: a no-op.
        """
        if self.dialect != "postgresql":

            async def nothing() -> None:
                return None

            return nothing
        task = asyncio.create_task(self._listen_forever(callback), name="abstractruntime-listen")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return stop

    async def _listen_forever(self, callback: Callable[[], None]) -> None:
        import asyncpg

        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        backoff = 0.1
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(dsn)
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

    # -- the Store interface ------------------------------------------------------------------

    # The SQLAlchemy statements after each hot path below serve the one case without one: an
    # in-memory SQLite database (a second connection would see another database). Postgres
    # always takes ``postgres.py``, which also NOTIFYs; SQLite files take ``sqlite.py``.

    async def create_run(
        self,
        state: RunState,
        state_json: str,
        *,
        lease: tuple[str, datetime] | None = None,
    ) -> RunHandle:
        await self._ensure_ready()
        values = _run_columns(state, state_json)
        owner, until = lease if lease is not None else (None, None)
        due = until if lease is not None else due_at(state, state.created_at)
        values.update(
            run_id=state.run_id,
            created_at=state.created_at,
            version=0,
            ledger_seq=0,
            ledger_head=None,
            lease_owner=owner,
            lease_expires_at=until,
            due_at=due,
        )
        if self._pg is not None:
            try:
                async with self._reaching("cannot create a run in"):
                    await self._pg.create_run(
                        state.run_id,
                        state.created_at,
                        values,
                        notify=lease is None and due is not None,
                    )
            except asyncpg.UniqueViolationError as exc:
                raise RunExistsError(state.run_id) from exc
            return RunHandle(
                state=state, version=0, seq=0, head=None, state_json=state_json, owner=owner
            )
        if self._sqlite is not None:
            try:
                await self._sqlite_write(
                    "cannot create a run in",
                    sqlite.create_run(values, state.run_id, state.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise RunExistsError(state.run_id) from exc
            return RunHandle(
                state=state, version=0, seq=0, head=None, state_json=state_json, owner=owner
            )
        try:
            async with self._reaching("cannot create a run in"), self._write() as conn:
                await conn.execute(runs.insert().values(values))
        except IntegrityError as exc:
            raise RunExistsError(state.run_id) from exc
        return RunHandle(
            state=state, version=0, seq=0, head=None, state_json=state_json, owner=owner
        )

    async def load_run(self, run_id: str) -> RunHandle:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        query = sa.select(*_HANDLE_COLUMNS).where(runs.c.run_id == run_id)
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise RunNotFoundError(run_id)
        return _handle(row)

    def _claim(self, owner: str, lease_until: datetime) -> sa.Update:
        return (
            runs.update()
            .values(
                lease_owner=owner,
                lease_expires_at=lease_until,
                due_at=lease_until,
                version=runs.c.version + 1,
            )
            .returning(*_HANDLE_COLUMNS)
        )

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> RunHandle:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        if self._pg is not None:
            async with self._reaching("cannot claim a run in"):
                claimed = await self._pg.claim_run(run_id, owner, now, lease_until)
            if claimed is None:
                raise RunNotFoundError(run_id)
            if isinstance(claimed, tuple):
                raise RunLeasedError(run_id, claimed[0], claimed[1])
            return _handle_of(tuple(claimed), owner)
        if self._sqlite is not None:
            got = await self._sqlite_write(
                "cannot claim a run in", sqlite.claim_run(run_id, owner, now, lease_until)
            )
            if got is None:
                raise RunNotFoundError(run_id)
            if got[0] is None:
                raise RunLeasedError(run_id, got[1], got[2])
            return _handle_of(got, owner)
        claim = self._claim(owner, lease_until).where(runs.c.run_id == run_id, _unleased(now))
        async with self._reaching("cannot claim a run in"), self._write() as conn:
            row = (await conn.execute(claim)).one_or_none()
            if row is None:
                lease = (
                    await conn.execute(
                        sa.select(runs.c.lease_owner, runs.c.lease_expires_at).where(
                            runs.c.run_id == run_id
                        )
                    )
                ).one_or_none()
        if row is None:
            if lease is None:
                raise RunNotFoundError(run_id)
            raise RunLeasedError(run_id, lease.lease_owner, lease.lease_expires_at)
        return _handle(row, owner)

    def _claim_due_statement(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflow_ids: Sequence[str] | None = None,
    ) -> sa.Update:
        due = due_runs_query(now, limit, workflow_ids).scalar_subquery()
        return self._claim(owner, lease_until).where(runs.c.run_id.in_(due))

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[RunHandle]:
        await self._ensure_ready()
        if self._pg is not None:
            async with self._reaching("cannot claim runs in"):
                rows = await self._pg.claim_due(owner, now, lease_until, limit, workflow_ids)
            return [_handle_of(tuple(row), owner) for row in rows]
        if self._sqlite is not None:
            got = await self._sqlite_write(
                "cannot claim runs in",
                sqlite.claim_due(owner, now, lease_until, limit, workflow_ids),
            )
            return [_handle_of(row, owner) for row in got]
        claim = self._claim_due_statement(owner, now, lease_until, limit, workflow_ids)
        async with self._reaching("cannot claim runs in"), self._write() as conn:
            rows = (await conn.execute(claim)).all()
        return [_handle(row, owner) for row in rows]

    async def next_due_at(self, workflow_ids: Sequence[str] | None = None) -> datetime | None:
        await self._ensure_ready()
        query = next_due_query(workflow_ids)
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            value = await conn.scalar(query)
        return UTCDateTime().process_result_value(value, self.engine.dialect) if value else None

    async def commit_step(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        await self._ensure_ready()
        run_id = state.run_id
        # Chain before writing: a record that cannot be encoded raises before the transaction.
        dicts, head = chain_records(records, handle.head, max_record_bytes)
        rows = [
            {
                "run_id": run_id,
                "seq": handle.seq + offset,
                "step_id": data["step_id"],
                "node_id": data["node_id"],
                "status": data["status"],
                "attempt": data["attempt"],
                "idempotency_key": data["idempotency_key"],
                "prev_hash": data["prev_hash"],
                "record_hash": data["record_hash"],
                "created_at": record.ended_at or record.started_at,
                "record": RawJSON(canonical_json(data)),
            }
            for offset, (data, record) in enumerate(zip(dicts, records, strict=True))
        ]
        keep = lease_until is not None and state.status is RunStatus.RUNNING
        due = lease_until if keep else due_at(state, now, committing=True)
        values = _run_columns(state, state_json)
        values.update(
            ledger_seq=handle.seq + len(rows),
            ledger_head=head,
            lease_owner=handle.owner if keep else None,
            lease_expires_at=lease_until if keep else None,
            due_at=due,
        )
        notify = not keep and due is not None  # runnable now, or a timer to plan for
        parent = state.parent_run_id if state.status.is_terminal else None
        committed = RunHandle(
            state,
            handle.version + 1,
            handle.seq + len(rows),
            head,
            state_json,
            handle.owner if keep else None,
        )
        parent_due = (parent, now) if parent else None
        if self._pg is not None:
            await self._pg_commit_step(handle, values, rows, notify, parent_due)
            return committed
        if self._sqlite is not None:

            def conflict(exists: bool) -> Exception:
                if exists:
                    return ConcurrentUpdateError(run_id, handle.version)
                return RunNotFoundError(run_id)

            await self._sqlite_write(
                f"could not commit a step of run {run_id!r} to",
                sqlite.commit_step(run_id, handle.version, values, rows, parent_due, conflict),
            )
            return committed
        update = (
            runs.update()
            .where(runs.c.run_id == run_id, runs.c.version == handle.version)
            .values({**values, "version": runs.c.version + 1})
        )
        try:
            async with (
                self._reaching(f"could not commit a step of run {run_id!r} to"),
                self._write() as conn,
            ):
                result = await conn.execute(update)
                if result.rowcount != 1:
                    exists = await conn.scalar(
                        sa.select(sa.literal(1)).where(runs.c.run_id == run_id)
                    )
                    if exists is None:
                        raise RunNotFoundError(run_id)
                    raise ConcurrentUpdateError(run_id, handle.version)
                if rows:
                    await conn.execute(ledger.insert(), rows)
                if parent:
                    await self._mark_parent_due(conn, parent, now)
        except IntegrityError as exc:  # a (run_id, seq) clash: someone else appended first
            raise ConcurrentUpdateError(run_id, handle.version) from exc
        return committed

    async def _sqlite_write(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread (failures mapped by ``_reaching``)."""
        assert self._sqlite is not None
        async with self._reaching(what):
            return await self._sqlite.run(fn)

    async def _pg_commit_step(
        self,
        handle: RunHandle,
        values: dict[str, Any],
        rows: list[dict[str, Any]],
        notify: bool,
        parent_due: tuple[str, datetime] | None,
    ) -> None:
        """The Postgres hot path: the whole step is one statement (see ``postgres.py``)."""
        assert self._pg is not None
        run_id = handle.state.run_id
        try:
            async with self._reaching(f"could not commit a step of run {run_id!r} to"):
                if await self._pg.commit_step(
                    run_id, handle.version, values, rows, notify=notify, parent_due=parent_due
                ):
                    return
                exists = await self._pg.run_exists(run_id)
        except asyncpg.UniqueViolationError as exc:  # someone else appended at our seq
            raise ConcurrentUpdateError(run_id, handle.version) from exc
        if not exists:
            raise RunNotFoundError(run_id)
        raise ConcurrentUpdateError(run_id, handle.version)

    async def _mark_parent_due(
        self, conn: AsyncConnection, parent_run_id: str, now: datetime
    ) -> None:
        """A child ended: make its waiting parent due (bumping its version, so a worker that
        holds the parent and is about to release it keeps it due)."""
        await conn.execute(
            runs.update()
            .where(
                runs.c.run_id == parent_run_id,
                runs.c.status == RunStatus.WAITING.value,
                runs.c.wait_reason == WaitReason.SUBWORKFLOW.value,
            )
            .values(due_at=now, version=runs.c.version + 1)
        )

    async def release(self, handle: RunHandle, *, now: datetime) -> None:
        await self._ensure_ready()
        due = due_at(handle.state, now)
        if self._pg is not None:
            async with self._reaching("cannot release a run in"):
                await self._pg.release(handle.state.run_id, handle.owner, handle.version, due)
            return
        if self._sqlite is not None:
            await self._sqlite_write(
                "cannot release a run in",
                sqlite.release(handle.state.run_id, handle.owner, handle.version, due),
            )
            return
        # If the run changed since we claimed it (a child marked it due), keep its due_at.
        new_due = sa.case((runs.c.version == handle.version, due), else_=runs.c.due_at)
        stmt = (
            runs.update()
            .where(runs.c.run_id == handle.state.run_id, runs.c.lease_owner == handle.owner)
            .values(lease_owner=None, lease_expires_at=None, due_at=new_due)
        )
        async with self._reaching("cannot release a run in"), self._write() as conn:
            await conn.execute(stmt)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> None:
        if not run_ids:
            return
        await self._ensure_ready()
        if self._pg is not None:
            async with self._reaching("cannot renew leases in"):
                await self._pg.renew(owner, run_ids, lease_until)
            return
        if self._sqlite is not None:
            await self._sqlite_write(
                "cannot renew leases in", sqlite.renew(owner, run_ids, lease_until)
            )
            return
        stmt = (
            runs.update()
            .where(runs.c.run_id.in_(list(run_ids)), runs.c.lease_owner == owner)
            .values(lease_expires_at=lease_until, due_at=lease_until)
        )
        async with self._reaching("cannot renew leases in"), self._write() as conn:
            await conn.execute(stmt)

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        query = (
            sa.select(sa.cast(ledger.c.record, sa.Text))
            .where(ledger.c.run_id == run_id)
            .order_by(ledger.c.seq)
        )
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            texts = (await conn.execute(query)).scalars().all()
            if not texts:
                exists = await conn.scalar(sa.select(sa.literal(1)).where(runs.c.run_id == run_id))
                if exists is None:
                    raise RunNotFoundError(run_id)
        return [decode(text) for text in texts]

    async def iter_ledger(self, run_id: str) -> AsyncGenerator[dict[str, Any], None]:
        async with contextlib.aclosing(self.scan_ledgers(run_id)) as items:
            async for item in items:
                if isinstance(item, dict):
                    yield item

    async def scan_ledgers(
        self, run_id: str | None = None
    ) -> AsyncGenerator[LedgerHead | dict[str, Any], None]:
        await self._ensure_ready()
        query = ledger_scan_query(run_id)
        current: str | None = None
        # One statement, streamed (a server-side cursor on Postgres, stepped rows on SQLite):
        # one consistent read of any size, held _SCAN_BATCH rows at a time.
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=_SCAN_BATCH))
            async for rows in result.partitions():  # a batch per switch, not a row per switch
                for run, seq, head, record in rows:
                    if run != current:
                        current = run
                        yield LedgerHead(run, seq, head)
                    if record is not None:
                        yield decode(record)
        if run_id is not None and current is None:
            raise RunNotFoundError(run_id)

    async def ledger_tail(self, run_id: str) -> dict[str, Any] | None:
        await self._ensure_ready()
        query = (
            sa.select(sa.cast(ledger.c.record, sa.Text))
            .where(ledger.c.run_id == run_id)
            .order_by(ledger.c.seq.desc())
            .limit(1)
        )
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            text = await conn.scalar(query)
            if text is None:
                exists = await conn.scalar(sa.select(sa.literal(1)).where(runs.c.run_id == run_id))
                if exists is None:
                    raise RunNotFoundError(run_id)
        return None if text is None else decode(text)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow_id: str | None = None,
        wait_reason: WaitReason | None = None,
        wait_key: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
    ) -> list[RunState]:
        if unstorable(workflow_id, wait_key, parent_run_id):
            return []
        await self._ensure_ready()
        query = sa.select(sa.cast(runs.c.state, sa.Text))
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        if workflow_id is not None:
            query = query.where(runs.c.workflow_id == workflow_id)
        if wait_reason is not None:
            query = query.where(runs.c.wait_reason == WaitReason(wait_reason).value)
        if wait_key is not None:
            query = query.where(runs.c.wait_key == wait_key)
        if parent_run_id is not None:
            query = query.where(runs.c.parent_run_id == parent_run_id)
        query = query.order_by(runs.c.updated_at.desc(), runs.c.run_id).limit(limit)
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            texts = (await conn.execute(query)).scalars().all()
        return [RunState.from_dict(decode(text)) for text in texts]

    async def find_effect(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        if unstorable(run_id, idempotency_key):
            return None
        await self._ensure_ready()
        query = find_effect_query(run_id, idempotency_key)
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            text = await conn.scalar(query)
        return None if text is None else decode(text)
