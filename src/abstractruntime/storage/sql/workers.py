"""The live workers in SQL (the worker methods of ``SqlStore``; see ``core/workers.py``).

Cold path: a worker writes its row when it starts and every few seconds, on the engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...core.workers import FORGET_AFTER, VersionCount, WorkerInfo
from . import statements

if TYPE_CHECKING:
    import contextlib

    from sqlalchemy.ext.asyncio import AsyncEngine


class SqlWorkers:
    """The worker methods (a mixin of ``SqlStore``, which gives the engine, the transaction,
    the error boundary and the schema check)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        dialect: str

        def _write(self) -> Any: ...

        def _reaching(self, what: str) -> contextlib.AbstractAsyncContextManager[None]: ...

        async def _ensure_ready(self) -> None: ...

    async def announce_worker(
        self,
        owner: str,
        serves: Sequence[tuple[str, str]],
        *,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Record (or refresh) ``owner`` as a live worker serving ``serves`` until
        ``expires_at``; rows of workers gone for a day are deleted on the way."""
        await self._ensure_ready()
        pairs = [[workflow_id, version] for workflow_id, version in serves]
        upsert = statements.upsert_worker(self.dialect, owner, pairs, now, expires_at)
        async with self._reaching("cannot announce a worker in"), self._write() as conn:
            await conn.execute(upsert)
            await conn.execute(statements.delete_gone_workers(now - FORGET_AFTER))

    async def forget_worker(self, owner: str) -> None:
        """Remove ``owner``'s row (a worker that stops cleanly)."""
        await self._ensure_ready()
        async with self._reaching("cannot remove a worker from"), self._write() as conn:
            await conn.execute(statements.delete_worker(owner))

    async def list_workers(self) -> list[WorkerInfo]:
        """Every announced worker, alive or not (``WorkerInfo.alive``), by owner."""
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            rows = (await conn.execute(statements.workers_query())).all()
        return [
            WorkerInfo(
                owner=row.owner,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                expires_at=row.expires_at,
                serves=tuple((str(w), str(v)) for w, v in row.serves),
            )
            for row in rows
        ]

    async def version_counts(self) -> list[VersionCount]:
        """How many unfinished runs each workflow version has, by status."""
        await self._ensure_ready()
        async with self._reaching("cannot read"), self.engine.connect() as conn:
            rows = (await conn.execute(statements.version_counts_query())).all()
        return [VersionCount(str(w), str(v), str(s), int(n)) for w, v, s, n in rows]
