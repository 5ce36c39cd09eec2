"""Idempotency keys: ``start``, ``resume`` / ``respond`` and ``emit_event`` retried with the
same key (after a crash or a timeout, from another runtime on the same database) return the
first call's result and apply their effect once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    InvalidArgumentError,
    InvalidTypeError,
    RunNotWaitingError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    ScheduledRuntime,
    Scheduler,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime.core import events
from tests.helpers import FakeClock
from tests.workflows import APPROVAL, waiter

StoreFactory = Callable[[], Any]


def runtime(store: Any, *workflows: WorkflowSpec, clock: FakeClock | None = None) -> Runtime:
    config = RuntimeConfig(clock=clock) if clock is not None else RuntimeConfig()
    return Runtime(store=store, workflow_registry=list(workflows), config=config)


def looping_waiter(key: str) -> WorkflowSpec:
    """Waits on ``key`` again after each event, counting them in ``vars['got']``."""

    def wait(run: RunState, ctx: object) -> StepPlan:
        effect = Effect(EffectType.WAIT_EVENT, {"wait_key": key}, result_key="last")
        return StepPlan(node_id="wait", effect=effect, next_node="count")

    def count(run: RunState, ctx: object) -> StepPlan:
        run.vars["got"] = run.vars.get("got", 0) + 1
        return StepPlan(node_id="count", next_node="wait")

    return WorkflowSpec("looping", "wait", {"wait": wait, "count": count})


async def test_start_with_a_key_creates_one_run_across_runtimes(
    store_factory: StoreFactory,
) -> None:
    a, b = runtime(store_factory(), APPROVAL), runtime(store_factory(), APPROVAL)
    first = await a.start(workflow=APPROVAL, vars={"n": 1}, idempotency_key="order-17")
    again = await b.start(workflow=APPROVAL, vars={"n": 2}, idempotency_key="order-17")
    other = await b.start(workflow=APPROVAL, idempotency_key="order-18")
    assert first == again != other
    assert (await a.get_state(first)).vars["n"] == 1  # the first call's run, untouched
    assert len(await a.store.list_runs(workflow_id="approval")) == 2
    counter_flow = WorkflowSpec("other", "ask", APPROVAL.nodes)
    assert await a.start(workflow=counter_flow, idempotency_key="order-17") != first


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"idempotency_key": "k", "run_id": "r"}, InvalidArgumentError, "not both"),
        ({"idempotency_key": ""}, InvalidArgumentError, "1 to 120 characters"),
        ({"idempotency_key": "x" * 121}, InvalidArgumentError, "1 to 120 characters"),
        ({"idempotency_key": 7}, InvalidTypeError, "must be a string"),
    ],
)
async def test_a_bad_key_is_refused_before_anything_is_stored(
    store: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    rt = runtime(store, APPROVAL)
    with pytest.raises(error, match=message):
        await rt.start(workflow=APPROVAL, **kwargs)
    assert await store.list_runs() == []


async def test_an_answer_retried_with_its_key_is_applied_once(
    store_factory: StoreFactory,
) -> None:
    a, b = runtime(store_factory(), APPROVAL), runtime(store_factory(), APPROVAL)
    run_id, _ = await a.run(APPROVAL)
    answered = await a.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=None, payload={"t": 1}, idempotency_key="k1"
    )
    ledger = await a.get_ledger(run_id)
    # The client timed out and retries, from another process: the same result, nothing new.
    again = await b.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=None, payload={"t": 2}, idempotency_key="k1"
    )
    assert again.to_dict() == answered.to_dict()
    assert await b.get_ledger(run_id) == ledger
    assert ledger[1]["idempotency_key"] == "answer:k1"
    with pytest.raises(RunNotWaitingError):  # another key is another answer: too late
        await b.resume(workflow=APPROVAL, run_id=run_id, wait_key=None, idempotency_key="k2")


async def test_respond_retried_with_its_key_returns_the_state(store: Any) -> None:
    rt = runtime(store, APPROVAL)
    sr = ScheduledRuntime(rt, Scheduler(rt))
    run_id, _ = await rt.run(APPROVAL)
    state = await sr.respond(run_id, {"text": "yes"}, idempotency_key="click-1")
    assert state.status is RunStatus.COMPLETED
    assert (await sr.respond(run_id, {"text": "no"}, idempotency_key="click-1")) == state
    assert state.output == {"answer": {"text": "yes"}}
    with pytest.raises(RunNotWaitingError):
        await sr.respond(run_id, {"text": "no"}, idempotency_key="click-2")


async def test_a_buffered_event_emitted_twice_with_its_key_is_stored_once(
    store_factory: StoreFactory,
) -> None:
    a, b = (
        runtime(store_factory(), waiter("evt:paid")),
        runtime(store_factory(), waiter("evt:paid")),
    )
    early, _ = await a.run(waiter("evt:paid"))
    first = await a.emit_event("evt:paid", {"n": 1}, buffer_s=60, idempotency_key="pay-1")
    again = await b.emit_event("evt:paid", {"n": 2}, buffer_s=60, idempotency_key="pay-1")
    assert [s.run_id for s in first] == [s.run_id for s in again] == [early]
    assert again[0].output == {"event": {"n": 1}}
    # A run that starts waiting now receives the buffered event once, not twice.
    late, state = await b.run(waiter("evt:paid"))
    assert state.status is RunStatus.COMPLETED
    assert [r for r in await b.get_ledger(late) if r["result"] == {"n": 1}]
    assert not [r for r in await b.get_ledger(late) if r["result"] == {"n": 2}]


async def test_an_emit_that_crashed_half_way_is_finished_by_its_retry(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call resumed a run and crashed before it kept its result: the retry resumes
    no run twice, even one that waits on the key again."""
    flow = looping_waiter("evt:tick")
    rt = runtime(store, flow)
    run_id, _ = await rt.run(flow)
    real = store.record_emit

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the process died here")

    monkeypatch.setattr(store, "record_emit", crash)
    with pytest.raises(ConnectionError):
        await rt.emit_event("evt:tick", {"n": 1}, idempotency_key="tick-1")
    assert (await rt.get_state(run_id)).vars["got"] == 1  # it waits on the key again
    monkeypatch.setattr(store, "record_emit", real)
    await rt.emit_event("evt:tick", {"n": 1}, idempotency_key="tick-1")
    assert (await rt.get_state(run_id)).vars["got"] == 1  # not a second time
    await rt.emit_event("evt:tick", {"n": 2}, idempotency_key="tick-2")
    assert (await rt.get_state(run_id)).vars["got"] == 2  # another key: another event


async def test_emit_keys_are_forgotten_after_a_week(store: Any) -> None:
    clock = FakeClock()
    rt = runtime(store, waiter("evt:x"), clock=clock)
    await rt.emit_event("evt:x", {}, buffer_s=1, idempotency_key="old")
    assert await store.emit_result("old") == []
    clock.advance(timedelta(days=7, seconds=1).total_seconds())
    await events.clean_expired(store, clock())
    assert await store.emit_result("old") is None
