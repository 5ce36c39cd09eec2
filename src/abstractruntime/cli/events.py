"""``abstractruntime events emit | send``: events for the runs waiting on a key, messages to one.

The command line knows no workflows unless ``--app`` names them (as ``runs respond`` does):
with ``--app`` the runs it resumes are driven here; without, the event (which then needs
``--buffer``) or the message is stored and the runs waiting on it are made due, so that a
worker (``abstractruntime worker --app ...``) that knows their workflow delivers it.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from ..app import load_app
from ..core.runtime import Runtime
from ..storage.sql import SqlStore
from .base import APP_HELP, EXIT_OK, CliError, Parser, Subparsers, add_group, duration_s
from .output import describe_state, emit


def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"the payload is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CliError(f"the payload must be a JSON object, got {type(payload).__name__}")
    return payload


async def _runtime(args: argparse.Namespace, store: SqlStore) -> Runtime:
    if args.app is None:
        return Runtime(store=store)
    app = await load_app(args.app)
    return Runtime(store=store, workflow_registry=app.workflows, **app.runtime_kwargs())


async def emit_event(args: argparse.Namespace, store: SqlStore) -> int:
    payload = _payload(args.payload)
    if args.app is None and not args.buffer:
        raise CliError(
            "without --app no run can be resumed here: give --buffer (e.g. --buffer 1h) so "
            "that a worker delivers the event to the runs waiting on it, or --app to resume "
            "them here"
        )
    rt = await _runtime(args, store)
    try:
        resumed = await rt.emit_event(args.key, payload, buffer_s=args.buffer)
    finally:
        await rt.aclose()
    text = f"event {args.key}: resumed {len(resumed)} run(s)"
    if args.buffer:
        text += f", kept for {timedelta(seconds=args.buffer)} for the runs that wait on it later"
        if args.app is None:
            text += " (runs waiting now are left to a worker)"
    emit(args, {"key": args.key, "resumed": [s.to_dict() for s in resumed]}, text)
    return EXIT_OK


async def send(args: argparse.Namespace, store: SqlStore) -> int:
    payload = _payload(args.payload)
    rt = await _runtime(args, store)
    try:
        state = await rt.send(args.run_id, args.key, payload)
    finally:
        await rt.aclose()
    emit(args, state.to_dict(), f"message sent to run {state.run_id}: {describe_state(state)}")
    return EXIT_OK


ACTIONS = {"emit": emit_event, "send": send}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(
        subparsers, common, "events", "emit events and send messages to runs", ACTIONS
    )
    emitted = actions.add_parser(
        "emit",
        help="resume the runs waiting on KEY (and, buffered, those that wait later)",
        parents=[common],
    )
    emitted.add_argument("key", metavar="KEY")
    emitted.add_argument("payload", metavar="JSON", help="a JSON object")
    emitted.add_argument(
        "--buffer",
        type=duration_s,
        default=0.0,
        metavar="DURATION",
        help="keep the event this long for runs that wait on KEY later (e.g. 1h; default: no)",
    )
    emitted.add_argument("--app", metavar="MODULE:ATTR", help=APP_HELP)
    sent = actions.add_parser(
        "send", help="a message to one run, delivered when it waits on KEY", parents=[common]
    )
    sent.add_argument("run_id", metavar="RUN_ID")
    sent.add_argument("key", metavar="KEY")
    sent.add_argument("payload", metavar="JSON", help="a JSON object")
    sent.add_argument("--app", metavar="MODULE:ATTR", help=APP_HELP)
