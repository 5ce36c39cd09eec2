"""Wait timeouts (``timeout_s`` / ``timeout_at`` / ``timeout_node``) on memory, SQLite and Postgres.

Virtual time throughout: the runtime reads a ``FakeClock``, the scheduler sleeps on it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RunLeasedError,
    RunNotWaitingError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WorkflowSpec,
)
from tests.helpers import FakeClock, eventually, scheduled_on, wait_for_status
from tests.helpers.state import own_vars
from tests.workflows import timer, waiter

StoreFactory = Callable[[], Any]


def _end(name: str) -> Callable[[RunState, object], StepPlan]:
    return lambda run, ctx: StepPlan(node_id=name, complete_output={"at": name, **own_vars(run)})


def timed(
    effect_type: EffectType = EffectType.ASK_USER,
    workflow_id: str = "timed",
    **timeout: Any,
) -> WorkflowSpec:
    """One wait with the given timeout fields, then ``done`` (the answer's way) or ``late``."""
    payload: dict[str, Any] = {"prompt": "Approve?", **timeout}
    if effect_type is EffectType.WAIT_EVENT:
        payload["wait_key"] = "evt:paid"
    if effect_type is EffectType.START_SUBWORKFLOW:
        payload["workflow_id"] = "middle"

    def wait(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(
            node_id="wait", effect=Effect(effect_type, payload, result_key="r"), next_node="done"
        )

    return WorkflowSpec(
        workflow_id, "wait", {"wait": wait, "done": _end("done"), "late": _end("late")}
    )


def runtime_on(store: Any, clock: FakeClock, *workflows: WorkflowSpec) -> Runtime:
    return Runtime(
        store=store, workflow_registry=list(workflows), config=RuntimeConfig(clock=clock)
    )


def outcomes(ledger: list[dict[str, Any]]) -> tuple[int, int]:
    """(records whose result says timed_out, records of an answer ``{"ok": True}``)."""
    results = [record.get("result") for record in ledger]
    timed_out = sum(isinstance(r, dict) and r.get("timed_out") is True for r in results)
    answered = sum(r == {"ok": True} for r in results)
    return timed_out, answered


async def test_ask_user_times_out_at_the_node_the_answer_would_go_to(store: Any) -> None:
    clock = FakeClock()
    wf = timed(timeout_s=60)
    rt = runtime_on(store, clock, wf)
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.WAITING and state.waiting is not None
    assert state.waiting.timeout_at == clock.now + timedelta(seconds=60)
    assert state.waiting.to_dict()["timeout_at"] == (clock.now + timedelta(seconds=60)).isoformat()
    clock.advance(59.5)
    assert (await rt.tick(workflow=wf, run_id=run_id)).status is RunStatus.WAITING  # not yet
    clock.advance(0.5)
    done = await rt.tick(workflow=wf, run_id=run_id)
    assert done.status is RunStatus.COMPLETED
    wait_key = state.waiting.wait_key
    assert done.output == {
        "at": "done",
        "r": {"timed_out": True, "waited_s": 60.0, "wait_key": wait_key},
    }
    ledger = await rt.get_ledger(run_id)
    assert outcomes(ledger) == (1, 0)
    assert ledger[-2]["status"] == "completed" and ledger[-2]["node_id"] == "wait"


async def test_a_timeout_goes_on_at_timeout_node(store: Any) -> None:
    clock = FakeClock()
    wf = timed(timeout_s=5, timeout_node="late")
    rt = runtime_on(store, clock, wf)
    run_id, state = await rt.run(wf)
    assert state.waiting is not None and state.waiting.timeout_node == "late"
    clock.advance(5)
    done = await rt.tick(workflow=wf, run_id=run_id)
    assert done.output is not None and done.output["at"] == "late"
    assert done.output["r"]["timed_out"] is True


async def test_an_answer_before_the_timeout_wins(store: Any) -> None:
    clock = FakeClock()
    wf = timed(timeout_s=5, timeout_node="late")
    rt = runtime_on(store, clock, wf)
    run_id, _ = await rt.run(wf)
    clock.advance(4)
    done = await rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload={"ok": True})
    assert done.output == {"at": "done", "r": {"ok": True}}
    clock.advance(10)
    assert (await rt.tick(workflow=wf, run_id=run_id)).output == done.output
    assert outcomes(await rt.get_ledger(run_id)) == (0, 1)


async def test_an_answer_after_the_deadline_loses_even_with_no_scheduler(store: Any) -> None:
    """The deadline came first: ``resume`` times the run out itself and says so."""
    clock = FakeClock()
    wf = timed(timeout_s=5, timeout_node="late")
    rt = runtime_on(store, clock, wf)
    run_id, _ = await rt.run(wf)
    clock.advance(5)
    with pytest.raises(RunNotWaitingError, match="timed out"):
        await rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload={"ok": True})
    state = await rt.get_state(run_id)
    assert state.status is RunStatus.COMPLETED and state.output is not None
    assert state.output["at"] == "late"
    assert outcomes(await rt.get_ledger(run_id)) == (1, 0)


