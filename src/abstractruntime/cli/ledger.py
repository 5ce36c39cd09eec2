"""``abstractruntime ledger show RUN_ID | verify RUN_ID | verify --all``: hash-chained ledgers."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from ..provenance import verify_all, verify_run
from ..storage.sql import SqlStore
from . import retention
from .base import EXIT_BROKEN, EXIT_OK, CliError, Parser, Subparsers, add_group
from .output import Progress, emit, stream_json, stream_table, to_json, when_text

_HEADERS = ("#", "NODE", "STATUS", "ATTEMPT", "ENDED", "STEP_ID", "RECORD_HASH", "PREV_HASH")


async def show(args: argparse.Namespace, store: SqlStore) -> int:
    await store.load_run(args.run_id)  # an unknown run is an error before any output
    records = store.iter_ledger(args.run_id)
    async with contextlib.aclosing(records):
        if args.json:
            await stream_json(records, sys.stdout)
        else:
            count = await stream_table(_HEADERS, _rows(records), sys.stdout)
            if not count:
                print("(empty ledger)")
    return EXIT_OK


async def _rows(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[list[Any]]:
    index = 0
    async for record in records:
        yield [
            index,
            record.get("node_id"),
            record.get("status"),
            record.get("attempt"),
            when_text(record.get("ended_at") or record.get("started_at")),
            record.get("step_id"),
            (record.get("record_hash") or "")[:16],
            (record.get("prev_hash") or "")[:16],
        ]
        index += 1


async def verify(args: argparse.Namespace, store: SqlStore) -> int:
    if args.file is not None:
        if args.all or args.run_id is not None:
            raise CliError("ledger verify --file takes no RUN_ID and no --all")
        return await retention.verify_file(args)  # offline: the store is never opened
    if args.all == (args.run_id is not None):
        raise CliError("ledger verify needs a RUN_ID or --all (not both), or --file ARCHIVE")
    if args.all:
        return await _verify_all(args, store)
    with Progress() as progress:
        report = await verify_run(
            store,
            args.run_id,
            progress=lambda records: progress.update(f"verified {records:,} records…"),
        )
    emit(args, report, _report_text(report))
    return EXIT_OK if report["ok"] else EXIT_BROKEN


def _report_text(report: dict[str, Any]) -> str:
    run = report["run_id"]
    if report["ok"]:
        return (
            f"run {run}: ledger intact, {report['count']} records, "
            f"head {report['head_hash'] or '-'}"
        )
    lines = [f"run {run}: chain BROKEN at index {report['first_bad_index']}"]
    lines += [f"  index {e['index']}: {e['error']}" for e in report["errors"]]
    if report["errors_omitted"]:
        lines.append(f"  ... and {report['errors_omitted']} more errors")
    return "\n".join(lines)


async def _verify_all(args: argparse.Namespace, store: SqlStore) -> int:
    runs = records = 0
    broken: list[dict[str, Any]] = []
    with Progress() as progress:

        def tell(verified: int) -> None:
            progress.update(f"verified {runs:,} runs, {verified:,} records, {len(broken)} broken…")

        async with contextlib.aclosing(verify_all(store, progress=tell)) as reports:
            async for report in reports:
                runs += 1
                records += report["count"]
                if not report["ok"]:
                    broken.append(report)
                    progress.clear()
                    if not args.json:  # as they are found: a long scan tells early
                        print(_broken_line(report), flush=True)
                tell(records)
    summary = {"ok": not broken, "runs": runs, "records": records, "broken": broken}
    if args.json:
        print(to_json(summary, indent=2))
    elif broken:
        print(f"{len(broken)} of {runs} runs have a broken ledger ({records} records verified)")
    else:
        print(f"all {runs} ledgers intact ({records} records verified)")
    return EXIT_BROKEN if broken else EXIT_OK


def _broken_line(report: dict[str, Any]) -> str:
    error = report["errors"][0]["error"] if report["errors"] else "broken"
    return f"run {report['run_id']}: chain BROKEN at index {report['first_bad_index']}: {error}"


ACTIONS = {"show": show, "verify": verify}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(
        subparsers, common, "ledger", "show and verify hash-chained ledgers", ACTIONS
    )
    shown = actions.add_parser("show", help="a run's ledger, oldest first", parents=[common])
    shown.add_argument("run_id", metavar="RUN_ID")
    verified = actions.add_parser(
        "verify",
        help="verify hash chains (exit status 1 when one is broken)",
        parents=[common],
    )
    verified.add_argument("run_id", nargs="?", metavar="RUN_ID")
    verified.add_argument("--all", action="store_true", help="every run in the database")
    retention.configure_ledger_verify(verified)
