"""``abstractruntime schedules list | add | remove``: the cron schedules of a database.

``add`` declares a schedule as ``ScheduledRuntime.schedule`` does (the same checks, before the
database is touched; the same definition again changes nothing); any worker whose app has the
workflow fires it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..core.schedules import CATCH_UP, Schedule, check_definition
from ..core.serde import utc_now
from ..storage.sql import SqlStore
from .base import EXIT_OK, CliError, Parser, Subparsers, add_group
from .output import emit, table

_HEADERS = ("NAME", "WORKFLOW", "CRON", "TIMEZONE", "CATCH_UP", "NEXT_FIRE", "LAST_RUN")


def _row(schedule: Schedule) -> list[Any]:
    return [
        schedule.name,
        schedule.workflow_id,
        schedule.cron,
        schedule.timezone,
        schedule.catch_up,
        schedule.next_fire_at,
        schedule.last_run_id,
    ]


async def list_schedules(args: argparse.Namespace, store: SqlStore) -> int:
    schedules = await store.schedules.list()
    emit(
        args,
        [schedule.to_dict() for schedule in schedules],
        table(_HEADERS, (_row(s) for s in schedules)) if schedules else "(no schedules)",
    )
    return EXIT_OK


def _vars(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--vars is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"--vars must be a JSON object, got {type(value).__name__}")
    return value


async def add(args: argparse.Namespace, store: SqlStore) -> int:
    schedule = check_definition(
        args.name,
        args.workflow,
        args.cron,
        tz=args.timezone,
        catch_up=args.catch_up,
        vars=_vars(args.vars),
        now=utc_now(),
    )
    before = await store.schedules.get(args.name)
    stored, written = await store.schedules.put(schedule)
    done = "unchanged" if not written else "created" if before is None else "updated"
    data = {**stored.to_dict(), "result": done}
    emit(args, data, f"schedule {stored.name} {done}; next fire at {_when(stored)}")
    return EXIT_OK


def _when(schedule: Schedule) -> str:
    return schedule.next_fire_at.strftime("%Y-%m-%d %H:%M:%SZ")


async def remove(args: argparse.Namespace, store: SqlStore) -> int:
    if not await store.schedules.delete(args.name):
        raise CliError(f"unknown schedule {args.name!r} (see: abstractruntime schedules list)")
    emit(args, {"name": args.name, "removed": True}, f"schedule {args.name} removed")
    return EXIT_OK


ACTIONS = {"list": list_schedules, "add": add, "remove": remove}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(subparsers, common, "schedules", "cron schedules that start runs", ACTIONS)
    actions.add_parser("list", help="every schedule, by name", parents=[common])
    added = actions.add_parser(
        "add",
        help="declare a schedule (the same definition again changes nothing; a new one updates)",
        parents=[common],
    )
    added.add_argument("name", metavar="NAME")
    added.add_argument("workflow", metavar="WORKFLOW", help="the workflow id of its runs")
    added.add_argument(
        "cron",
        metavar="CRON",
        help="five fields (minute hour day month weekday), or six with seconds first; quote it",
    )
    added.add_argument("--vars", metavar="JSON", help="a JSON object: the vars of each run")
    added.add_argument(
        "--timezone", default="UTC", metavar="TZ", help="IANA zone of the cron (default UTC)"
    )
    added.add_argument(
        "--catch-up",
        dest="catch_up",
        choices=CATCH_UP,
        default="latest",
        help="after a downtime: one run for the latest missed time (default), all, or none",
    )
    removed = actions.add_parser("remove", help="delete a schedule", parents=[common])
    removed.add_argument("name", metavar="NAME")
