"""``abstractruntime runs list | show | cancel | respond``: inspect, cancel and answer runs
(``runs export | purge``: ``cli/retention.py``)."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from ..app import load_app
from ..core import workers
from ..core.models import RunState, RunStatus
from ..core.runtime import Runtime
from ..core.serde import utc_now
from ..storage.sql import SqlStore
from . import migrate, retention
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

_HEADERS = ("RUN_ID", "WORKFLOW", "VERSION", "STATUS", "NODE", "WAITING_ON", "UPDATED")


async def list_runs(args: argparse.Namespace, store: SqlStore) -> int:
    with Progress() as progress:
        progress.update("reading runs…", force=True)
        if args.orphaned:
            states = await _orphaned_runs(args, store)
        else:
            within = args.overdue_within
            status = RunStatus(args.status) if args.status else None
            states = await store.list_runs(
                # A deadline is a wait's: --overdue-within lists waiting runs unless told so.
                status=RunStatus.WAITING if within is not None and status is None else status,
                workflow_id=args.workflow,
                workflow_version=args.version,
                limit=args.limit,
                deadline_before=None if within is None else utc_now() + timedelta(seconds=within),
            )
    emit(
        args,
        [state.to_dict() for state in states],
        table(_HEADERS, (_row(s) for s in states)) if states else "(no runs)",
    )
    return EXIT_OK


async def _orphaned_runs(args: argparse.Namespace, store: SqlStore) -> list[RunState]:
    """The unfinished runs whose workflow version no live worker serves, most recently
    updated first."""
    if args.overdue_within is not None:
        raise CliError("--orphaned and --overdue-within cannot be combined")
    wanted = RunStatus(args.status) if args.status else None
    if wanted is not None and wanted not in workers.UNFINISHED:
        raise CliError(f"--orphaned lists unfinished runs; --status {wanted.value} has none")
    counts = workers.orphaned(await store.version_counts(), await store.list_workers(), utc_now())
    states: list[RunState] = []
    for count in counts:
        if (
            (args.workflow is not None and count.workflow_id != args.workflow)
            or (args.version is not None and count.version != args.version)
            or (wanted is not None and count.status != wanted.value)
        ):
            continue
        states += await store.list_runs(
            status=RunStatus(count.status),
            workflow_id=count.workflow_id,
            workflow_version=count.version,
            limit=args.limit,
        )
    states.sort(key=lambda state: state.updated_at, reverse=True)
    return states[: args.limit]


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
        state.workflow_version,
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
        ("version", state.workflow_version),
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
        workflow = registry.for_run(state)
        if workflow is None:
            raise CliError(
                f"run {args.run_id} belongs to workflow {state.workflow_id!r} version "
                f"{state.workflow_version!r}, which --app {args.app} does not have (it has: "
                f"{migrate.describe_versions(registry)})"
            )
        state = await rt._respond(args.run_id, payload, workflow)
    finally:
        await rt.aclose()
    emit(args, state.to_dict(), f"run {state.run_id}: {describe_state(state)}")
    return EXIT_OK


ACTIONS = {
    "list": list_runs,
    "show": show,
    "cancel": cancel,
    "respond": respond,
    "migrate": migrate.migrate,
    **retention.RUNS_ACTIONS,  # export, purge
}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(
        subparsers, common, "runs", "list, inspect, cancel and answer runs", ACTIONS
    )
    listing = actions.add_parser("list", help="runs, most recently updated first", parents=[common])
    listing.add_argument("--status", choices=[s.value for s in RunStatus])
    listing.add_argument("--workflow", metavar="WORKFLOW_ID")
    listing.add_argument("--version", metavar="VERSION", help="only runs on this workflow version")
    listing.add_argument(
        "--orphaned",
        action="store_true",
        help="only unfinished runs whose workflow version no live worker serves",
    )
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
    migrate.configure_parser(actions, common)
    retention.configure_runs(actions, common)
