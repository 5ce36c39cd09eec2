"""``abstractruntime db upgrade | current | downgrade REV``: schema migrations."""

from __future__ import annotations

import argparse

from alembic.util import CommandError

from ..storage.sql import SqlStore
from .base import EXIT_OK, CliError, Parser, Subparsers, add_group
from .output import emit


async def upgrade(args: argparse.Namespace, store: SqlStore) -> int:
    await store.upgrade()
    revision = await store.current_revision()
    emit(args, {"revision": revision}, f"database is at revision {revision}")
    return EXIT_OK


async def current(args: argparse.Namespace, store: SqlStore) -> int:
    revision = await store.current_revision()
    emit(args, {"revision": revision}, revision or "(no abstractruntime tables)")
    return EXIT_OK


async def downgrade(args: argparse.Namespace, store: SqlStore) -> int:
    try:
        await store.downgrade(args.revision)
    except CommandError as exc:  # alembic's word for a revision it does not know
        raise CliError(f"db downgrade {args.revision}: {exc}") from exc
    revision = await store.current_revision()
    emit(args, {"revision": revision}, f"database is at revision {revision or 'base'}")
    return EXIT_OK


ACTIONS = {"upgrade": upgrade, "current": current, "downgrade": downgrade}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(subparsers, common, "db", "schema migrations", ACTIONS)
    actions.add_parser("upgrade", help="migrate to the newest revision", parents=[common])
    actions.add_parser("current", help="print the database's revision", parents=[common])
    down = actions.add_parser(
        "downgrade", help="migrate down to REV ('base' drops every table)", parents=[common]
    )
    down.add_argument("revision", metavar="REV")
