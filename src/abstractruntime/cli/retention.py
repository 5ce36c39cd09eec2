"""``runs export | purge``, ``ledger verify --file`` and ``db import-archive``: retention.

The commands live here, and ``cli/runs.py``, ``cli/ledger.py`` and ``cli/db.py`` add them to
their groups with one line each (``RUNS_ACTIONS`` / ``configure_runs`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from ..core.retention import FINISHED, PurgeResult
from ..errors import ArchiveFormatError
from ..storage.archive import ExportResult, export_runs, import_archive, verify_archive
from ..storage.sql import SqlStore
from .base import (
    EXIT_BROKEN,
    EXIT_OK,
    CliError,
    Parser,
    Subparsers,
    duration_s,
    non_negative_float,
    positive_int,
)
from .output import Progress, emit, to_json

_STATUSES = [status.value for status in FINISHED]


def _statuses(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.status)) if args.status else _STATUSES


@contextlib.contextmanager
def _opened(path: str | None, what: str) -> Iterator[IO[str]]:
    """``path`` opened for writing (stdout when None or '-')."""
    if path is None or path == "-":
        yield sys.stdout
        return
    try:
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"{what}: cannot write {path!r}: {exc.strerror}") from exc
    with out:
        yield out


def _export_text(result: ExportResult, where: str) -> str:
    return (
        f"exported {result.runs} runs, {result.records} ledger records, {result.snapshots} "
        f"snapshots, {result.artifacts} artifacts to {where}"
    )


async def _export(
    args: argparse.Namespace, store: SqlStore, out: IO[str], progress: Progress
) -> ExportResult:
    def tell(result: ExportResult) -> None:
        progress.update(f"exported {result.runs:,} runs, {result.records:,} records…")

    return await export_runs(
        store,
        out,
        older_than=timedelta(seconds=args.older_than),
        statuses=_statuses(args),
        batch=args.batch,
        progress=tell,
    )


async def export(args: argparse.Namespace, store: SqlStore) -> int:
    to_stdout = args.output in (None, "-")
    with Progress() as progress, _opened(args.output, "runs export") as out:
        result = await _export(args, store, out, progress)
    where = "stdout" if to_stdout else args.output
    text = _export_text(result, where)
    if to_stdout:  # stdout is the archive: the summary goes to stderr
        print(to_json(result.to_dict()) if args.json else text, file=sys.stderr)
    else:
        emit(args, result.to_dict(), text)
    return EXIT_OK


async def purge(args: argparse.Namespace, store: SqlStore) -> int:
    older_than = timedelta(seconds=args.older_than)
    statuses = _statuses(args)
    if args.dry_run:
        return await _dry_run(args, store, older_than, statuses)
    exported: ExportResult | None = None
    with Progress() as progress:
        if args.export is not None:
            if args.export == "-":
                raise CliError("runs purge --export needs a file name (stdout holds the counts)")
            with _opened(args.export, "runs purge --export") as out:
                exported = await _export(args, store, out, progress)

        def tell(done: PurgeResult) -> None:
            progress.update(f"deleted {done.runs:,} runs, {done.ledger_records:,} records…")

        # Only what was exported, if exported: a run that finished since is not in the file.
        result = await store.purge(
            older_than=older_than,
            statuses=statuses,
            batch=args.batch,
            run_ids=None if exported is None else exported.run_ids,
            pause_ratio=args.pause_ratio,
        )
        tell(result)
    data: dict[str, Any] = {"deleted": result.to_dict()}
    lines = []
    if exported is not None:
        data["exported"] = exported.to_dict()
        lines.append(_export_text(exported, args.export))
    lines.append(
        f"deleted {result.runs} runs, {result.ledger_records} ledger records, "
        f"{result.snapshots} snapshots, {result.artifacts} artifacts"
    )
    emit(args, data, "\n".join(lines))
    return EXIT_OK


async def _dry_run(
    args: argparse.Namespace, store: SqlStore, older_than: timedelta, statuses: list[str]
) -> int:
    runs = records = 0
    pages = store.purgeable(older_than=older_than, statuses=statuses, batch=args.batch)
    with Progress() as progress:
        async for trees in pages:
            for tree in trees:
                for run_id in tree:
                    runs += 1
                    records += (await store.load_run(run_id)).seq
            progress.update(f"would delete {runs:,} runs…")
    data = {"dry_run": True, "runs": runs, "ledger_records": records}
    emit(args, data, f"would delete {runs} runs and {records} ledger records (dry run)")
    return EXIT_OK


async def verify_file(args: argparse.Namespace) -> int:
    """``ledger verify --file``: every chain of an archive, offline."""
    runs = records = 0
    broken: list[dict[str, Any]] = []
    with Progress() as progress:
        async for report in verify_archive(args.file):
            if report["run_id"] is not None:
                runs += 1
                records += report["count"]
            if not report["ok"]:
                broken.append(report)
                progress.clear()
                if not args.json:
                    print(_broken_line(report), flush=True)
            progress.update(f"verified {runs:,} runs, {records:,} records…")
    summary = {"ok": not broken, "runs": runs, "records": records, "broken": broken}
    if args.json:
        print(to_json(summary, indent=2))
    elif broken:
        problems = f"{len(broken)} problem{'s' if len(broken) > 1 else ''}"
        print(f"{problems} in {args.file}: {runs} runs, {records} records verified")
    else:
        print(f"all {runs} ledgers in {args.file} intact ({records} records verified)")
    return EXIT_BROKEN if broken else EXIT_OK


def _broken_line(report: dict[str, Any]) -> str:
    error = report["errors"][0]["error"] if report["errors"] else "broken"
    if report["run_id"] is None:
        return f"archive: {error}"
    return f"run {report['run_id']}: chain BROKEN at index {report['first_bad_index']}: {error}"


async def import_file(args: argparse.Namespace, store: SqlStore) -> int:
    if not Path(args.file).is_file():
        raise CliError(f"db import-archive: no archive file {args.file!r}")
    try:
        report = await import_archive(store, args.file)
    except ArchiveFormatError as exc:
        raise CliError(f"db import-archive: {exc}") from exc
    if report.refused:
        lines = [f"refused {run_id}: {why}" for run_id, why in report.refused.items()]
        lines.append(
            f"nothing imported: {len(report.refused)} runs of {args.file} do not verify (see "
            f"abstractruntime ledger verify --file {args.file})"
        )
    else:
        lines = [
            f"imported {len(report.imported)} runs ({report.records} ledger records, "
            f"{report.snapshots} snapshots, {report.artifacts} artifacts), skipped "
            f"{len(report.skipped)} already in the database"
        ]
        lines += [f"skipped {run_id}: already in the database" for run_id in report.skipped]
    emit(args, report.to_dict(), "\n".join(lines))
    return EXIT_OK if report.ok else EXIT_BROKEN


RUNS_ACTIONS = {"export": export, "purge": purge}
DB_ACTIONS = {"import-archive": import_file}


def _selection(parser: Parser) -> None:
    parser.add_argument(
        "--older-than",
        type=duration_s,
        required=True,
        metavar="DURATION",
        help="runs that ended at least this long ago (30d, 12h, 1h30m)",
    )
    parser.add_argument(
        "--status",
        action="append",
        choices=_STATUSES,
        help="only runs of this finished status (repeat for more; default: all three)",
    )
    parser.add_argument(
        "--batch", type=positive_int, default=1000, metavar="N", help="runs per transaction"
    )


def configure_runs(actions: Subparsers, common: Parser) -> None:
    """Add ``runs export`` and ``runs purge``."""
    exporting = actions.add_parser(
        "export",
        help="write finished runs (whole run trees) with their ledgers to a JSON-lines archive",
        parents=[common],
    )
    _selection(exporting)
    exporting.add_argument("--output", metavar="FILE", help="the archive file (default: stdout)")
    purging = actions.add_parser(
        "purge",
        help="delete finished runs with their ledgers, snapshots and artifacts, whole run "
        "trees at a time",
        parents=[common],
    )
    _selection(purging)
    purging.add_argument(
        "--export",
        metavar="FILE",
        help="first write the runs to this archive; then delete only the runs written",
    )
    purging.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
    )
    purging.add_argument(
        "--pause-ratio",
        type=non_negative_float,
        default=1.0,
        metavar="R",
        help="after each transaction, pause R times as long as it took, so running workers' "
        "steps keep their latency (default 1: within 2x of idle on SQLite; 0: full speed)",
    )


def configure_db(actions: Subparsers, common: Parser) -> None:
    """Add ``db import-archive``."""
    importing = actions.add_parser(
        "import-archive",
        help="restore the runs of an archive (runs export), verifying every chain first; runs "
        "already in the database are skipped",
        parents=[common],
    )
    importing.add_argument("file", metavar="FILE")


def configure_ledger_verify(verified: Parser) -> None:
    """Add ``--file`` to ``ledger verify``."""
    verified.add_argument(
        "--file", metavar="ARCHIVE", help="verify every chain of an archive, offline"
    )
