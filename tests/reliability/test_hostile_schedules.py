"""Hostile schedule names and vars, on memory, a SQLite file and Postgres: what is stored is read
back exactly, or the call fails with ``InvalidArgumentError`` naming the problem, before any I/O;
the scheduler on the same store keeps running without errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given

from abstractruntime.errors import InvalidArgumentError
from abstractruntime.scheduler import ScheduledRuntime
from tests.reliability.test_hostile_input import (
    PROFILE,
    SQL_INJECTIONS,
    hostile_text,
    json_dicts,
    same,
    sr,
)

__all__ = ["sr"]  # the fixture, shared


@PROFILE
@given(name=hostile_text, vars=json_dicts)
@example(name=SQL_INJECTIONS[0], vars={"'; DROP TABLE abstractruntime_schedules; --": "%_"})
@example(name="n\x00", vars={})
@example(name="x" * 201, vars={})
@example(name="\u202e😀 É", vars={"big": 10**40, "nul": "a\x00b"})
async def test_names_and_vars_round_trip_or_are_refused(
    sr: ScheduledRuntime, name: str, vars: dict[str, Any]
) -> None:
    # A workflow no scheduler here has: nothing fires, the rows are only stored and read.
    valid = bool(name.strip()) and name.isprintable() and len(name) <= 200
    if not valid:
        with pytest.raises(InvalidArgumentError, match="schedule name"):
            await sr.schedule(name, "elsewhere", "0 3 * * *", vars)
        return
    stored = await sr.schedule(name, "elsewhere", "0 3 * * *", vars)
    assert stored.name == name and same(dict(stored.vars), vars)
    again = await sr.schedule(name, "elsewhere", "0 3 * * *", vars)
    assert again.version == stored.version  # the same definition: unchanged
    (listed,) = [s for s in await sr.list_schedules() if s.name == name]
    assert same(dict(listed.vars), vars)
    assert await sr.unschedule(name) is True
    assert await sr.unschedule(name) is False
