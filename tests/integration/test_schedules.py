"""Cron schedules on memory, a SQLite file and Postgres, on virtual time (nothing sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from abstractruntime import RunStatus
from abstractruntime.core.schedules import MAX_CATCH_UP_RUNS, fire_run_id
from abstractruntime.errors import InvalidArgumentError, StoreError
from abstractruntime.scheduler import ScheduledRuntime
from tests.helpers import FakeClock, scheduled_on
from tests.workflows import counter

StoreFactory = Callable[[], Any]
UTC = timezone.utc
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WF = counter(1)


async def runtime(store: Any, clock: FakeClock, **kw: Any) -> ScheduledRuntime:
    """A scheduled runtime on ``clock`` whose loop is not started: the test drives the cycles."""
    kw.setdefault("auto_start", False)
    return await scheduled_on(clock, store=store, workflows=[WF], **kw)


async def scheduled_runs(sr: ScheduledRuntime) -> list[Any]:
    runs = await sr.store.list_runs(workflow_id=WF.workflow_id, limit=10_000)
    return sorted(runs, key=lambda s: s.vars["scheduled_at"])


async def test_declare_redeclare_update_list_remove(store: Any) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock)
    try:
        first = await sr.schedule("nightly", WF, "0 3 * * *", {"a": 1})
        assert first.next_fire_at == datetime(2026, 1, 2, 3, tzinfo=UTC)
        assert (first.workflow_id, first.cron, first.timezone, first.catch_up) == (
            "counter",
            "0 3 * * *",
            "UTC",
            "latest",
        )
        clock.advance(3600)
        # The same definition again (another process at startup): nothing changes.
        again = await sr.schedule("nightly", "counter", "0 3 * * *", {"a": 1})
        assert again == first
        # A new definition: updated, its next fire time recomputed in its zone.
        paris = await sr.schedule(
            "nightly", WF, "0 3 * * *", {"a": 2}, timezone="Europe/Paris", catch_up="all"
        )
        assert paris.next_fire_at == datetime(2026, 1, 2, 2, tzinfo=UTC)
        assert (paris.vars, paris.catch_up, paris.version) == ({"a": 2}, "all", first.version + 1)
        await sr.schedule("hourly", WF, "0 * * * *")
        listed = await sr.list_schedules()
        assert [s.name for s in listed] == ["hourly", "nightly"]
        assert listed[1] == paris and listed[1].last_run_id is None
        assert await sr.unschedule("nightly") is True
        assert await sr.unschedule("nightly") is False  # unknown: False, not an error
        assert [s.name for s in await sr.list_schedules()] == ["hourly"]
    finally:
        await sr.stop()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cron": "0 25 * * *"}, "invalid cron expression"),
        ({"timezone": "Europe/Nowhere"}, "unknown timezone"),
        ({"catch_up": "every"}, "catch_up must be one of"),
    ],
)
async def test_bad_input_is_refused_before_any_io(kw: dict[str, Any], message: str) -> None:
    class NoIO:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"store.{name} used")

    sr = await runtime(None, FakeClock(START))
    sr.runtime.store = NoIO()  # type: ignore[assignment]
    args: dict[str, Any] = {"cron": "0 3 * * *"} | kw
    with pytest.raises(InvalidArgumentError, match=message):
        await sr.schedule("bad", WF, **args)


async def test_a_fire_starts_one_run_with_scheduled_at_and_the_derived_id(store: Any) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock)
    try:
        await sr.schedule("every-minute", WF, "* * * * *", {"who": "cron"})
        fire_at = START + timedelta(minutes=1)
        assert await sr.scheduler.poll_once() == 0  # not yet
        clock.now = fire_at + timedelta(milliseconds=40)
        assert await sr.scheduler.poll_once() == 1  # fired, claimed and driven in one cycle
        (state,) = await scheduled_runs(sr)
        assert state.run_id == fire_run_id("every-minute", fire_at)
        assert state.status is RunStatus.COMPLETED
        assert state.vars["who"] == "cron"
        assert state.vars["scheduled_at"] == fire_at.isoformat()
        (listed,) = await sr.list_schedules()
        assert listed.last_run_id == state.run_id and listed.last_fired_at == fire_at
        assert listed.next_fire_at == fire_at + timedelta(minutes=1)
        assert await sr.scheduler.poll_once() == 0  # the same fire time never again
        assert sr.stats.scheduled_runs == 1
    finally:
        await sr.stop()


async def test_a_schedule_survives_a_restart(store_factory: StoreFactory) -> None:
    if store_factory.backend == "memory":  # type: ignore[attr-defined]
        pytest.skip("a memory store does not outlive its process")
    clock = FakeClock(START)
    sr = await runtime(store_factory(), clock)
    await sr.schedule("nightly", WF, "0 3 * * *")
    await sr.stop()
    clock.now = datetime(2026, 1, 2, 3, 0, 1, tzinfo=UTC)
    sr = await runtime(store_factory(), clock)
    try:
        assert await sr.scheduler.poll_once() == 1
        assert len(await scheduled_runs(sr)) == 1
    finally:
        await sr.stop()


async def test_workflows_this_worker_does_not_have_are_left_to_others(store: Any) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock)
    try:
        await sr.schedule("theirs", "not_registered_here", "* * * * *")
        clock.advance(120)
        assert await sr.scheduler.poll_once() == 0
        (schedule,) = await sr.list_schedules()
        assert schedule.last_run_id is None  # still due, for the worker that has it
    finally:
        await sr.stop()


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("latest", ["17:00"]), ("all", ["13:00", "14:00", "15:00", "16:00", "17:00"]), ("none", [])],
)
async def test_catch_up_after_a_downtime(store: Any, catch_up: str, expected: list[str]) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock)
    try:
        await sr.schedule("hourly", WF, "0 * * * *", catch_up=catch_up)  # type: ignore[arg-type]
        clock.now = START + timedelta(hours=5, minutes=30)  # 13:00 to 17:00 were missed
        await sr.scheduler.poll_once()
        runs = await scheduled_runs(sr)
        assert [s.vars["scheduled_at"][11:16] for s in runs] == expected
        (schedule,) = await sr.list_schedules()
        assert schedule.next_fire_at == START + timedelta(hours=6)
        # and from then on, one run per fire time
        clock.now = START + timedelta(hours=6)
        await sr.scheduler.poll_once()
        assert len(await scheduled_runs(sr)) == len(expected) + 1
    finally:
        await sr.stop()


async def test_catch_up_all_goes_on_over_several_cycles(store: Any) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock, max_concurrency=500)
    try:
        await sr.schedule("often", WF, "* * * * * *", catch_up="all")
        missed = MAX_CATCH_UP_RUNS + 30
        clock.now = START + timedelta(seconds=missed, milliseconds=500)
        await sr.scheduler.poll_once()
        assert len(await scheduled_runs(sr)) == MAX_CATCH_UP_RUNS
        await sr.scheduler.poll_once()
        runs = await scheduled_runs(sr)
        assert [s.vars["scheduled_at"] for s in runs] == [
            (START + timedelta(seconds=i)).isoformat() for i in range(1, missed + 1)
        ]
    finally:
        await sr.stop()


@pytest.mark.parametrize(
    ("cron", "start", "fires"),
    [
        # spring forward, 29 March 2026: 02:30 does not exist, the fire comes at 03:00 (01:00Z)
        (
            "30 2 * * *",
            datetime(2026, 3, 27, 12, tzinfo=UTC),
            ["03-28T01:30", "03-29T01:00", "03-30T00:30"],
        ),
        # fall back, 25 October 2026: 02:30 comes twice, one fire (the first, 00:30Z)
        (
            "30 2 * * *",
            datetime(2026, 10, 23, 12, tzinfo=UTC),
            ["10-24T00:30", "10-25T00:30", "10-26T01:30"],
        ),
    ],
)
async def test_dst_changes_in_the_schedules_zone_neither_skip_nor_double(
    store: Any, cron: str, start: datetime, fires: list[str]
) -> None:
    clock = FakeClock(start)
    sr = await runtime(store, clock)
    try:
        await sr.schedule("paris", WF, cron, timezone="Europe/Paris")
        for _ in range(3 * 24 * 4):  # every 15 minutes for three days
            clock.advance(15 * 60)
            await sr.scheduler.poll_once()
        runs = await scheduled_runs(sr)
        assert [s.vars["scheduled_at"][5:16] for s in runs] == fires
    finally:
        await sr.stop()


@pytest.mark.parametrize(
    ("midnight", "hours"),
    [
        (datetime(2026, 3, 28, 23, tzinfo=UTC), 23),  # 29 March in Paris: 23 hours
        (datetime(2026, 10, 24, 22, tzinfo=UTC), 25),  # 25 October in Paris: 25 hours
    ],
)
async def test_hourly_schedule_across_both_dst_changes(
    store: Any, midnight: datetime, hours: int
) -> None:
    clock = FakeClock(midnight + timedelta(seconds=30))
    sr = await runtime(store, clock)
    try:
        await sr.schedule("hourly", WF, "0 * * * *", timezone="Europe/Paris")
        for _ in range(hours * 2):  # the hours of the local day, every half hour
            clock.advance(1800)
            await sr.scheduler.poll_once()
        runs = await scheduled_runs(sr)
        # 01:00 ... 00:00 the next day: every real hour once, none skipped, none doubled
        fired = [datetime.fromisoformat(s.vars["scheduled_at"]) for s in runs]
        assert fired == [midnight + timedelta(hours=h) for h in range(1, hours + 1)]
    finally:
        await sr.stop()


async def test_the_scheduler_sleeps_until_the_next_fire_time(store: Any) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock, poll_interval_s=3600.0)
    try:
        await sr.schedule("soon", WF, "15 12 * * *")  # in 15 minutes
        await sr.start_scheduler()
        assert await clock.sleeping() == 15 * 60
        clock.advance(15 * 60)
        for _ in range(200):
            if await scheduled_runs(sr):
                break
            await asyncio.sleep(0.01)
        (state,) = await scheduled_runs(sr)
        assert state.vars["scheduled_at"] == (START + timedelta(minutes=15)).isoformat()
    finally:
        await sr.stop()


async def test_two_schedulers_racing_start_exactly_one_run_per_fire_time(
    store_factory: StoreFactory,
) -> None:
    clock = FakeClock(START)
    one = await runtime(store_factory(), clock, max_concurrency=500)
    two = await runtime(store_factory(), clock, max_concurrency=500)
    try:
        await one.schedule("race", WF, "* * * * * *", catch_up="all")
        await two.schedule("race", WF, "* * * * * *", catch_up="all")  # a no-op
        fires = 60
        for _ in range(fires):
            clock.advance(1)
            await asyncio.gather(one.scheduler.poll_once(), two.scheduler.poll_once())
        runs = await scheduled_runs(one)
        assert [s.vars["scheduled_at"] for s in runs] == [
            (START + timedelta(seconds=i)).isoformat() for i in range(1, fires + 1)
        ]
        assert one.stats.scheduled_runs + two.stats.scheduled_runs == fires
    finally:
        await one.stop()
        await two.stop()


async def test_a_schedule_that_fails_to_fire_is_retried_at_the_next_poll_not_in_a_loop(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(START)
    sr = await runtime(store, clock, poll_interval_s=5.0)
    try:
        await sr.schedule("broken", WF, "* * * * *")
        start = sr.runtime.start
        failing = True

        async def refuse(**kw: Any) -> str:
            if failing:
                raise StoreError("the database refused the run")
            return await start(**kw)

        monkeypatch.setattr(sr.runtime, "start", refuse)
        clock.advance(60)
        await sr.start_scheduler()
        assert await clock.sleeping() == 5.0  # the poll interval, not a busy loop
        assert any("schedule broken: the database refused" in e for e in sr.stats.errors)
        failing = False
        clock.advance(5.0)
        for _ in range(200):
            if await scheduled_runs(sr):
                break
            await asyncio.sleep(0.01)
        (state,) = await scheduled_runs(sr)
        assert state.vars["scheduled_at"] == (START + timedelta(minutes=1)).isoformat()
    finally:
        await sr.stop()


async def test_a_schedule_read_back_is_a_copy(store: Any) -> None:
    sr = await runtime(store, FakeClock(START))
    try:
        stored = await sr.schedule("copy", WF, "0 3 * * *", {"list": [1]})
        stored.vars["list"].append(2)  # type: ignore[index]
        (listed,) = await sr.list_schedules()
        listed.vars["list"].append(3)  # type: ignore[index]
        assert (await sr.store.schedules.get("copy")).vars == {"list": [1]}
    finally:
        await sr.stop()
