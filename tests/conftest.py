"""Shared fixtures: one ``store`` fixture parametrised over memory, a SQLite file and Postgres.

Postgres: ``ABSTRACTRUNTIME_TEST_POSTGRES_URL`` names a server and a database we may create
others next to (e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``). A template database is
migrated once per session and every test gets its own clone (``CREATE DATABASE ... TEMPLATE``),
dropped afterwards. Without the variable the Postgres cases skip, unless
``ABSTRACTRUNTIME_TEST_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from abstractruntime.storage import MemoryStore, SqlStore

PG_ENV = "ABSTRACTRUNTIME_TEST_POSTGRES_URL"
REQUIRE_PG_ENV = "ABSTRACTRUNTIME_TEST_REQUIRE_POSTGRES"
HOW_TO_START = (
    f"Postgres tests need {PG_ENV}: start one with `docker compose up -d` and export "
    f"{PG_ENV}=postgresql+asyncpg://abstractruntime:abstractruntime@127.0.0.1:5432/abstractruntime"
)


def _raw_dsn(url: str, database: str | None = None) -> str:
    """The asyncpg DSN of a SQLAlchemy URL, optionally pointing at another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


class PostgresServer:
    """Creates isolated databases cloned from a migrated template."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template = f"abstractruntime_tpl_{os.getpid()}"

    async def _admin(self, *sql: str) -> None:
        conn = await asyncpg.connect(_raw_dsn(self.url))
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    def url_for(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    async def create_template(self) -> None:
        await self._admin(
            f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)',
            f'CREATE DATABASE "{self.template}"',
        )
        store = SqlStore(self.url_for(self.template))
        try:
            await store.upgrade()
        finally:
            await store.close()

    async def create_database(self, *, migrated: bool = True) -> str:
        name = f"abstractruntime_t_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{self.template}"' if migrated else ""
        await self._admin(f'CREATE DATABASE "{name}"{template}')
        return name

    async def drop_database(self, name: str) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def drop_template(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')


T = TypeVar("T")


def _run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when a test's loop is running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fn()).result()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get(REQUIRE_PG_ENV) == "1":
            pytest.fail(f"{REQUIRE_PG_ENV}=1 but {PG_ENV} is unset. {HOW_TO_START}")
        pytest.skip(HOW_TO_START)
    server = PostgresServer(url)
    _run_async(server.create_template)
    yield server
    _run_async(server.drop_template)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, migrated Postgres database for this test."""
    name = _run_async(pg_server.create_database)
    yield pg_server.url_for(name)
    _run_async(lambda: pg_server.drop_database(name))


@pytest.fixture
def pg_empty_url(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh Postgres database with no tables at all."""
    name = _run_async(lambda: pg_server.create_database(migrated=False))
    yield pg_server.url_for(name)
    _run_async(lambda: pg_server.drop_database(name))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"


BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A database URL: a SQLite file, or a fresh Postgres database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(backend name, database URL or None for memory)."""
    if request.param == "memory":
        return "memory", None
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.param, str(request.getfixturevalue(fixture))


@pytest.fixture
async def store_factory(
    backend: tuple[str, str | None],
) -> AsyncIterator[Callable[[], object]]:
    """Makes stores that all see the same data (two runtimes = two stores on one database)."""
    made: list[object] = []
    name, url = backend
    if url is None:
        shared = MemoryStore()

        def factory() -> object:
            return shared

    else:

        def factory() -> object:
            store = SqlStore(url)
            made.append(store)
            return store

    factory.backend = name  # type: ignore[attr-defined]
    yield factory
    for store in made:
        await store.close()  # type: ignore[attr-defined]


@pytest.fixture
def store(store_factory: Callable[[], object]) -> object:
    return store_factory()
