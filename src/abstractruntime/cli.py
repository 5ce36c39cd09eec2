"""The ``abstractruntime`` command line.

Errors print one line on stderr and exit with status 2 (1 is kept for "a ledger chain is broken");
no tracebacks for user mistakes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .core.ledger import verify_ledger_chain
from .core.models import RunStatus
from .core.registry import WorkflowRegistry
from .core.runtime import Runtime
from .core.spec import WorkflowSpec
from .demo import DEMO_WORKFLOW, WORKFLOW_ID
from .errors import AbstractRuntimeError
from .storage.sql import SqlStore
from .storage.sql.urls import DEFAULT_DATABASE_URL, mask_url

URL_ENV = "ABSTRACTRUNTIME_DATABASE_URL"


class CliError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abstractruntime", description="Durable workflow runs: operate the database."
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(URL_ENV, DEFAULT_DATABASE_URL),
        help=f"database URL (default: ${URL_ENV} or {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="schema migrations").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="migrate to the newest revision")
    db.add_parser("current", help="print the database's revision")
    down = db.add_parser("downgrade", help="migrate down to REV ('base' drops every table)")
    down.add_argument("revision", metavar="REV")

    worker = commands.add_parser(
        "worker", help="run a scheduler process for the workflows of an app's registry"
    )
    worker.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="where the workflows are: a WorkflowRegistry, a list of WorkflowSpec, or a "
        "function returning one (e.g. myapp.flows:registry)",
    )
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
        "demo", help="an approval that waits for you, across process restarts"
    )
    demo.add_argument("--answer", help="answer the waiting approval (e.g. yes or no)")
    return parser


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


async def _db(args: argparse.Namespace, store: SqlStore) -> int:
    if args.db_command == "upgrade":
        await store.upgrade()
        revision = await store.current_revision()
        _print(args, {"revision": revision}, f"database is at revision {revision}")
    elif args.db_command == "current":
        revision = await store.current_revision()
        _print(args, {"revision": revision}, revision or "(no abstractruntime tables)")
    else:
        await store.downgrade(args.revision)
        revision = await store.current_revision()
        _print(args, {"revision": revision}, f"database is at revision {revision or 'base'}")
    return 0


async def _demo(args: argparse.Namespace, store: SqlStore) -> int:
    rt = Runtime(store=store)
    waiting = await store.list_runs(status=RunStatus.WAITING, workflow_id=WORKFLOW_ID, limit=1)
    if not waiting:
        run_id, state = await rt.run(DEMO_WORKFLOW, vars={"employee": "ada", "amount": 420})
        assert state.waiting is not None
        _print(
            args,
            {"run_id": run_id, "status": state.status.value, "prompt": state.waiting.prompt},
            f"Started run {run_id}; it is now {state.status} and has left memory.\n"
            f"  Question: {state.waiting.prompt} {state.waiting.choices}\n"
            f"Answer it from a new process: abstractruntime demo --answer yes",
        )
        return 0
    state = waiting[0]
    if args.answer is None:
        assert state.waiting is not None
        _print(
            args,
            {"run_id": state.run_id, "status": state.status.value, "prompt": state.waiting.prompt},
            f"Run {state.run_id} is still waiting: {state.waiting.prompt}\n"
            "Answer it with: abstractruntime demo --answer yes",
        )
        return 0
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
    _print(
        args,
        {"run_id": state.run_id, "state": state.to_dict(), "ledger": ledger, "verify": report},
        "\n".join(lines),
    )
    return 0 if report["ok"] else 1


def load_app(spec: str) -> WorkflowRegistry:
    """Import ``module:attr`` and make a ``WorkflowRegistry`` of it."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"--app {spec!r}: expected MODULE:ATTR, e.g. myapp.flows:registry")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: the app may live in the current dir
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise CliError(f"--app {spec!r}: module {module_name!r} has no {attr!r}") from None
    if callable(target) and not isinstance(target, (WorkflowRegistry, WorkflowSpec)):
        target = target()
    if isinstance(target, WorkflowRegistry):
        return target
    if isinstance(target, WorkflowSpec):
        return WorkflowRegistry([target])
    try:
        return WorkflowRegistry(list(target))
    except TypeError as exc:
        raise CliError(
            f"--app {spec!r} is a {type(target).__name__}, not a WorkflowRegistry "
            "or a list of WorkflowSpec"
        ) from exc


async def _worker(args: argparse.Namespace, store: SqlStore) -> int:
    from .scheduler import create_scheduled_runtime

    registry = load_app(args.app)
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
    return 0


async def _main(args: argparse.Namespace) -> int:
    store = SqlStore(args.database_url)
    try:
        if args.command == "db":
            return await _db(args, store)
        if args.command == "worker":
            return await _worker(args, store)
        return await _demo(args, store)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except (AbstractRuntimeError, CliError, ValueError, KeyError) as exc:
        message = str(exc).replace(args.database_url, mask_url(args.database_url))
        print(f"abstractruntime: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
