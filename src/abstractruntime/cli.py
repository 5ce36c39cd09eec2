"""The ``abstractruntime`` command line: operate a database of runs.

    abstractruntime [--database-url URL] [--json] COMMAND ...

Every command also accepts ``--database-url`` and ``--json`` after its own name. The URL comes
from the option, else ``$ABSTRACTRUNTIME_DATABASE_URL``, else the embedded SQLite file
``./abstractruntime.db``. Human output is aligned tables; ``--json`` prints JSON on stdout. Long
operations show their progress on stderr when it is a terminal.

Exit status: 0 done; 1 a ledger chain is broken (``ledger verify``); 2 a user or database error,
printed as one line (passwords masked), never a traceback; 3 an unexpected error (one line too;
``ABSTRACTRUNTIME_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, NoReturn, TextIO

from .app import APP_FORMS, load_app
from .core.ledger import verify_ledger_chain
from .core.models import RunState, RunStatus
from .core.runtime import Runtime
from .core.snapshot import Snapshot
from .demo import DEMO_WORKFLOW, WORKFLOW_ID
from .errors import AbstractRuntimeError, SnapshotNotFoundError
from .provenance import verify_all, verify_run
from .storage.sql import SqlStore
from .storage.sql.urls import DEFAULT_DATABASE_URL, mask_url

URL_ENV = "ABSTRACTRUNTIME_DATABASE_URL"
DEBUG_ENV = "ABSTRACTRUNTIME_DEBUG"

EXIT_OK, EXIT_BROKEN, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


class CliError(Exception):
    """A user mistake: printed as one line, exit status 2."""


# -- arguments ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common_options(*, in_subcommand: bool) -> _Parser:
    """``--database-url`` and ``--json``, accepted before the command and after it.

    In a subcommand they default to "not given" (SUPPRESS), so that ``--json runs list`` and
    ``runs list --json`` both work without one overwriting the other.
    """
    options = _Parser(add_help=False)
    options.add_argument(
        "--database-url",
        metavar="URL",
        default=argparse.SUPPRESS
        if in_subcommand
        else os.environ.get(URL_ENV, DEFAULT_DATABASE_URL),
        help=f"database URL (default: ${URL_ENV} or {DEFAULT_DATABASE_URL})",
    )
    options.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if in_subcommand else False,
        help="machine-readable output (JSON on stdout)",
    )
    return options


def _parser() -> argparse.ArgumentParser:
    common = _common_options(in_subcommand=True)
    parser = _Parser(
        prog="abstractruntime",
        description="Durable workflow runs: operate the database.",
        parents=[_common_options(in_subcommand=False)],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def group(name: str, help: str) -> argparse._SubParsersAction[_Parser]:
        sub = commands.add_parser(name, help=help, parents=[common])
        return sub.add_subparsers(dest="action", required=True, metavar="ACTION")

    db = group("db", "schema migrations")
    db.add_parser("upgrade", help="migrate to the newest revision", parents=[common])
    db.add_parser("current", help="print the database's revision", parents=[common])
    down = db.add_parser(
        "downgrade", help="migrate down to REV ('base' drops every table)", parents=[common]
    )
    down.add_argument("revision", metavar="REV")

    run_cmds = group("runs", "list, inspect, cancel and answer runs")
    listing = run_cmds.add_parser(
        "list", help="runs, most recently updated first", parents=[common]
    )
    listing.add_argument("--status", choices=[s.value for s in RunStatus])
    listing.add_argument("--workflow", metavar="WORKFLOW_ID")
    listing.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    show = run_cmds.add_parser("show", help="a run's state", parents=[common])
    show.add_argument("run_id", metavar="RUN_ID")
    cancel = run_cmds.add_parser(
        "cancel", help="cancel a run that is not finished", parents=[common]
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--reason")
    respond = run_cmds.add_parser(
        "respond", help="answer a waiting run and drive it on", parents=[common]
    )
    respond.add_argument("run_id", metavar="RUN_ID")
    respond.add_argument("--payload", required=True, metavar="JSON", help="a JSON object")
    respond.add_argument("--app", required=True, metavar="MODULE:ATTR", help=_APP_HELP)

    ledger = group("ledger", "show and verify hash-chained ledgers")
    ledger_show = ledger.add_parser("show", help="a run's ledger, oldest first", parents=[common])
    ledger_show.add_argument("run_id", metavar="RUN_ID")
    verify = ledger.add_parser(
        "verify",
        help="verify hash chains (exit status 1 when one is broken)",
        parents=[common],
    )
    verify.add_argument("run_id", nargs="?", metavar="RUN_ID")
    verify.add_argument("--all", action="store_true", help="every run in the database")

    snapshot = group("snapshot", "named copies of run states: create, list, restore, fork")
    create = snapshot.add_parser("create", help="snapshot a run as it is now", parents=[common])
    create.add_argument("run_id", metavar="RUN_ID")
    create.add_argument("--name", required=True)
    create.add_argument("--description")
    create.add_argument("--tag", action="append", default=[], metavar="TAG", help="repeatable")
    snap_list = snapshot.add_parser("list", help="snapshots, newest first", parents=[common])
    snap_list.add_argument("--query", metavar="TEXT", help="in the name or description")
    snap_list.add_argument("--tag", metavar="TAG")
    snap_list.add_argument("--run", metavar="RUN_ID", dest="run_id")
    snap_list.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    for name, text in (
        ("show", "a snapshot with its run state"),
        ("delete", "delete a snapshot"),
        ("restore", "make the snapshot's state its run's current state"),
        ("fork", "start a new run from the snapshot's state"),
    ):
        sub = snapshot.add_parser(name, help=text, parents=[common])
        sub.add_argument("snapshot_id", metavar="SNAPSHOT_ID")

    worker = commands.add_parser(
        "worker",
        help="run a scheduler process for the workflows of an app's registry",
        parents=[common],
    )
    worker.add_argument("--app", required=True, metavar="MODULE:ATTR", help=_APP_HELP)
    worker.add_argument("--poll-interval", type=float, default=1.0, metavar="SECONDS")
    worker.add_argument("--max-concurrency", type=int, default=100, metavar="N")
    worker.add_argument(
        "--lease",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a dead worker's runs stay blocked before others take them over",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long runs in flight may finish before they are released",
    )
    worker.add_argument("-v", "--verbose", action="store_true", help="log every run")

    demo = commands.add_parser(
        "demo", help="an approval that waits for you, across process restarts", parents=[common]
    )
    demo.add_argument("--answer", help="answer the waiting approval (e.g. yes or no)")
    return parser


_APP_HELP = f"where the workflows are: {APP_FORMS}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


# -- output ------------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(_json(data, indent=2) if args.json else text)


def _json(data: Any, indent: int | None = None) -> str:
    return json.dumps(data, indent=indent, default=str, ensure_ascii=False)


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return _when(value)
    return str(value).replace("\n", " ")


def _format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    out = []
    last = len(cells) - 1
    for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        if index == last:  # nothing to its right to push out of line
            out.append(cell)
        elif len(cell) > width:  # only rows after the sample can be wider: keep the columns
            out.append(cell[: max(width - 1, 0)] + "…")
        else:
            out.append(cell.ljust(width))
    return "  ".join(out).rstrip()


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as aligned columns under their headers."""
    cells = [[_cell(c) for c in row] for row in rows]
    return "\n".join(_table_lines(headers, cells, _widths(headers, cells)))


