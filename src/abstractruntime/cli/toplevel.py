"""The top-level parser of ``abstractruntime``, and ``main``: run a command, map its errors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from ..errors import AbstractRuntimeError
from ..storage.sql import SqlStore
from ..storage.sql.urls import DEFAULT_DATABASE_URL, mask_url, normalize_url
from . import db, demo, events, ledger, limits, runs, schedules, serve, snapshot, worker
from .base import EXIT_USAGE, CliError, Parser

URL_ENV = "ABSTRACTRUNTIME_DATABASE_URL"
#: An unexpected exception, with its traceback: Python's own status for one.
EXIT_BUG = 1

#: The command modules, in the order of ``--help``; each adds its parser and handler.
COMMANDS = (db, runs, events, ledger, snapshot, schedules, limits, worker, serve, demo)


def _common_options(*, in_subcommand: bool) -> Parser:
    """``--database-url`` and ``--json``, accepted before the command and after it.

    In a subcommand they default to "not given" (SUPPRESS), so that ``--json runs list`` and
    ``runs list --json`` both work without one overwriting the other.
    """
    options = Parser(add_help=False)
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


def build_parser() -> Parser:
    parser = Parser(
        prog="abstractruntime",
        description="Durable workflow runs: operate the database.",
        parents=[_common_options(in_subcommand=False)],
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options(in_subcommand=True)
    for command in COMMANDS:
        command.configure_parser(subparsers, common)
    return parser


async def _main(args: argparse.Namespace) -> int:
    if not args.database_url.strip():
        raise CliError(
            f"the database URL is empty (from --database-url or ${URL_ENV}): give one, e.g. "
            f"{DEFAULT_DATABASE_URL} or postgresql://user@host/db, or leave both unset for the "
            "embedded SQLite file"
        )
    try:
        store = SqlStore(args.database_url)
    except OSError as exc:  # the directory of a SQLite file cannot be made
        raise CliError(f"cannot open database {mask_url(args.database_url)}: {exc}") from exc
    try:
        result: int = await args.handler(args, store)
        return result
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    The project's errors (``AbstractRuntimeError``: user mistakes, an unreachable or outdated
    database, an unknown run) print one line and give status 2, as usage errors do. Anything
    else is a bug, in abstractruntime or in the app's code: its traceback is printed (status 1).
    Both have the database password masked.
    """
    args = build_parser().parse_args(argv)
    url = args.database_url
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `abstractruntime ledger show X | head`: not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except AbstractRuntimeError as exc:
        message = " ".join(_masked(str(exc), url).split())  # one line
        print(f"abstractruntime: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        sys.stderr.write(_masked(traceback.format_exc(), url))
        return EXIT_BUG


def _masked(text: str, url: str) -> str:
    """``text`` with ``url``, as given or as the store spells it, masked."""
    spellings = [url]
    with contextlib.suppress(ValueError):
        spellings.append(normalize_url(url))
    for spelling in spellings:
        if spelling.strip():  # replacing "" would insert the mask between every character
            text = text.replace(spelling, mask_url(spelling))
    return text
