"""Alembic environment: runs migrations on an async engine through ``run_sync``.

Two ways in: ``SqlStore.upgrade()`` (and the ``abstractruntime db`` command) hand us an open
connection in ``config.attributes["connection"]``; the plain ``alembic`` command line gives us a
URL (``-x url=...``, ``ABSTRACTRUNTIME_DATABASE_URL`` or ``sqlalchemy.url`` of alembic.ini).
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from abstractruntime.storage.sql.migrate import VERSION_TABLE
from abstractruntime.storage.sql.schema import metadata
from abstractruntime.storage.sql.urls import normalize_url

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def url_from_config() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("ABSTRACTRUNTIME_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set ABSTRACTRUNTIME_DATABASE_URL")
    return normalize_url(url)


async def run_async() -> None:
    engine = create_async_engine(url_from_config())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
elif context.is_offline_mode():
    context.configure(url=url_from_config(), target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async())
