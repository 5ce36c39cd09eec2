"""``abstractruntime limits``: each shared limit's budget and its use now, read from the database.

A line per budget (a limit's name and key value) that any process has used: its capacity
(slots, or grants per window), the slots held by live claims or the grants of the current
window, and the runs waiting for it. Slots of crashed workers whose lease has expired are not
counted: they are free.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.serde import utc_now
from ..storage.sql import SqlStore
from .base import EXIT_OK, Parser, Subparsers
from .output import emit, table

_HEADERS = ("LIMIT", "KEY", "KIND", "CAPACITY", "USED", "WAITING")


def _capacity(row: dict[str, Any]) -> str:
    if row["kind"] == "rate":
        return f"{row['capacity']}/{row['per_s']:g}s"
    return str(row["capacity"])


async def show_limits(args: argparse.Namespace, store: SqlStore) -> int:
    usage = await store.limit_usage(utc_now())
    rows = (
        [u["name"], u["key"] or "-", u["kind"], _capacity(u), u["used"], u["waiting"]]
        for u in usage
    )
    emit(args, usage, table(_HEADERS, rows) if usage else "(no limit has been used)")
    return EXIT_OK


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    limits = subparsers.add_parser(
        "limits",
        help="each shared concurrency or rate limit's use: slots held, runs waiting",
        parents=[common],
    )
    limits.set_defaults(handler=show_limits)
