"""The backend protocol: the writes every step makes, one implementation per dialect.

``SqlStore`` (``store.py``) keeps the lifecycle, the schema check, the error boundary and the
cold reads, which are SQLAlchemy Core on ``backend.engine``. The hot writes go to a
``SqlBackend``, which also builds that engine for its dialect:

- ``PostgresBackend`` (``postgres.py``): raw asyncpg on connections of the engine's own pool,
  one statement per step, LISTEN/NOTIFY to wake idle workers;
- ``SqliteBackend`` (``sqlite.py``): one writer thread with one ``sqlite3`` connection and group
  commit; the engine's connections read.

Both run the statements of ``statements.py``. A backend raises the store's errors for what its
writes find (``RunExistsError``, ``RunNotFoundError``, ``RunLeasedError``,
``ConcurrentUpdateError``); driver failures pass through, to become a ``StoreError`` at the
store's one boundary (``SqlStore._reaching``).

Pools: the engine's, of ``pool_size`` connections kept open plus up to ``max_overflow`` more
under load (see ``urls.pool_options``), and on Postgres a second pool of that size for the hot
path (see ``postgres.py`` for why); docs/storage.md counts what a process opens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...core.ports import Served
from ...core.serde import canonical_json
from .schema import RawJSON
from .statements import HandleRow
from .urls import PoolOptions


class SqlBackend(Protocol):
    """The hot path of one dialect (see the module docstring)."""

    #: The engine of the cold paths (reads, snapshots, artifacts, migrations), set up for the
    #: dialect (Postgres keeps a second, asyncpg pool for its hot path).
    engine: AsyncEngine
    #: The URL the engine connects to.
    url: URL
    #: The database can only be read (a SQLite file on read-only media).
    read_only: bool

    async def create_run(self, values: Mapping[str, Any], *, notify: bool) -> None:
        """Insert a run row (``values``: every column); ``RunExistsError`` if its id is taken.
        ``notify``: the run is due, wake idle workers."""
        ...

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> HandleRow:
        """Claim the run unless another owner's lease is live (``RunLeasedError``);
        ``RunNotFoundError``."""
        ...

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None,
    ) -> list[HandleRow]:
        """Claim up to ``limit`` due, unclaimed runs, oldest due first."""
        ...

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
        """Update the run (``values``: its ``STEP_COLUMNS``) if it is still at ``version``,
        append the ledger ``rows``, and mark ``parent_due`` (id, when) due if it waits for a
        child, all in one transaction; ``ConcurrentUpdateError`` (nothing written) or
        ``RunNotFoundError`` otherwise. ``notify``: the run is due, wake idle workers."""
        ...

    async def release(
        self, run_id: str, owner: str | None, version: int, due: datetime | None
    ) -> None:
        """Give up ``owner``'s lease; the run is due at ``due`` unless it changed since."""
        ...

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        """Extend ``owner``'s leases that still hold, skipping locked rows; the ids renewed."""
        ...

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` when another process makes a run due; returns the stopper."""
        ...

    async def close(self) -> None:
        """Stop the hot path and dispose of the engine (and of anything the backend made)."""
        ...


def _json_serializer(value: Any) -> str:
    return value if isinstance(value, RawJSON) else canonical_json(value)


def create_engine(url: URL, pool: PoolOptions, engine_kwargs: Mapping[str, Any]) -> AsyncEngine:
    """The store's engine: its pool sized by ``pool`` (unless the caller chose a pool class of
    its own), JSON written canonically, and the caller's ``engine_kwargs`` on top."""
    kwargs: dict[str, Any] = {"json_serializer": _json_serializer}
    if "poolclass" not in engine_kwargs or pool.given:
        kwargs.update(pool_size=pool.pool_size, max_overflow=pool.max_overflow)
    kwargs.update(engine_kwargs)
    return create_async_engine(url, **kwargs)
