"""Events that wait for their run, and messages to one run, on every backend (issue 12)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    InvalidArgumentError,
    RunFinishedError,
    RunNotFoundError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    WorkflowSpec,
    verify_ledger_chain,
)
from abstractruntime.core import events
from tests.helpers import FakeClock
from tests.workflows import waiter

StoreFactory = Callable[[], Any]
_60S = timedelta(seconds=60)


def inbox(key: str = "mail", rounds: int = 3, workflow_id: str = "inbox") -> WorkflowSpec:
    """Waits on ``key`` ``rounds`` times, keeping each payload in ``vars["got"]``."""

    def wait(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(
            node_id="wait",
            effect=Effect(EffectType.WAIT_EVENT, {"wait_key": key}, result_key="last"),
            next_node="keep",
        )

    def keep(run: RunState, ctx: object) -> StepPlan:
        run.vars.setdefault("got", []).append(run.vars["last"])
        if len(run.vars["got"]) >= rounds:
            return StepPlan(node_id="keep", complete_output={"got": run.vars["got"]})
        return StepPlan(node_id="keep", next_node="wait")

    return WorkflowSpec(workflow_id, "wait", {"wait": wait, "keep": keep})


def gate(key: str = "evt:go", workflow_id: str = "gate") -> WorkflowSpec:
    """Runs one step, then waits on ``key`` (the run is started before it waits)."""
    inner = waiter(key, workflow_id)
    return WorkflowSpec(
        workflow_id,
        "first",
        {
            "first": lambda run, ctx: StepPlan(node_id="first", next_node="wait"),
            **inner.nodes,
        },
    )


def make(store: Any, clock: FakeClock, *workflows: WorkflowSpec, **config: Any) -> Runtime:
    return Runtime(
        store=store, workflow_registry=list(workflows), config=RuntimeConfig(clock=clock, **config)
    )


async def test_buffered_event_reaches_a_run_that_waits_later(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, waiter("evt:go"))
    assert await rt.emit_event("evt:go", {"n": 1}, buffer_s=60) == []  # nobody waits yet
    clock.advance(59)
    run_id, state = await rt.run(waiter("evt:go"))
    assert state.status is RunStatus.COMPLETED
    assert state.vars["event"] == {"n": 1}
    assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]


async def test_a_buffered_event_is_received_once_per_run(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, inbox("k", rounds=2))
    await rt.emit_event("k", {"n": 1}, buffer_s=60)
    run_id, state = await rt.run(inbox("k", rounds=2))
    assert state.status is RunStatus.WAITING  # got it once, waits again: not a second time
    assert state.vars["got"] == [{"n": 1}]
    await rt.emit_event("k", {"n": 2}, buffer_s=60)
    done = await rt.get_state(run_id)
    assert done.status is RunStatus.COMPLETED and done.vars["got"] == [{"n": 1}, {"n": 2}]
    # And a second run receives the first event, then the second, each once.
    _, other = await rt.run(inbox("k", rounds=2))
    assert other.status is RunStatus.COMPLETED and other.vars["got"] == [{"n": 1}, {"n": 2}]


async def test_an_expired_event_is_not_delivered(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, waiter("evt:go"))
    await rt.emit_event("evt:go", {"n": 1}, buffer_s=10)
    clock.advance(10)
    _, state = await rt.run(waiter("evt:go"))
    assert state.status is RunStatus.WAITING


async def test_without_a_buffer_an_event_is_lost_as_before(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, waiter("evt:go"))
    assert await rt.emit_event("evt:go", {"n": 1}) == []
    run_id, state = await rt.run(waiter("evt:go"))
    assert state.status is RunStatus.WAITING
    resumed = await rt.emit_event("evt:go", {"n": 2})
    assert [s.run_id for s in resumed] == [run_id]
    assert resumed[0].vars["event"] == {"n": 2}


async def test_the_config_default_buffers(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, waiter("evt:go"), event_buffer_s=30)
    await rt.emit_event("evt:go", {"n": 1})
    _, state = await rt.run(waiter("evt:go"))
    assert state.status is RunStatus.COMPLETED
    off = make(store, clock, waiter("evt:other"), event_buffer_s=30)
    await off.emit_event("evt:other", {"n": 1}, buffer_s=0)
    _, state = await off.run(waiter("evt:other"))
    assert state.status is RunStatus.WAITING


async def test_a_buffered_emit_resumes_the_runs_waiting_now(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, inbox("k", rounds=2))
    run_id, _ = await rt.run(inbox("k", rounds=2))
    resumed = await rt.emit_event("k", {"n": 1}, buffer_s=60)
    assert [s.run_id for s in resumed] == [run_id]
    assert resumed[0].status is RunStatus.WAITING  # received once, not again from the buffer
    assert resumed[0].vars["got"] == [{"n": 1}]


async def test_expired_events_are_cleaned_in_batches(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock)
    for n in range(5):
        await rt.emit_event("gone", {"n": n}, buffer_s=10)
    await rt.emit_event("kept", {"n": 0}, buffer_s=100)
    clock.advance(10)
    assert await events.clean_expired(rt.store, clock(), limit=3) == 3
    assert await events.clean_expired(rt.store, clock(), limit=3) == 2
    assert await events.clean_expired(rt.store, clock(), limit=3) == 0
    _, state = await make(store, clock, waiter("kept")).run(waiter("kept"))
    assert state.status is RunStatus.COMPLETED


async def test_the_scheduler_cleans_expired_events(store: Any) -> None:
    from abstractruntime import create_scheduled_runtime

    clock = FakeClock()
    sr = await create_scheduled_runtime(
        store=store, config=RuntimeConfig(clock=clock), auto_start=False, listen=False
    )
    await sr.emit_event("gone", {"n": 1}, buffer_s=1)
    clock.advance(1)
    await sr.scheduler.poll_once()
    assert await events.clean_expired(store, clock()) == 0
    await sr.runtime.aclose()


# -- messages ------------------------------------------------------------------------------------


async def test_messages_sent_before_the_wait_arrive_in_order_one_per_wait(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, inbox("mail", rounds=3))
    run_id = await rt.start(workflow=inbox("mail", rounds=3))
    for n in range(4):
        state = await rt.send(run_id, "mail", {"n": n})
        assert state.status is RunStatus.RUNNING  # not driven by send: it does not wait yet
    done = await rt.tick(workflow=inbox("mail", rounds=3), run_id=run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.vars["got"] == [{"n": 0}, {"n": 1}, {"n": 2}]
    # The fourth is kept for a wait that never comes; another key's wait does not take it.
    assert await rt.store.find_delivery(run_id, "mail", clock()) is not None  # type: ignore[attr-defined]


async def test_a_message_to_a_waiting_run_is_delivered_at_once(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, inbox("mail", rounds=2))
    run_id, state = await rt.run(inbox("mail", rounds=2))
    assert state.status is RunStatus.WAITING
    state = await rt.send(run_id, "mail", {"n": 1})
    assert state.status is RunStatus.WAITING and state.vars["got"] == [{"n": 1}]
    state = await rt.send(run_id, "other", {"n": 99})  # another key: kept, not delivered
    assert state.vars["got"] == [{"n": 1}]
    state = await rt.send(run_id, "mail", {"n": 2})
    assert state.status is RunStatus.COMPLETED and state.output == {"got": [{"n": 1}, {"n": 2}]}
    assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]


async def test_send_to_an_unknown_or_finished_run_errors(store: Any) -> None:
    clock = FakeClock()
    rt = make(store, clock, inbox("mail", rounds=1))
    with pytest.raises(RunNotFoundError):
        await rt.send("no-such-run", "mail", {})
    run_id, _ = await rt.run(inbox("mail", rounds=1))
    await rt.send(run_id, "mail", {"n": 1})
    assert (await rt.get_state(run_id)).status is RunStatus.COMPLETED
    with pytest.raises(RunFinishedError, match="completed"):
        await rt.send(run_id, "mail", {"n": 2})
    with pytest.raises(InvalidArgumentError):
        await rt.send(run_id, "", {})
    with pytest.raises(TypeError, match="must be a dict"):
        await rt.emit_event("k", ["not", "a", "dict"], buffer_s=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="event key"):
        await rt.emit_event("k\x00", {}, buffer_s=1)
    assert await rt.emit_event("k\x00", {}) == []  # without a buffer: only looked up, as ever


async def test_a_run_of_an_unknown_workflow_is_made_due_for_a_worker(store: Any) -> None:
    clock = FakeClock()
    worker = make(store, clock, inbox("mail", rounds=1))
    run_id, _ = await worker.run(inbox("mail", rounds=1))
    blind = make(store, clock)  # knows no workflow, like the CLI
    state = await blind.send(run_id, "mail", {"n": 1})
    assert state.status is RunStatus.WAITING
    handles = await store.claim_due("w", clock(), worker.leases.until(clock()), 10)
    assert [h.state.run_id for h in handles] == [run_id]
    done = await worker.drive_claimed(handles[0])
    assert done.state.status is RunStatus.COMPLETED
    assert done.state.vars["got"] == [{"n": 1}]


async def test_two_runtimes_race_to_deliver_each_message_once(store_factory: StoreFactory) -> None:
    rounds = 20
    clock = FakeClock()
    flow = inbox("mail", rounds=rounds)
    a = make(store_factory(), clock, flow)
    b = make(store_factory(), clock, flow)
    run_id, _ = await a.run(flow)

    async def sender(rt: Runtime, parity: int) -> None:
        for n in range(parity, rounds, 2):
            await rt.send(run_id, "mail", {"n": n})

    await asyncio.gather(sender(a, 0), sender(b, 1))
    state = await a.get_state(run_id)
    assert state.status is RunStatus.COMPLETED
    got = [item["n"] for item in state.vars["got"]]
    assert sorted(got) == list(range(rounds))  # each exactly once
    assert [n for n in got if n % 2 == 0] == list(range(0, rounds, 2))  # FIFO per sender
    assert await a.store.find_delivery(run_id, "mail", clock()) is None  # type: ignore[attr-defined]
    assert verify_ledger_chain(await a.get_ledger(run_id))["ok"]


async def test_event_and_wait_racing_never_lose_the_event(store_factory: StoreFactory) -> None:
    """Many rounds of an emit racing with a run reaching its wait: every run gets it once."""
    clock = FakeClock()
    emitter = make(store_factory(), clock)
    walker = make(store_factory(), clock)
    for n in range(10):
        key = f"race:{n}"
        flow = gate(key, "gate")
        walker.set_workflow_registry([flow])
        emitter.set_workflow_registry([flow])
        run_id = await walker.start(workflow=flow)
        await asyncio.gather(
            emitter.emit_event(key, {"n": n}, buffer_s=60),
            walker.tick(workflow=flow, run_id=run_id),
        )
        state = await walker.get_state(run_id)
        if state.status is not RunStatus.COMPLETED:  # both looked while the other wrote: no
            raise AssertionError(f"round {n}: the event was lost ({state.status.value})")
        assert state.vars["event"] == {"n": n}


# -- the stores of the original's pair ----------------------------------------------------------


async def test_a_paired_store_keeps_events_and_messages_in_memory() -> None:
    from abstractruntime import InMemoryLedgerStore, InMemoryRunStore
    from abstractruntime.core.paired import PairedStore

    clock = FakeClock()
    rt = make(PairedStore(InMemoryRunStore(), InMemoryLedgerStore()), clock, inbox("k", rounds=2))
    await rt.emit_event("k", {"n": 1}, buffer_s=60)
    run_id, state = await rt.run(inbox("k", rounds=2))
    assert state.vars["got"] == [{"n": 1}] and state.status is RunStatus.WAITING
    state = await rt.send(run_id, "k", {"n": 2})
    assert state.output == {"got": [{"n": 1}, {"n": 2}]}


async def test_the_file_stores_refuse_events_and_messages(tmp_path: Any) -> None:
    from abstractruntime import JsonFileRunStore, JsonlLedgerStore

    rt = Runtime(
        run_store=JsonFileRunStore(tmp_path),
        ledger_store=JsonlLedgerStore(tmp_path),
        workflow_registry=[waiter("k")],
    )
    try:
        with pytest.raises(InvalidArgumentError, match="not supported by the file stores"):
            await rt.emit_event("k", {}, buffer_s=60)
        run_id, _ = await rt.run(waiter("k"))
        with pytest.raises(InvalidArgumentError, match="not supported by the file stores"):
            await rt.send(run_id, "k", {})
        resumed = await rt.emit_event("k", {"n": 1})  # without a buffer: as ever
        assert [s.status for s in resumed] == [RunStatus.COMPLETED]
    finally:
        await rt.aclose()


# -- a process that dies between its write and its look -----------------------------------------


async def test_the_scheduler_wakes_a_run_left_waiting_with_its_delivery(store: Any) -> None:
    """An emitter that died after storing its event (before resuming the runs waiting on it),
    and a run that committed a wait on a key with a message there, but died before looking:
    the scheduler's housekeeping makes them due, and a worker delivers."""
    from abstractruntime import create_scheduled_runtime

    clock = FakeClock()
    flows = [waiter("evt:k", "w1"), inbox("mail", rounds=1, workflow_id="w2")]
    sr = await create_scheduled_runtime(
        store=store,
        workflows=flows,
        config=RuntimeConfig(clock=clock),
        auto_start=False,
        listen=False,
    )
    first, _ = await sr.run(flows[0])
    second, _ = await sr.run(flows[1])
    # What the dead processes left: an event stored but not emitted, a message not delivered.
    await store.buffer_event("evt:k", '{"n": 1}', now=clock(), expires_at=clock() + _60S)
    await store.send_message(second, "mail", '{"n": 2}', now=clock())
    assert await store.wake_deliverable(clock(), 500) == 2
    assert await store.wake_deliverable(clock(), 500) == 0  # due already: once
    await sr.scheduler.poll_once()
    assert (await sr.get_state(first)).vars["event"] == {"n": 1}
    assert (await sr.get_state(second)).output == {"got": [{"n": 2}]}
    # A run that received the event and waits again is not woken by it again.
    _, state = await sr.run(inbox("evt:k", rounds=2, workflow_id="w3"))
    assert state.vars["got"] == [{"n": 1}]
    assert await store.wake_deliverable(clock(), 500) == 0
    await sr.runtime.aclose()


async def test_ask_user_with_a_wait_key_receives_a_buffered_answer(store: Any) -> None:
    ask = WorkflowSpec(
        "ask",
        "ask",
        {
            "ask": lambda run, ctx: StepPlan(
                node_id="ask",
                effect=Effect(
                    EffectType.ASK_USER,
                    {"prompt": "Ship?", "wait_key": "answer:order-7"},
                    result_key="answer",
                ),
                next_node="done",
            ),
            "done": lambda run, ctx: StepPlan(node_id="done", complete_output=run.vars["answer"]),
        },
    )
    clock = FakeClock()
    rt = make(store, clock, ask)
    await rt.emit_event("answer:order-7", {"answer": "yes"}, buffer_s=3600)
    _, state = await rt.run(ask)
    assert state.status is RunStatus.COMPLETED and state.output == {"answer": "yes"}