def _widths(headers: Sequence[str], rows: list[list[str]]) -> list[int]:
    return [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]


def _table_lines(headers: Sequence[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    return [_format_row(list(headers), widths)] + [_format_row(row, widths) for row in rows]


async def _stream_table(
    headers: Sequence[str], rows: AsyncIterator[Sequence[Any]], out: TextIO, sample: int = 500
) -> int:
    """Print rows as they come: the first ``sample`` rows set the column widths, so a table of
    any length is aligned and never held in memory. Returns the number of rows."""
    first: list[list[str]] = []
    count = 0
    async for row in rows:
        count += 1
        if len(first) < sample:
            first.append([_cell(c) for c in row])
            if len(first) == sample:
                widths = _print_sample(headers, first, out)
            continue
        out.write(_format_row([_cell(c) for c in row], widths) + "\n")
    if len(first) < sample:
        _print_sample(headers, first, out)
    return count


def _print_sample(headers: Sequence[str], rows: list[list[str]], out: TextIO) -> list[int]:
    widths = _widths(headers, rows)
    out.write("\n".join(_table_lines(headers, rows, widths)) + "\n")
    return widths


class Progress:
    """One status line on stderr, only when stderr is a terminal; rewritten in place, at most
    every ``interval`` seconds, and erased by ``clear``."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- db ----------------------------------------------------------------------------------------


async def _db(args: argparse.Namespace, store: SqlStore) -> int:
    if args.action == "upgrade":
        await store.upgrade()
        revision = await store.current_revision()
        _emit(args, {"revision": revision}, f"database is at revision {revision}")
    elif args.action == "current":
        revision = await store.current_revision()
        _emit(args, {"revision": revision}, revision or "(no abstractruntime tables)")
    else:
        await store.downgrade(args.revision)
        revision = await store.current_revision()
        _emit(args, {"revision": revision}, f"database is at revision {revision or 'base'}")
    return EXIT_OK


# -- runs --------------------------------------------------------------------------------------

_RUN_HEADERS = ("RUN_ID", "WORKFLOW", "STATUS", "NODE", "WAITING_ON", "UPDATED")


def _run_row(state: RunState) -> list[Any]:
    waiting = state.waiting
    on = None
    if waiting is not None:
        if waiting.until is not None:
            on = f"until {_when(waiting.until)}"
        else:
            on = waiting.wait_key or waiting.reason.value
    return [
        state.run_id,
        state.workflow_id,
        state.status.value,
        state.current_node,
        on,
        state.updated_at,
    ]


def _describe_state(state: RunState) -> str:
    text = f"{state.status.value}"
    if state.status is RunStatus.WAITING and state.waiting is not None:
        text += f" ({state.waiting.reason.value}) at {state.current_node}"
        if state.waiting.prompt:
            text += f": {state.waiting.prompt}"
    elif state.status is RunStatus.RUNNING:
        text += f" at {state.current_node}"
    elif state.status is RunStatus.COMPLETED:
        text += f", output {_json(state.output)}"
    elif state.error:
        text += f": {state.error}"
    return text


async def _runs(args: argparse.Namespace, store: SqlStore) -> int:
    if args.action == "list":
        progress = Progress()
        progress.update("reading runs…", force=True)
        try:
            states = await store.list_runs(
                status=RunStatus(args.status) if args.status else None,
                workflow_id=args.workflow,
                limit=args.limit,
            )
        finally:
            progress.clear()
        _emit(
            args,
            [state.to_dict() for state in states],
            _table(_RUN_HEADERS, (_run_row(s) for s in states)) if states else "(no runs)",
        )
        return EXIT_OK
    if args.action == "show":
        handle = await store.load_run(args.run_id)
        state = handle.state
        data = {"state": state.to_dict(), "ledger": {"count": handle.seq, "head": handle.head}}
        _emit(args, data, _show_run(state, handle.seq, handle.head))
        return EXIT_OK
    if args.action == "cancel":
        before = (await store.load_run(args.run_id)).state
        state = await Runtime(store=store).cancel_run(args.run_id, reason=args.reason)
        text = (
            f"run {state.run_id} is already {state.status.value}; nothing to cancel"
            if before.status.is_terminal
            else f"run {state.run_id} cancelled"
        )
        _emit(args, state.to_dict(), text)
        return EXIT_OK
    return await _respond(args, store)


def _show_run(state: RunState, count: int, head: str | None) -> str:
    waiting = state.waiting
    fields: list[tuple[str, Any]] = [
        ("run_id", state.run_id),
        ("workflow", state.workflow_id),
        ("status", state.status.value),
        ("node", state.current_node),
        ("created", state.created_at),
        ("updated", state.updated_at),
        ("parent", state.parent_run_id),
        ("actor", state.actor_id),
        ("session", state.session_id),
    ]
    if waiting is not None:
        fields += [
            ("waiting", waiting.reason.value),
            ("wait_key", waiting.wait_key),
            ("until", waiting.until),
            ("prompt", waiting.prompt),
            ("choices", _json(waiting.choices) if waiting.choices else None),
        ]
    if state.output is not None:
        fields.append(("output", _json(state.output)))
    if state.error:
        fields.append(("error", state.error))
    fields += [("vars", _json(state.vars)), ("ledger", f"{count} records, head {head or '-'}")]
    width = max(len(name) for name, _ in fields)
    return "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in fields)


def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CliError(f"--payload must be a JSON object, got {type(payload).__name__}")
    return payload


async def _respond(args: argparse.Namespace, store: SqlStore) -> int:
    payload = _payload(args.payload)
    app = await load_app(args.app)
    registry = app.workflows
    rt = Runtime(store=store, workflow_registry=registry, **app.runtime_kwargs())
    try:
        state = await rt.get_state(args.run_id)
        if state.status is not RunStatus.WAITING or state.waiting is None:
            raise CliError(f"run {args.run_id} is {state.status.value}, not waiting")
        workflow = registry.get(state.workflow_id)
        if workflow is None:
            raise CliError(
                f"run {args.run_id} belongs to workflow {state.workflow_id!r}, which --app "
                f"{args.app} does not have (it has: {', '.join(registry.ids()) or 'none'})"
            )
        state = await rt.resume(
            workflow=workflow, run_id=args.run_id, wait_key=state.waiting.wait_key, payload=payload
        )
    finally:
        await rt.aclose()
    _emit(args, state.to_dict(), f"run {state.run_id}: {_describe_state(state)}")
    return EXIT_OK


# -- ledger ------------------------------------------------------------------------------------

_LEDGER_HEADERS = ("#", "NODE", "STATUS", "ATTEMPT", "ENDED", "STEP_ID", "RECORD_HASH", "PREV_HASH")


async def _ledger(args: argparse.Namespace, store: SqlStore) -> int:
    if args.action == "show":
        await store.load_run(args.run_id)  # an unknown run is an error before any output
        records = store.iter_ledger(args.run_id)
        async with contextlib.aclosing(records):
            if args.json:
                await _stream_json(records, sys.stdout)
            else:
                count = await _stream_table(_LEDGER_HEADERS, _ledger_rows(records), sys.stdout)
                if not count:
                    print("(empty ledger)")
        return EXIT_OK
    if args.all == (args.run_id is not None):
        raise CliError("ledger verify needs a RUN_ID or --all (not both)")
    if args.all:
        return await _verify_all(args, store)
    progress = Progress()
    try:
        report = await verify_run(
            store,
            args.run_id,
            progress=lambda records: progress.update(f"verified {records:,} records…"),
        )
    finally:
        progress.clear()
    _emit(args, report, _report_text(report))
    return EXIT_OK if report["ok"] else EXIT_BROKEN


async def _ledger_rows(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[list[Any]]:
    index = 0
    async for record in records:
        yield [
            index,
            record.get("node_id"),
            record.get("status"),
            record.get("attempt"),
            _when_text(record.get("ended_at") or record.get("started_at")),
            record.get("step_id"),
            (record.get("record_hash") or "")[:16],
            (record.get("prev_hash") or "")[:16],
        ]
        index += 1


def _when_text(value: Any) -> str:
    if not isinstance(value, str):
        return "-"
    try:
        return _when(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return value


async def _stream_json(items: AsyncIterator[Any], out: TextIO) -> None:
    """A JSON array written as the items come (a ledger may not fit in memory)."""
    out.write("[")
    first = True
    async for item in items:
        out.write(("\n  " if first else ",\n  ") + _json(item))
        first = False
    out.write("\n]\n" if not first else "]\n")


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
    progress = Progress()

    def show(verified: int) -> None:
        progress.update(f"verified {runs:,} runs, {verified:,} records, {len(broken)} broken…")

    try:
        async with contextlib.aclosing(verify_all(store, progress=show)) as reports:
            async for report in reports:
                runs += 1
                records += report["count"]
                if not report["ok"]:
                    broken.append(report)
                    progress.clear()
                    if not args.json:  # as they are found: a long scan tells early
                        print(_broken_line(report), flush=True)
                show(records)
    finally:
        progress.clear()
    summary = {"ok": not broken, "runs": runs, "records": records, "broken": broken}
    if args.json:
        print(_json(summary, indent=2))
    elif broken:
        print(f"{len(broken)} of {runs} runs have a broken ledger ({records} records verified)")
    else:
        print(f"all {runs} ledgers intact ({records} records verified)")
    return EXIT_BROKEN if broken else EXIT_OK


def _broken_line(report: dict[str, Any]) -> str:
    error = report["errors"][0]["error"] if report["errors"] else "broken"
    return f"run {report['run_id']}: chain BROKEN at index {report['first_bad_index']}: {error}"


# -- snapshots ---------------------------------------------------------------------------------

_SNAPSHOT_HEADERS = ("SNAPSHOT_ID", "RUN_ID", "NAME", "TAGS", "STATUS", "CREATED")


def _snapshot_summary(snap: Snapshot) -> dict[str, Any]:
    data = snap.to_dict()
    del data["run_state"]  # listings stay small; `snapshot show` has it
    data["status"] = snap.run_state.get("status")
    data["node"] = snap.run_state.get("current_node")
    return data


async def _snapshot(args: argparse.Namespace, store: SqlStore) -> int:
    if args.action == "create":
        handle = await store.load_run(args.run_id)
        tail = await store.ledger_tail(args.run_id)
        snap = Snapshot.from_run(
            run=handle.state,
            name=args.name,
            description=args.description,
            tags=args.tag,
            step_id=tail["step_id"] if tail else None,
        )
        await store.snapshots.save(snap)
        _emit(
            args,
            snap.to_dict(),
            f"snapshot {snap.snapshot_id} of run {snap.run_id} ({_describe_state(handle.state)})",
        )
        return EXIT_OK
    if args.action == "list":
        progress = Progress()
        progress.update("reading snapshots…", force=True)
        try:
            snaps = await store.snapshots.list(
                run_id=args.run_id, tag=args.tag, query=args.query, limit=args.limit
            )
        finally:
            progress.clear()
        rows = (
            [
                s.snapshot_id,
                s.run_id,
                s.name,
                ", ".join(s.tags),
                s.run_state.get("status"),
                s.created_at,
            ]
            for s in snaps
        )
        _emit(
            args,
            [_snapshot_summary(s) for s in snaps],
            _table(_SNAPSHOT_HEADERS, rows) if snaps else "(no snapshots)",
        )
        return EXIT_OK
    rt = Runtime(store=store)
    if args.action == "restore":
        state = await rt.restore_snapshot(args.snapshot_id)
        _emit(
            args,
            state.to_dict(),
            f"run {state.run_id} restored to snapshot {args.snapshot_id}: {_describe_state(state)}",
        )
        return EXIT_OK
    if args.action == "fork":
        run_id = await rt.fork_snapshot(args.snapshot_id)
        state = await rt.get_state(run_id)
        _emit(
            args,
            state.to_dict(),
            f"run {run_id} forked from snapshot {args.snapshot_id} of run "
            f"{state.parent_run_id}: {_describe_state(state)}",
        )
        return EXIT_OK
    found = await store.snapshots.load(args.snapshot_id)
    if found is None:
        raise SnapshotNotFoundError(args.snapshot_id)
    if args.action == "delete":
        await store.snapshots.delete(args.snapshot_id)
        _emit(args, {"deleted": args.snapshot_id}, f"snapshot {args.snapshot_id} deleted")
        return EXIT_OK
    fields = [
        ("snapshot_id", found.snapshot_id),
        ("name", found.name),
        ("description", found.description),
        ("tags", ", ".join(found.tags)),
        ("run_id", found.run_id),
        ("step_id", found.step_id),
        ("created", found.created_at),
        ("updated", found.updated_at),
        ("state", _describe_state(found.state)),
        ("vars", _json(found.state.vars)),
    ]
    width = max(len(name) for name, _ in fields)
    text = "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in fields)
    _emit(args, found.to_dict(), text)
    return EXIT_OK


# -- demo and worker ---------------------------------------------------------------------------


async def _demo(args: argparse.Namespace, store: SqlStore) -> int:
    rt = Runtime(store=store)
    waiting = await store.list_runs(status=RunStatus.WAITING, workflow_id=WORKFLOW_ID, limit=1)
    if not waiting:
        run_id, state = await rt.run(DEMO_WORKFLOW, vars={"employee": "ada", "amount": 420})
        assert state.waiting is not None
        _emit(
            args,
            {"run_id": run_id, "status": state.status.value, "prompt": state.waiting.prompt},
            f"Started run {run_id}; it is now {state.status} and has left memory.\n"
            f"  Question: {state.waiting.prompt} {state.waiting.choices}\n"
            f"Answer it from a new process: abstractruntime demo --answer yes",
        )
        return EXIT_OK
    state = waiting[0]
    if args.answer is None:
        assert state.waiting is not None
        _emit(
            args,
            {"run_id": state.run_id, "status": state.status.value, "prompt": state.waiting.prompt},
            f"Run {state.run_id} is still waiting: {state.waiting.prompt}\n"
            "Answer it with: abstractruntime demo --answer yes",
        )
        return EXIT_OK
    assert state.waiting is not None
    state = await rt.resume(
        workflow=DEMO_WORKFLOW,
        run_id=state.run_id,
        wait_key=state.waiting.wait_key,
        payload={"answer": args.answer},
    )
    ledger = await rt.get_ledger(state.run_id)
    report = verify_ledger_chain(ledger)
    lines = [f"Run {state.run_id} resumed in this new process: {state.status}, {state.output}"]
    lines.append(f"{'#':>3}  {'node':<8} {'status':<10} {'record_hash':<16} prev_hash")
    for index, record in enumerate(ledger):
        lines.append(
            f"{index:>3}  {record['node_id']:<8} {record['status']:<10} "
            f"{record['record_hash'][:16]:<16} {(record['prev_hash'] or '-')[:16]}"
        )
    verdict = "verified" if report["ok"] else f"BROKEN at index {report['first_bad_index']}"
    lines.append(f"Ledger chain {verdict}: {report['count']} records, head {report['head_hash']}")
    _emit(
        args,
        {"run_id": state.run_id, "state": state.to_dict(), "ledger": ledger, "verify": report},
        "\n".join(lines),
    )
    return EXIT_OK if report["ok"] else EXIT_BROKEN


async def _worker(args: argparse.Namespace, store: SqlStore) -> int:
    from .scheduler import create_scheduled_runtime

    app = await load_app(args.app)
    registry = app.workflows
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("abstractruntime.worker")
    await store.check()  # fail fast on an unreachable or outdated database
    sr = await create_scheduled_runtime(
        store=store,
        workflows=registry,
        poll_interval_s=args.poll_interval,
        lease_s=args.lease,
        max_concurrency=args.max_concurrency,
        **app.runtime_kwargs(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "worker %s on %s: workflows %s, poll %.2fs, lease %.0fs, up to %d runs at once",
        sr.runtime.config.owner,
        mask_url(args.database_url),
        ", ".join(registry.ids()),
        args.poll_interval,
        args.lease,
        args.max_concurrency,
    )
    await stop.wait()
    log.info("stopping: %d runs in flight get %.0fs to finish", sr.scheduler.inflight, args.grace)
    await sr.stop(grace_s=args.grace)
    stats = sr.stats
    log.info(
        "stopped: %d runs driven, %d failed, %d poll cycles",
        stats.runs_resumed,
        stats.runs_failed,
        stats.poll_cycles,
    )
    return EXIT_OK


# -- main --------------------------------------------------------------------------------------

_COMMANDS = {
    "db": _db,
    "runs": _runs,
    "ledger": _ledger,
    "snapshot": _snapshot,
    "worker": _worker,
    "demo": _demo,
}


async def _main(args: argparse.Namespace) -> int:
    if args.command == "runs" and args.action == "respond":
        _payload(args.payload)  # a malformed payload fails before the database is touched
    store = SqlStore(args.database_url)
    try:
        return await _COMMANDS[args.command](args, store)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    url = args.database_url

    def fail(message: str, status: int) -> int:
        message = " ".join(message.replace(url, mask_url(url)).split())  # one line
        print(f"abstractruntime: error: {message}", file=sys.stderr)
        return status

    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `abstractruntime ledger show X | head`: not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (AbstractRuntimeError, CliError, ValueError, KeyError) as exc:
        return fail(str(exc), EXIT_USAGE)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        return fail(
            f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
            EXIT_BUG,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
