"""``abstractruntime worker --app MODULE:ATTR``: a scheduler process, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ..app import load_app
from ..core.config import RuntimeConfig
from ..scheduler import create_scheduled_runtime
from ..storage.sql import SqlStore
from ..storage.sql.urls import mask_url
from . import observe
from .base import (
    APP_HELP,
    EXIT_OK,
    Parser,
    Subparsers,
    non_negative_float,
    positive_float,
    positive_int,
)
from .migrate import describe_versions


async def run_worker(args: argparse.Namespace, store: SqlStore) -> int:
    app = await load_app(args.app)
    registry = app.workflows
    stop_telemetry = observe.setup(args)  # --log-format, --otel
    if args.verbose:  # ours only: the drivers' DEBUG lines (aiosqlite: each call) are noise
        logging.getLogger("abstractruntime").setLevel(logging.DEBUG)
    log = logging.getLogger("abstractruntime.worker")
    await store.check()  # fail fast on an unreachable or outdated database
    sr = await create_scheduled_runtime(
        store=store,
        workflows=registry,
        poll_interval_s=args.poll_interval,
        lease_s=args.lease,
        max_concurrency=args.max_concurrency,
        config=RuntimeConfig(lease_s=args.lease, limits=app.limits),
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
        describe_versions(registry),
        args.poll_interval,
        args.lease,
        args.max_concurrency,
    )
    await stop.wait()
    log.info("stopping: %d runs in flight get %.0fs to finish", sr.scheduler.inflight, args.grace)
    await sr.stop(grace_s=args.grace)
    stats = sr.stats
    log.info(
        "stopped: %d runs completed, %d failed (as committed); %d drives, %d driving errors "
        "(retried), %d poll cycles",
        stats.ended_completed,
        stats.ended_failed,
        stats.runs_resumed,
        stats.runs_failed,
        stats.poll_cycles,
    )
    stop_telemetry()
    return EXIT_OK


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run a scheduler process for the workflows of an app's registry",
        parents=[common],
    )
    worker.set_defaults(handler=run_worker)
    worker.add_argument("--app", required=True, metavar="MODULE:ATTR", help=APP_HELP)
    worker.add_argument("--poll-interval", type=positive_float, default=1.0, metavar="SECONDS")
    worker.add_argument("--max-concurrency", type=positive_int, default=100, metavar="N")
    worker.add_argument(
        "--lease",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long a dead worker's runs stay blocked before others take them over",
    )
    worker.add_argument(
        "--grace",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long runs in flight may finish before they are released",
    )
    worker.add_argument("-v", "--verbose", action="store_true", help="log every run")
    observe.add_arguments(worker)
