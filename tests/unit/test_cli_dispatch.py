"""The command line's layout: each command group's parser offers exactly the actions its table
dispatches, and an action outside the table is an error, never a fall-through."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from abstractruntime.cli.base import CliError, dispatcher
from abstractruntime.cli.toplevel import COMMANDS, build_parser
from abstractruntime.errors import InvalidArgumentError


def _choices(parser: argparse.ArgumentParser) -> dict[str, Any]:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def test_every_group_dispatches_exactly_the_actions_it_parses() -> None:
    commands = _choices(build_parser())
    assert list(commands) == [
        "db",
        "runs",
        "events",
        "ledger",
        "snapshot",
        "schedules",
        "limits",
        "worker",
        "serve",
        "demo",
    ]
    groups = {m.__name__.rpartition(".")[2]: m for m in COMMANDS if hasattr(m, "ACTIONS")}
    assert sorted(groups) == ["db", "events", "ledger", "runs", "schedules", "snapshot"]
    for name, module in groups.items():
        assert list(_choices(commands[name])) == list(module.ACTIONS), name


async def test_an_unknown_action_is_an_error() -> None:
    async def listed(args: argparse.Namespace, store: Any) -> int:
        return 0

    dispatch = dispatcher("runs", {"list": listed})
    assert await dispatch(argparse.Namespace(action="list"), None) == 0  # type: ignore[arg-type]
    with pytest.raises(CliError, match="runs: unknown action 'respnd' \\(expected list\\)"):
        await dispatch(argparse.Namespace(action="respnd"), None)  # type: ignore[arg-type]
    assert issubclass(CliError, InvalidArgumentError)  # one line, exit status 2
