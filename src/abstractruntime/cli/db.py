"""``abstractruntime db upgrade | current | downgrade REV | import-files DIR | backup PATH``:
schema migrations, copying a file-store directory (the original 0.2's layout) into the
database, and online backups of a SQLite file."""

from __future__ import annotations

import argparse

from alembic.util import CommandError

from ..storage.import_files import import_files as import_directory
from ..storage.sql import SqlStore
from . import retention
from .base import EXIT_BROKEN, EXIT_OK, CliError, Parser, Subparsers, add_group
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


async def import_files(args: argparse.Namespace, store: SqlStore) -> int:
    try:
        report = await import_directory(store, args.directory)
    except FileNotFoundError as exc:
        raise CliError(f"db import-files: {exc}") from exc
    lines = [
        f"imported {len(report.imported)} runs, skipped {len(report.skipped)} already imported; "
        f"snapshots: imported {len(report.snapshots_imported)}, skipped "
        f"{len(report.snapshots_skipped)}; artifacts: imported "
        f"{len(report.artifacts_imported)}, skipped {len(report.artifacts_skipped)}"
    ]
    if not (report.imported or report.snapshots_imported or report.artifacts_imported):
        lines.append("nothing new to import")
    lines += [f"chained {run_id}: its ledger had no hash chain" for run_id in report.chained]
    lines += [f"refused {run_id}: {why}" for run_id, why in report.refused.items()]
    lines += [f"conflict {run_id}: {why}" for run_id, why in report.conflicts.items()]
    lines += [f"conflict snapshot {sid}: {why}" for sid, why in report.snapshot_conflicts.items()]
    lines += [f"conflict artifact {aid}: {why}" for aid, why in report.artifact_conflicts.items()]
    emit(args, report.to_dict(), "\n".join(lines))
    return EXIT_OK if report.ok else EXIT_BROKEN


async def backup(args: argparse.Namespace, store: SqlStore) -> int:
    result = await store.backup(args.path, overwrite=args.force)
    text = (
        f"backed up {result.runs} runs and {result.ledger_records} ledger records to "
        f"{result.path} ({result.bytes} bytes)"
    )
    emit(args, result.to_dict(), text)
    return EXIT_OK


ACTIONS = {
    "upgrade": upgrade,
    "current": current,
    "downgrade": downgrade,
    "import-files": import_files,
    "backup": backup,
    **retention.DB_ACTIONS,  # import-archive
}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(subparsers, common, "db", "schema migrations", ACTIONS)
    actions.add_parser("upgrade", help="migrate to the newest revision", parents=[common])
    actions.add_parser("current", help="print the database's revision", parents=[common])
    down = actions.add_parser(
        "downgrade", help="migrate down to REV ('base' drops every table)", parents=[common]
    )
    down.add_argument("revision", metavar="REV")
    files = actions.add_parser(
        "import-files",
        help="copy a file-store directory (run_*.json, ledger_*.jsonl, snapshot_*.json, "
        "artifacts/) into the database, verifying each ledger's hash chain; exit status 1 when "
        "a run is refused or anything conflicts",
        parents=[common],
    )
    files.add_argument("directory", metavar="DIR")
    saved = actions.add_parser(
        "backup",
        help="copy a SQLite database to PATH while workers write (one consistent snapshot); "
        "on Postgres use pg_dump (docs/reliability.md#backups)",
        parents=[common],
    )
    saved.add_argument("path", metavar="PATH")
    saved.add_argument("--force", action="store_true", help="replace PATH if it exists")
    retention.configure_db(actions, common)