async def test_wait_event_times_out_by_the_scheduler(store: Any) -> None:
    clock = FakeClock()
    wf = timed(EffectType.WAIT_EVENT, timeout_s=30, timeout_node="late")
    async with await scheduled_on(clock, store=store, workflows=[wf], poll_interval_s=600) as sr:
        run_id, state = await sr.run(wf)
        assert state.waiting is not None and state.waiting.reason is WaitReason.EVENT
        # The run's due time is its timeout: the scheduler sleeps until then, no polling.
        assert await clock.sleeping() == 30
        clock.advance(30)
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.output is not None and done.output["at"] == "late"
        assert done.output["r"] == {"timed_out": True, "waited_s": 30.0, "wait_key": "evt:paid"}
        # An event now finds nobody waiting.
        assert await sr.emit_event("evt:paid", {"ok": True}) == []


@pytest.mark.parametrize("as_text", [True, False], ids=["iso", "datetime"])
async def test_timeout_at_is_an_absolute_time(store: Any, as_text: bool) -> None:
    clock = FakeClock()
    at = clock.now + timedelta(hours=2)
    local = at.astimezone(timezone(timedelta(hours=-5)))  # any offset: the same instant
    wf = timed(timeout_at=local.isoformat() if as_text else local)
    rt = runtime_on(store, clock, wf)
    run_id, state = await rt.run(wf)
    assert state.waiting is not None and state.waiting.timeout_at == at
    ledger = await rt.get_ledger(run_id)
    assert isinstance(ledger[-1]["effect"]["payload"]["timeout_at"], str)  # recorded as text
    clock.advance(7200)
    done = await rt.tick(workflow=wf, run_id=run_id)
    assert done.output is not None and done.output["r"]["waited_s"] == 7200.0


@pytest.mark.parametrize(
    ("timeout", "named"),
    [
        ({"timeout_s": -1}, "payload['timeout_s']"),
        ({"timeout_s": 0}, "payload['timeout_s']"),
        ({"timeout_s": "10"}, "payload['timeout_s']"),
        ({"timeout_s": True}, "payload['timeout_s']"),
        ({"timeout_s": 5, "timeout_at": "2030-01-01T00:00:00Z"}, "both given"),
        ({"timeout_at": "tomorrow"}, "payload['timeout_at']"),
        ({"timeout_at": "2030-01-01T00:00:00"}, "no timezone"),
        ({"timeout_at": datetime(2030, 1, 1)}, "no timezone"),
        ({"timeout_s": 5, "timeout_node": "nowhere"}, "payload['timeout_node']"),
        ({"timeout_node": "late"}, "payload['timeout_node']"),
    ],
)
async def test_bad_timeouts_fail_the_step_naming_the_key(
    store: Any, timeout: dict[str, Any], named: str
) -> None:
    clock = FakeClock()
    wf = timed(**timeout)
    rt = runtime_on(store, clock, wf)
    _, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert named in (state.error or ""), state.error


async def test_an_async_subworkflow_cannot_time_out(store: Any) -> None:
    wf = timed(EffectType.START_SUBWORKFLOW, timeout_s=5, **{"async": True})
    rt = runtime_on(store, FakeClock(), wf, waiter(workflow_id="middle"))
    _, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED and "async start_subworkflow" in (state.error or "")


