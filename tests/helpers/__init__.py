"""Aids the tests share: waiting on real time, virtual time, the installed command.

Helpers used by more than one test module live here, never in a test module that others import.
"""

from __future__ import annotations

from tests.helpers.cli import EXE, cli
from tests.helpers.clock import FakeClock, scheduled_on
from tests.helpers.polling import eventually, tick_when_unleased, wait_for_status
from tests.helpers.state import own_vars

__all__ = [
    "EXE",
    "FakeClock",
    "cli",
    "eventually",
    "own_vars",
    "scheduled_on",
    "tick_when_unleased",
    "wait_for_status",
]
