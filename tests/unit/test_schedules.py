"""The pure part of cron schedules: checks, fire times across DST, catch-up plans, run ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from abstractruntime.core.schedules import (
    MAX_CATCH_UP_RUNS,
    check_definition,
    fire_run_id,
    fire_times,
    next_fire_after,
    plan_fires,
)
from abstractruntime.errors import InvalidArgumentError, SerializationError

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def define(cron: str = "0 3 * * *", **kw: object) -> object:
    args: dict[str, object] = {"tz": "UTC", "catch_up": "latest", "vars": None, "now": NOW}
    args.update(kw)
    return check_definition("nightly", "counter", cron, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"cron": "* * *"}, "invalid cron expression"),
        ({"cron": ""}, "invalid cron expression"),
        ({"tz": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"tz": "../etc/passwd"}, "unknown timezone"),
        ({"catch_up": "some"}, "catch_up must be one of latest, all, none, got 'some'"),
        ({"vars": [1]}, "vars must be a dict"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_problem(
    kw: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("*", r"\*")):
        define(**kw)


def test_names_and_vars_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="schedule name"):
        check_definition("", "wf", "* * * * *", tz="UTC", catch_up="all", vars=None, now=NOW)
    with pytest.raises(InvalidArgumentError, match="control characters"):
        check_definition("a\nb", "wf", "* * * * *", tz="UTC", catch_up="all", vars=None, now=NOW)
    with pytest.raises(SerializationError):
        define(vars={"x": object()})


def test_a_definition_gets_its_first_fire_time_and_normalised_cron() -> None:
    schedule = define("0  3 * * *", vars={"a": 1})
    assert schedule.cron == "0 3 * * *"  # type: ignore[attr-defined]
    assert schedule.next_fire_at == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    assert schedule.vars == {"a": 1}  # type: ignore[attr-defined]
    seconds = define("*/5 * * * * *")  # six fields: seconds first
    assert seconds.next_fire_at == NOW + timedelta(seconds=5)  # type: ignore[attr-defined]


def test_the_run_id_is_derived_from_name_and_fire_time() -> None:
    at = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    run_id = fire_run_id("nightly", at)
    assert run_id == fire_run_id("nightly", at.astimezone(PARIS))  # the instant, not its zone
    assert run_id != fire_run_id("nightly", at + timedelta(seconds=1))
    assert run_id != fire_run_id("hourly", at)
    assert run_id.endswith("-20260329T010000Z") and len(run_id) <= 64


def _wall(times: list[datetime]) -> list[str]:
    return [t.astimezone(PARIS).strftime("%m-%d %H:%M%z") for t in times]


def _fires(cron: str, start: datetime, until: datetime) -> list[datetime]:
    out = []
    for t in fire_times(cron, "Europe/Paris", next_fire_after(cron, "Europe/Paris", start)):
        if t >= until:
            return out
        out.append(t)
    raise AssertionError("unreachable")


def test_daily_0230_in_paris_neither_skips_nor_doubles_across_both_dst_changes() -> None:
    spring = _fires(
        "30 2 * * *", datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)
    )
    # 29 March: 02:30 does not exist (02:00 -> 03:00); the fire comes at 03:00, once.
    assert _wall(spring) == [
        "03-27 02:30+0100",
        "03-28 02:30+0100",
        "03-29 03:00+0200",
        "03-30 02:30+0200",
    ]
    autumn = _fires(
        "30 2 * * *", datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC)
    )
    # 25 October: 02:30 happens twice (03:00 -> 02:00); it fires at the first one only.
    assert _wall(autumn) == [
        "10-23 02:30+0200",
        "10-24 02:30+0200",
        "10-25 02:30+0200",
        "10-26 02:30+0100",
    ]
    assert all(t.tzinfo is UTC for t in spring + autumn)


def test_hourly_in_paris_fires_every_real_hour_across_both_dst_changes() -> None:
    day = {
        "spring": (datetime(2026, 3, 28, 23, tzinfo=UTC), 23),
        "autumn": (datetime(2026, 10, 24, 22, tzinfo=UTC), 25),
    }
    for start, hours in day.values():
        # the local day: midnight to midnight in Paris
        fires = _fires("0 * * * *", start - timedelta(seconds=1), start + timedelta(hours=hours))
        assert len(fires) == hours
        assert len(set(fires)) == hours
        assert all(b - a == timedelta(hours=1) for a, b in pairwise(fires))


def test_catch_up_plans_after_a_downtime() -> None:
    hourly = define("0 * * * *", catch_up="latest")
    first = hourly.next_fire_at  # type: ignore[attr-defined]
    later = first + timedelta(hours=5, minutes=30)  # 13:00 .. 18:00 were missed
    times, following = plan_fires(hourly, later)  # type: ignore[arg-type]
    assert times == [first + timedelta(hours=5)] and following == first + timedelta(hours=6)
    times, following = plan_fires(replace(hourly, catch_up="all"), later)  # type: ignore[type-var]
    assert times == [first + timedelta(hours=h) for h in range(6)]
    assert following == first + timedelta(hours=6)
    times, following = plan_fires(replace(hourly, catch_up="none"), later)  # type: ignore[type-var]
    assert times == [] and following == first + timedelta(hours=6)
    # "none" still fires a time that is only a little late (a poll interval, a busy worker).
    times, _ = plan_fires(replace(hourly, catch_up="none"), first + timedelta(seconds=2))  # type: ignore[type-var]
    assert times == [first]


def test_catch_up_all_is_bounded_per_cycle() -> None:
    every_second = define("* * * * * *", catch_up="all")
    first = every_second.next_fire_at  # type: ignore[attr-defined]
    times, following = plan_fires(every_second, first + timedelta(hours=1))  # type: ignore[arg-type]
    assert len(times) == MAX_CATCH_UP_RUNS
    assert following == first + timedelta(seconds=MAX_CATCH_UP_RUNS)