async def test_a_timed_out_run_is_resumed_after_a_restart(store_factory: StoreFactory) -> None:
    """The timeout lives in the database: a new process (runtime, store, scheduler) on the same
    database times the run out."""
    clock = FakeClock()
    wf = timed(timeout_s=120, timeout_node="late")
    first = await scheduled_on(clock, store=store_factory(), workflows=[wf], auto_start=False)
    run_id, _ = await first.run(wf)
    await first.stop()

    async with await scheduled_on(
        clock, store=store_factory(), workflows=[wf], poll_interval_s=600
    ) as second:
        assert await clock.sleeping() == 120
        clock.advance(120)
        done = await wait_for_status(second, run_id, RunStatus.COMPLETED)
        assert done.output is not None and done.output["at"] == "late"
        assert outcomes(await second.get_ledger(run_id)) == (1, 0)


async def test_answer_and_timeout_race_exactly_one_wins(store_factory: StoreFactory) -> None:
    """50 rounds, both orders: an answer (one store) races the scheduler's timeout (another
    store, i.e. another process's view). Exactly one outcome lands in each ledger; the loser
    gets RunNotWaitingError or RunLeasedError (the answer), or does nothing (the scheduler)."""
    clock = FakeClock()
    wf = timed(timeout_s=10, timeout_node="late")
    answers = runtime_on(store_factory(), clock, wf)
    timeouts = await scheduled_on(clock, store=store_factory(), workflows=[wf], auto_start=False)
    rng = random.Random(12)
    seen = {"answer": 0, "timeout": 0}
    try:
        for round_ in range(50):
            run_id, _ = await answers.run(wf)
            jitter = (rng.uniform(0, 0.02), rng.uniform(0, 0.02))
            winner = await race(answers, timeouts, clock, wf, run_id, jitter, bool(round_ % 2))
            seen[winner] += 1
    finally:
        await timeouts.stop()
        await answers.aclose()
    assert seen["answer"] and seen["timeout"], seen


async def race(
    answers: Runtime,
    timeouts: Any,
    clock: FakeClock,
    wf: WorkflowSpec,
    run_id: str,
    jitter: tuple[float, float],
    timeout_first: bool,
) -> str:
    """One round of the race; returns who won."""
    lost: list[BaseException] = []

    async def answer() -> None:
        await asyncio.sleep(jitter[0])  # jitter only: no time passes on the clock
        try:
            await answers.resume(workflow=wf, run_id=run_id, wait_key=None, payload={"ok": True})
        except (RunNotWaitingError, RunLeasedError) as exc:
            lost.append(exc)

    async def time_out() -> None:
        await asyncio.sleep(jitter[1])
        clock.advance(10)
        await timeouts.scheduler.poll_once()

    racers = [time_out(), answer()] if timeout_first else [answer(), time_out()]
    await asyncio.gather(*racers)

    async def settled() -> RunState:
        await timeouts.scheduler.poll_once()  # a loser's leftovers, if any
        state = await answers.get_state(run_id)
        assert state.status is RunStatus.COMPLETED, state
        return state

    state = await eventually(settled, "the raced run did not settle")
    ledger = await answers.get_ledger(run_id)
    timed_out, answered = outcomes(ledger)
    assert timed_out + answered == 1, ledger
    assert state.output is not None
    assert state.output["at"] == ("late" if timed_out else "done")
    assert len(lost) == timed_out, lost  # the answer lost exactly when the timeout won
    return "timeout" if timed_out else "answer"


def middle(*, grandchild: bool) -> WorkflowSpec:
    """A child that waits on a grandchild (sync) that waits for an event; or waits itself."""
    if not grandchild:
        return waiter("evt:child", workflow_id="middle")
    return WorkflowSpec(
        "middle",
        "call",
        {
            "call": lambda run, ctx: StepPlan(
                node_id="call",
                effect=Effect(
                    EffectType.START_SUBWORKFLOW, {"workflow_id": "leaf"}, result_key="c"
                ),
                next_node="done",
            ),
            "done": _end("done"),
        },
    )


