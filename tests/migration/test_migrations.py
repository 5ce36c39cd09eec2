"""The alembic revisions build exactly the schema of ``schema.py``, and go both ways."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql import migrate
from abstractruntime.storage.sql.schema import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("pg_empty_url"))


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _diff(conn: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "version_table": migrate.VERSION_TABLE}
    )
    return list(compare_metadata(context, metadata))


async def test_upgrade_to_head_matches_the_schema_and_downgrade_to_base(empty_url: str) -> None:
    store = SqlStore(empty_url)
    try:
        await store.upgrade()
        assert await store.current_revision() == migrate.head_revision()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert {"abstractruntime_runs", "abstractruntime_ledger"} <= await conn.run_sync(
                _tables
            )
        await store.downgrade("base")
        assert await store.current_revision() is None
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {migrate.VERSION_TABLE}
        await store.upgrade()  # and back up again
        assert await store.current_revision() == migrate.head_revision()
    finally:
        await store.close()


async def test_diff_detects_a_schema_that_drifted(empty_url: str) -> None:
    """Guards the test above: a missing index must show up in the comparison."""
    store = SqlStore(empty_url)
    try:
        await store.upgrade()
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql("DROP INDEX ix_abstractruntime_runs_wait_key")
        async with store.engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        assert any("ix_abstractruntime_runs_wait_key" in repr(d) for d in diff)
    finally:
        await store.close()


async def test_version_table_is_our_own(empty_url: str) -> None:
    store = SqlStore(empty_url)
    try:
        await store.upgrade()
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(_tables)
        assert migrate.VERSION_TABLE in tables
        assert "alembic_version" not in tables  # an application's own alembic stays untouched
    finally:
        await store.close()
