"""``SqlStore``: runs and ledgers in SQLite or Postgres.

This module keeps what does not depend on the dialect: the store's lifecycle, the schema check
(and the migrations it runs), the one error boundary for every driver (``_reaching``), the cold
reads (SQLAlchemy Core statements of ``statements.py`` on the engine) and the turning of rows
into ``RunHandle``s. The writes every step makes go to the dialect's backend (``backend.py``):
``PostgresBackend`` (raw asyncpg, one statement per step) or ``SqliteBackend`` (one writer
thread, group commit).

A step is one transaction: a version-checked update of the run (the optimistic lock) and the
insert of its ledger rows, chained onto the head the runtime holds. If the update matches no
row, somebody else committed first and nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread
import asyncpg
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from ...core import pages, timeouts
from ...core.kernel import check_limit, due_at, unstorable
from ...core.ledger import LedgerRow, chain_records
from ...core.models import RunState, RunStatus, StepRecord, WaitReason
from ...core.ports import LedgerHead, RunHandle, Served
from ...core.serde import decode
from ...errors import InvalidArgumentError, RunNotFoundError, SchemaOutOfDateError, StoreError
from . import migrate, statements
from .artifacts import SqlArtifactStore
from .backend import SqlBackend
from .backup import BackupResult, backup_sqlite
from .events import SqlEvents
from .limits import SqlLimits
from .postgres import PostgresBackend
from .retention import SqlRetention
from .schedules import SqlScheduleStore
from .schema import UTCDateTime
from .snapshots import SqlSnapshotStore
from .sqlite import SqliteBackend
from .statements import HandleRow
from .urls import mask_url, parse_url, pool_options
from .workers import SqlWorkers

logger = logging.getLogger("abstractruntime.storage")

#: What the drivers raise for a constraint violation: callers turn them into their own errors.
_CONSTRAINT_ERRORS = (
    sqlalchemy.exc.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
    sqlite3.IntegrityError,
)
#: What the drivers (and the network and the pool under them) raise when the database fails.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
)

#: Rows a ledger scan fetches at a time: its memory does not grow with the ledger.
_SCAN_BATCH = 1000


def _handle(row: HandleRow | Any, owner: str | None = None) -> RunHandle:
    """A handle from a row of ``statements.HANDLE_COLUMNS``."""
    state_json, version, seq, head = row
    return RunHandle(RunState.from_dict(decode(state_json)), version, seq, head, state_json, owner)


class SqlStore(SqlEvents, SqlWorkers, SqlRetention, SqlLimits):
    """Runs and ledgers in a SQL database, each step committed in one transaction; buffered
    events and messages too (``events.SqlEvents``), the live workers (``workers``), and
    ``purge`` (``retention.SqlRetention``).

    Args:
        url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://user:pw@host/db``
            (``sqlite:///`` and ``postgresql://`` are accepted and switched to those drivers;
            ``sqlite+aiosqlite://`` is a private database that lasts until ``close()``). The
            query parameters ``pool_size`` and ``max_overflow`` size the store's pool.
        **engine_kwargs: passed to SQLAlchemy's ``create_async_engine``; ``pool_size`` (the
            connections the pool keeps, default 10) and ``max_overflow`` (more under load,
            default 0) win over the URL's. They size the store's pools; see
            docs/storage.md for the connections a process opens.

    The schema must be at the newest migration (``await store.upgrade()`` or
    ``abstractruntime db upgrade``); a SQLite file this store creates is migrated by itself.
    """

    def __init__(self, url: str | URL, **engine_kwargs: Any) -> None:
        parsed, pool = pool_options(parse_url(url), engine_kwargs)
        self.dialect = parsed.get_backend_name()
        # Masked from the text as given (a parsed URL may hide a bad spelling of the password),
        # shown with the driver actually used.
        self._masked = mask_url(make_url(mask_url(url)).set(drivername=parsed.drivername))
        self._backend: SqlBackend = (
            PostgresBackend(parsed, pool, engine_kwargs, self._masked)
            if self.dialect == "postgresql"
            else SqliteBackend(parsed, pool, engine_kwargs)
        )
        #: The URL the store connects to.
        self.url = self._backend.url
        #: The engine of the cold paths (SQLite's reads share its pool with nothing else).
        self.engine = self._backend.engine
        #: A SQLite file on read-only media: what it holds stays readable, writes fail.
        self.read_only = self._backend.read_only
        #: Errors of the DBAPI the engine adapts (SQLAlchemy's asyncpg adapter raises its own
        #: when a pooled connection cannot be made).
        self._driver_errors: tuple[type[BaseException], ...] = (
            *_DRIVER_ERRORS,
            self.engine.dialect.loaded_dbapi.Error,
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()
        #: Snapshots of the runs (``Runtime.restore_snapshot`` / ``fork_snapshot`` use them).
        self.snapshots = SqlSnapshotStore(self)
        #: Artifacts (``core.ports.ArtifactStore``).
        self.artifacts = SqlArtifactStore(self)
        #: Cron schedules (``core.schedules``).
        self.schedules = SqlScheduleStore(self)

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
        """Stop the hot path and close every connection (an in-memory database is gone)."""
        await self._backend.close()

    def _write(self) -> Any:
        """A transaction that will write (``BEGIN IMMEDIATE`` on SQLite)."""
        return self.engine.execution_options(abstractruntime_write=True).begin()

    @contextlib.asynccontextmanager
    async def _reaching(self, what: str) -> AsyncIterator[None]:
        """The one boundary where failures of any driver (SQLAlchemy's, raw asyncpg, sqlite3),
        of the pool and of the network become a ``StoreError`` naming the (masked) database.
        Constraint violations pass through: the caller knows what they mean (the backends turn
        theirs into the store's errors)."""
        try:
            yield
        except _CONSTRAINT_ERRORS:
            raise
        except self._driver_errors as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"{what} {self._masked}: {reason}") from exc

    # -- schema -------------------------------------------------------------------------------

    async def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations up to ``revision`` (alembic ``upgrade``), programmatically."""
        async with self._reaching("cannot upgrade"), self._write() as conn:
            await self._lock_migrations(conn)
            await conn.run_sync(migrate.upgrade, revision)
            if self.dialect == "sqlite":
                await conn.exec_driver_sql(statements.SQLITE_SET_APP_ID)
        self._ready = False

    async def downgrade(self, revision: str) -> None:
        """Revert the migrations down to ``revision`` (``"base"`` drops every table)."""
        async with self._reaching("cannot downgrade"), self._write() as conn:
            await self._lock_migrations(conn)
            await conn.run_sync(migrate.downgrade, revision)
        self._ready = False

    async def backup(self, path: str | Path, *, overwrite: bool = False) -> BackupResult:
        """Copy this SQLite database to the file ``path`` while workers go on writing: one
        consistent snapshot, checked, fsynced and renamed into place (``backup.py``).

        ``InvalidArgumentError`` on Postgres (use ``pg_dump``: docs/reliability.md#backups),
        for an in-memory database, or a ``path`` that exists (unless ``overwrite``).
        """
        if self.dialect != "sqlite":
            raise InvalidArgumentError(
                "backup() copies SQLite files; back up Postgres with pg_dump (see "
                "docs/reliability.md#backups)"
            )
        source = getattr(self._backend, "path", None)
        if source is None:
            raise InvalidArgumentError("an in-memory database has no file to back up")
        await self._ensure_ready()
        return await backup_sqlite(source, Path(path), overwrite=overwrite)

    async def current_revision(self) -> str | None:
        """The alembic revision the database is at (None: no abstractruntime tables)."""
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            return await conn.run_sync(migrate.current_revision)

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":
            await conn.execute(statements.PG_MIGRATION_LOCK)

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
                app_id = (await conn.exec_driver_sql(statements.SQLITE_GET_APP_ID)).scalar()
                tables = (await conn.exec_driver_sql(statements.SQLITE_TABLE_COUNT)).scalar()
                auto = app_id == statements.SQLITE_APP_ID or not tables
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
        """Call ``callback`` whenever a run becomes due (Postgres ``LISTEN`` on a connection
        of its own, reopened with backoff when it drops); returns a stopper. On SQLite there is
        nothing to listen to: a no-op."""
        return await self._backend.listen(callback)

    # -- the Store interface: writes (the backend's hot path) ---------------------------------

    async def create_run(
        self,
        state: RunState,
        state_json: str,
        *,
        lease: tuple[str, datetime] | None = None,
    ) -> RunHandle:
        await self._ensure_ready()
        owner, until = lease if lease is not None else (None, None)
        due = until if lease is not None else due_at(state, state.created_at)
        values = statements.run_values(state, state_json)
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
        async with self._reaching("cannot create a run in"):
            await self._backend.create_run(values, notify=lease is None and due is not None)
        return RunHandle(state, 0, 0, None, state_json, owner)

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> RunHandle:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        async with self._reaching("cannot claim a run in"):
            row = await self._backend.claim_run(run_id, owner, now, lease_until)
        return _handle(row, owner)

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None = None,
    ) -> list[RunHandle]:
        await self._ensure_ready()
        async with self._reaching("cannot claim runs in"):
            rows = await self._backend.claim_due(owner, now, lease_until, limit, workflows)
        return [_handle(row, owner) for row in rows]

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
            statements.record_values(run_id, handle.seq + offset, data, record)
            for offset, (data, record) in enumerate(zip(dicts, records, strict=True))
        ]
        keep = lease_until is not None and state.status is RunStatus.RUNNING
        due = lease_until if keep else due_at(state, now, committing=True)
        values = statements.run_values(state, state_json)
        values.update(
            ledger_seq=handle.seq + len(rows),
            ledger_head=head,
            lease_owner=handle.owner if keep else None,
            lease_expires_at=lease_until if keep else None,
            due_at=due,
        )
        parent = state.parent_run_id if state.status.is_terminal else None
        async with self._reaching(f"could not commit a step of run {run_id!r} to"):
            await self._backend.commit_step(
                run_id,
                handle.version,
                values,
                rows,
                notify=not keep and due is not None,  # runnable now, or a timer to plan for
                parent_due=(parent, now) if parent else None,
            )
        owner = handle.owner if keep else None
        return RunHandle(state, handle.version + 1, values["ledger_seq"], head, state_json, owner)

    async def release(self, handle: RunHandle, *, now: datetime) -> None:
        await self._ensure_ready()
        due = due_at(handle.state, now)
        async with self._reaching("cannot release a run in"):
            await self._backend.release(handle.state.run_id, handle.owner, handle.version, due)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        if not run_ids:
            return []
        await self._ensure_ready()
        async with self._reaching("cannot renew leases in"):
            return await self._backend.renew(owner, run_ids, lease_until)

    # -- the Store interface: reads (SQLAlchemy Core on the engine) ---------------------------

    async def load_run(self, run_id: str) -> RunHandle:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            row = (await conn.execute(statements.load_run_query(run_id))).one_or_none()
        if row is None:
            raise RunNotFoundError(run_id)
        return _handle(row)

    async def next_due_at(self, workflows: Served | None = None) -> datetime | None:
        await self._ensure_ready()
        query = statements.next_due_query(workflows)
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            value = await conn.scalar(query)
        return UTCDateTime().process_result_value(value, self.engine.dialect) if value else None

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        if unstorable(run_id):
            raise RunNotFoundError(run_id)
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            texts = (await conn.execute(statements.ledger_query(run_id))).scalars().all()
            if not texts and await conn.scalar(statements.run_exists_query(run_id)) is None:
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
        async with contextlib.aclosing(self._scan(run_id, with_columns=False)) as items:
            async for item in items:
                yield item.record if isinstance(item, LedgerRow) else item

    def scan_ledger_rows(
        self, run_id: str | None = None
    ) -> AsyncGenerator[LedgerHead | LedgerRow, None]:
        """``scan_ledgers`` with each record's indexed columns (``node_id``, ``status``,
        ``idempotency_key``...) beside it, for ``ledger verify`` to check they agree."""
        return self._scan(run_id, with_columns=True)

    async def _scan(
        self, run_id: str | None, *, with_columns: bool
    ) -> AsyncGenerator[LedgerHead | LedgerRow, None]:
        await self._ensure_ready()
        query = statements.ledger_scan_query(run_id, with_columns=with_columns)
        names = statements.LEDGER_INDEXED_COLUMNS if with_columns else ()
        current: str | None = None
        # One statement, streamed (a server-side cursor on Postgres, stepped rows on SQLite):
        # one consistent read of any size, held _SCAN_BATCH rows at a time.
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            batch = _SCAN_BATCH // 2 if with_columns else _SCAN_BATCH  # rows twice as wide
            result = await conn.stream(query.execution_options(yield_per=batch))
            async for rows in result.partitions():  # a batch per switch, not a row per switch
                for run, seq, head, record, *columns in rows:
                    if run != current:
                        current = run
                        yield LedgerHead(run, seq, head)
                    if record is not None:
                        yield LedgerRow(decode(record), dict(zip(names, columns, strict=True)))
        if run_id is not None and current is None:
            raise RunNotFoundError(run_id)

    async def ledger_tail(self, run_id: str) -> dict[str, Any] | None:
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            text = await conn.scalar(statements.ledger_tail_query(run_id))
            if text is None and await conn.scalar(statements.run_exists_query(run_id)) is None:
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
        due_by: datetime | None = None,
        order: str = "updated",
        deadline_before: datetime | None = None,
        workflow_version: str | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[RunState]:
        check_limit(limit)
        timeouts.check_order(order)
        after = pages.check_after(
            after, order=order, due_by=due_by, deadline_before=deadline_before
        )
        if unstorable(workflow_id, wait_key, parent_run_id, workflow_version):
            return []
        await self._ensure_ready()
        by_deadline = due_by is None and (order == "deadline" or deadline_before is not None)

        def query(limit: int, deadline: bool | None) -> Any:
            return statements.list_runs_query(
                status=status,
                workflow_id=workflow_id,
                wait_reason=wait_reason,
                wait_key=wait_key,
                parent_run_id=parent_run_id,
                limit=limit,
                due_by=due_by,
                deadline=deadline,
                deadline_before=deadline_before,
                workflow_version=workflow_version,
                after=after,
            )

        async with self._reaching("cannot read"), self.engine.connect() as conn:
            texts = list((await conn.execute(query(limit, by_deadline or None))).scalars())
            if by_deadline and deadline_before is None and len(texts) < limit:
                # Then the runs without a deadline: two index-friendly queries rather than one
                # NULLS LAST sort, which SQLite cannot read off the index.
                rest = query(limit - len(texts), False)
                texts.extend((await conn.execute(rest)).scalars())
        return [RunState.from_dict(decode(text)) for text in texts]

    async def find_effect(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        if unstorable(run_id, idempotency_key):
            return None
        await self._ensure_ready()
        query = statements.find_effect_query(run_id, idempotency_key)
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            text = await conn.scalar(query)
        return None if text is None else decode(text)