async def test_a_timed_out_sync_subworkflow_is_cancelled_with_its_children(
    store: Any,
) -> None:
    clock = FakeClock()
    wf = timed(EffectType.START_SUBWORKFLOW, timeout_s=30, timeout_node="late")
    leaf = waiter("evt:leaf", workflow_id="leaf")
    async with await scheduled_on(
        clock, store=store, workflows=[wf, middle(grandchild=True), leaf], poll_interval_s=600
    ) as sr:
        run_id, state = await sr.run(wf)
        assert state.waiting is not None and state.waiting.reason is WaitReason.SUBWORKFLOW
        assert state.waiting.timeout_at == clock.now + timedelta(seconds=30)
        child_id = state.waiting.details["sub_run_id"]  # type: ignore[index]
        [grandchild] = await sr.store.list_runs(parent_run_id=child_id)
        assert grandchild.status is RunStatus.WAITING
        assert await clock.sleeping() == 30
        clock.advance(30)
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.output is not None and done.output["at"] == "late"
        assert done.output["r"]["timed_out"] is True
        child = await wait_for_status(sr, child_id, RunStatus.CANCELLED)
        assert "timed out" in (child.error or "")
        await wait_for_status(sr, grandchild.run_id, RunStatus.CANCELLED)


async def test_a_parent_whose_child_was_cancelled_after_its_deadline_times_out(
    store: Any,
) -> None:
    """A timed-out parent cancels its child before committing its own timeout: a process that
    dies in between leaves the parent due, and the next worker times it out (the cancelled
    child does not fail it)."""
    clock = FakeClock()
    wf = timed(EffectType.START_SUBWORKFLOW, timeout_s=30, timeout_node="late")
    async with await scheduled_on(
        clock, store=store, workflows=[wf, middle(grandchild=False)], auto_start=False
    ) as sr:
        run_id, state = await sr.run(wf)
        assert state.waiting is not None
        clock.advance(30)
        # What the dead process did before its parent's commit: the child is cancelled.
        await sr.runtime.cancel_run(state.waiting.details["sub_run_id"], "parent run timed out")  # type: ignore[index]
        assert await sr.scheduler.poll_once() == 1
        done = await sr.get_state(run_id)
        assert (
            done.status is RunStatus.COMPLETED
            and done.output is not None
            and done.output["at"] == "late"
        )
        assert outcomes(await sr.get_ledger(run_id)) == (1, 0)


async def test_a_sync_child_that_ends_in_time_wins_over_the_timeout(store: Any) -> None:
    clock = FakeClock()
    wf = timed(EffectType.START_SUBWORKFLOW, timeout_s=30, timeout_node="late")
    async with await scheduled_on(
        clock, store=store, workflows=[wf, middle(grandchild=False)], poll_interval_s=600
    ) as sr:
        run_id, _ = await sr.run(wf)
        clock.advance(10)
        await sr.emit_event("evt:child", {"ok": True})
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.output is not None and done.output["at"] == "done"
        clock.advance(60)
        await sr.scheduler.poll_once()
        assert (await sr.get_state(run_id)).output == done.output


async def test_find_waiting_runs_by_deadline(store: Any) -> None:
    clock = FakeClock()
    soon, later = (
        timed(workflow_id="soon", timeout_s=100),
        timed(workflow_id="later", timeout_s=300),
    )
    sleeper, forever = timer(200), waiter("evt:never")
    async with await scheduled_on(
        clock, store=store, workflows=[soon, later, sleeper, forever], auto_start=False
    ) as sr:
        ids = {}
        for wf in (later, forever, sleeper, soon):
            ids[wf.workflow_id], _ = await sr.run(wf)
            clock.advance(1)  # distinct update times
        by_deadline = await sr.find_waiting_runs(order_by="deadline")
        assert [s.workflow_id for s in by_deadline] == ["soon", "timer", "later", "waiter"]
        first_two = await sr.scheduler.find_waiting_runs(order_by="deadline", limit=2)
        assert [s.workflow_id for s in first_two] == ["soon", "timer"]
        # The default order is unchanged: most recently updated first.
        default = await sr.find_waiting_runs()
        assert [s.workflow_id for s in default] == ["soon", "timer", "waiter", "later"]
        users = await sr.find_waiting_runs(wait_reason=WaitReason.USER, order_by="deadline")
        assert [s.workflow_id for s in users] == ["soon", "later"]
        # The store's filter: deadlines at or before a time, earliest first.
        start = clock.now - timedelta(seconds=4)
        due = await sr.store.list_runs(
            status=RunStatus.WAITING, deadline_before=start + timedelta(seconds=250)
        )
        assert [s.workflow_id for s in due] == ["soon", "timer"]
        with pytest.raises(ValueError, match="order"):
            await sr.find_waiting_runs(order_by="soonest")
