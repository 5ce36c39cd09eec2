"""What every command module of the command line shares: its error, exit statuses, argument
types, and the dispatch of a group's actions."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, TypeAlias

from ..app import APP_FORMS
from ..errors import InvalidArgumentError
from ..storage.sql import SqlStore

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2

APP_HELP = f"where the workflows are: {APP_FORMS}"

#: A command's handler: it gets the parsed arguments and the open store, returns the exit status.
Handler = Callable[[argparse.Namespace, SqlStore], Awaitable[int]]
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


class CliError(InvalidArgumentError):
    """A user mistake found by the command line: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_group(
    subparsers: Subparsers,
    common: Parser,
    name: str,
    help: str,
    actions: Mapping[str, Handler],
) -> Subparsers:
    """Add the command ``name``, whose ``ACTION`` is looked up in ``actions``; returns the
    subparsers to add each action's arguments to."""
    group = subparsers.add_parser(name, help=help, parents=[common])
    group.set_defaults(handler=dispatcher(name, actions))
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")


def dispatcher(group: str, actions: Mapping[str, Handler]) -> Handler:
    """A handler that runs the handler of ``args.action``; an unknown action is an error."""

    async def dispatch(args: argparse.Namespace, store: SqlStore) -> int:
        handler = actions.get(args.action)
        if handler is None:
            raise CliError(
                f"{group}: unknown action {args.action!r} (expected {', '.join(actions)})"
            )
        return await handler(args, store)

    return dispatch


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def duration_s(text: str) -> float:
    """A duration as seconds: ``90`` (seconds), ``90s``, ``15m``, ``1h30m``, ``2d``, ``500ms``."""
    spelled = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", spelled):
        return float(spelled)
    parts = _DURATION_PART.findall(spelled)
    if not parts or "".join(n + u for n, u in parts) != spelled:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (e.g. 90, 30s, 15m, 1h30m, 2d)"
        )
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value
