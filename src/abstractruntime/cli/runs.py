"""``abstractruntime runs list | show | cancel | respond``: inspect, cancel and answer runs
(``runs export | purge``: ``cli/retention.py``)."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from ..app import load_app
from ..core.models import RunState, RunStatus
from ..core.runtime import Runtime
from ..core.serde import utc_now
from ..storage.sql import SqlStore
from . import retention
from .base import (
    APP_HELP,
    EXIT_OK,
    CliError,
    Parser,
    Subparsers,
    add_group,
    duration_s,
    positive_int,
)
from .output import Progress, describe_state, emit, fields, table, to_json, when

_HEADERS = ("RUN_ID", "WORKFLOW", "STATUS", "NODE", "WAITING_ON", "UPDATED")


async def list_runs(args: argparse.Namespace, store: SqlStore) -> int:
    with Progress() as progress:
        progress.update("reading runs…", force=True)
        within = args.overdue_within
        status = RunStatus(args.status) if args.status else None
        states = await store.list_runs(
            # A deadline is a wait's: --overdue-within lists waiting runs unless told otherwise.
            status=RunStatus.WAITING if within is not None and status is None else status,
            workflow_id=args.workflow,
            limit=args.limit,
            deadline_before=None if within is None else utc_now() + timedelta(seconds=within),
        )
    emit(
        args,
        [state.to_dict() for state in states],
        table(_HEADERS, (_row(s) for s in states)) if states else "(no runs)",
    )
    return EXIT_OK


def _row(state: RunState) -> list[Any]:
    waiting = state.waiting
    on = None
    if waiting is not None:
        if waiting.until is not None:
            on = f"until {when(waiting.until)}"
        else:
            on = waiting.wait_key or waiting.reason.value
        if waiting.timeout_at is not None:
            on = f"{on}, timeout {when(waiting.timeout_at)}"
    return [
        state.run_id,
        state.workflow_id,
        state.status.value,
        state.current_node,
        on,
        state.updated_at,
    ]


async def show(args: argparse.Namespace, store: SqlStore) -> int:
    handle = await store.load_run(args.run_id)
    state = handle.state
    data = {"state": state.to_dict(), "ledger": {"count": handle.seq, "head": handle.head}}
    emit(args, data, _show_text(state, handle.seq, handle.head))
    return EXIT_OK


def _show_text(state: RunState, count: int, head: str | None) -> str:
    waiting = state.waiting
    pairs: list[tuple[str, Any]] = [
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
        pairs += [
            ("waiting", waiting.reason.value),
            ("wait_key", waiting.wait_key),
            ("until", waiting.until),
            *(
                [("timeout_at", waiting.timeout_at), ("timeout_node", waiting.timeout_node)]
                if waiting.timeout_at is not None
                else []
            ),
            ("prompt", waiting.prompt),
            ("choices", to_json(waiting.choices) if waiting.choices else None),
        ]
    if state.output is not None:
        pairs.append(("output", to_json(state.output)))
    if state.error:
        pairs.append(("error", state.error))
    pairs += [("vars", to_json(state.vars)), ("ledger", f"{count} records, head {head or '-'}")]
    return fields(pairs)


async def cancel(args: argparse.Namespace, store: SqlStore) -> int:
    before = (await store.load_run(args.run_id)).state
    state = await Runtime(store=store).cancel_run(args.run_id, reason=args.reason)
    text = (
        f"run {state.run_id} is already {state.status.value}; nothing to cancel"
        if before.status.is_terminal
        else f"run {state.run_id} cancelled"
    )
    emit(args, state.to_dict(), text)
    return EXIT_OK


def parse_payload(text: str) -> dict[str, Any]:
    """``--payload``: a JSON object."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CliError(f"--payload must be a JSON object, got {type(payload).__name__}")
    return payload


async def respond(args: argparse.Namespace, store: SqlStore) -> int:
    payload = parse_payload(args.payload)  # a malformed payload fails before the database is read
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
    emit(args, state.to_dict(), f"run {state.run_id}: {describe_state(state)}")
    return EXIT_OK


ACTIONS = {
    "list": list_runs,
    "show": show,
    "cancel": cancel,
    "respond": respond,
    **retention.RUNS_ACTIONS,  # export, purge
}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(
        subparsers, common, "runs", "list, inspect, cancel and answer runs", ACTIONS
    )
    listing = actions.add_parser("list", help="runs, most recently updated first", parents=[common])
    listing.add_argument("--status", choices=[s.value for s in RunStatus])
    listing.add_argument("--workflow", metavar="WORKFLOW_ID")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N")
    listing.add_argument(
        "--overdue-within",
        type=duration_s,
        metavar="DURATION",
        help="only runs whose wait ends (times out, or its wait_until comes) within DURATION "
        "from now or has already passed, earliest first (30s, 15m, 1h, 2d); waiting runs "
        "unless --status says otherwise",
    )
    shown = actions.add_parser("show", help="a run's state", parents=[common])
    shown.add_argument("run_id", metavar="RUN_ID")
    cancelled = actions.add_parser(
        "cancel", help="cancel a run that is not finished", parents=[common]
    )
    cancelled.add_argument("run_id", metavar="RUN_ID")
    cancelled.add_argument("--reason")
    answered = actions.add_parser(
        "respond", help="answer a waiting run and drive it on", parents=[common]
    )
    answered.add_argument("run_id", metavar="RUN_ID")
    answered.add_argument("--payload", required=True, metavar="JSON", help="a JSON object")
    answered.add_argument("--app", required=True, metavar="MODULE:ATTR", help=APP_HELP)
    retention.configure_runs(actions, common)
