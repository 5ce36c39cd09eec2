"""Scheduler, events and subworkflows on memory, a SQLite file and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from abstractruntime import (
    RunLeasedError,
    RunNotWaitingError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    WorkflowSpec,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.core.kernel import encode_state
from abstractruntime.core.serde import utc_now
from abstractruntime.errors import StoreError
from abstractruntime.scheduler import ScheduledRuntime
from tests.helpers import FakeClock, eventually, scheduled_on, wait_for_status
from tests.helpers.state import own_vars
from tests.workflows import APPROVAL, counter, parent_of, timer, waiter

StoreFactory = Callable[[], Any]


async def scheduled(
    store: Any, *workflows: WorkflowSpec, clock: FakeClock | None = None, **kw: Any
) -> ScheduledRuntime:
    """A scheduled runtime on real time, or on ``clock``'s virtual time."""
    kw.setdefault("poll_interval_s", 0.2)
    if clock is not None:
        return await scheduled_on(clock, store=store, workflows=list(workflows), **kw)
    return await create_scheduled_runtime(store=store, workflows=list(workflows), **kw)


# -- on virtual time: the scheduler sleeps on a FakeClock, so its sleeps are exact -------------


async def test_wait_until_is_resumed_by_the_scheduler_on_time(store: Any) -> None:
    clock = FakeClock()
    started = clock.now
    async with await scheduled(store, timer(0.3), poll_interval_s=5.0, clock=clock) as sr:
        run_id, state = await sr.run(timer(0.3))
        assert state.status is RunStatus.WAITING
        # A long poll interval: the scheduler sleeps until the due time, not until the poll.
        assert await clock.sleeping() == 0.3
        clock.advance(0.3)
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.output["woke"] == {"until": (started + timedelta(seconds=0.3)).isoformat()}
        assert done.updated_at == started + timedelta(seconds=0.3)
        assert sr.stats.runs_resumed >= 1 and sr.stats.poll_cycles >= 1


async def test_an_idle_scheduler_polls_every_poll_interval(store_factory: StoreFactory) -> None:
    """Without a wake-up (another process's run, no NOTIFY), the next poll finds a run."""
    clock = FakeClock()
    started = clock.now
    wf = counter(1)
    async with await scheduled(
        store_factory(), wf, poll_interval_s=7.0, clock=clock, listen=False
    ) as sr:
        assert await clock.sleeping() == 7.0
        cycles = sr.stats.poll_cycles
        assert await clock.skip() == 7.0
        await eventually(lambda: sr.stats.poll_cycles == cycles + 1, "no poll after 7 s")
        assert await clock.sleeping() == 7.0

        other = Runtime(store=store_factory(), config=RuntimeConfig(clock=clock))
        run_id = await other.start(workflow=wf)
        assert await clock.sleeping() == 7.0  # nothing told the scheduler
        assert (await sr.get_state(run_id)).status is RunStatus.RUNNING
        assert sr.stats.runs_resumed == 0
        clock.advance(7.0)
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.updated_at == started + timedelta(seconds=14)


async def test_database_errors_back_off_exponentially_up_to_30_s(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    failures = 11
    claim_due = store.claim_due

    async def unreachable(*args: Any) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("the database is unreachable")
        return await claim_due(*args)

    monkeypatch.setattr(store, "claim_due", unreachable)
    # No LISTEN: its connecting wakes the scheduler, a cycle of its own between two backoffs.
    async with await scheduled(
        store, counter(1), poll_interval_s=60.0, clock=clock, listen=False
    ) as sr:
        backoffs = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
        for backoff in backoffs:
            assert await clock.skip() == backoff
        # Reachable again: back to polling, and the backoff starts from scratch.
        assert await clock.sleeping() == 60.0
        assert len(sr.stats.errors) == 11
        assert clock.sleeps == [*backoffs, 60.0]


async def test_a_dead_workers_run_is_taken_over_when_its_lease_ends(store: Any) -> None:
    clock = FakeClock()
    started = clock.now
    wf = counter(2)
    run_id = await Runtime(store=store, config=RuntimeConfig(clock=clock)).start(workflow=wf)
    await store.claim_run(run_id, "dead-worker", clock.now, clock.now + timedelta(seconds=60))
    async with await scheduled(store, wf, poll_interval_s=100.0, clock=clock) as sr:
        # A claimed run is due when its lease ends: the scheduler sleeps until then.
        assert await clock.sleeping() == 60.0
        assert (await sr.get_state(run_id)).status is RunStatus.RUNNING
        assert sr.stats.runs_resumed == 0
        clock.advance(60.0)
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.output == {"n": 2}
        assert done.updated_at == started + timedelta(seconds=60)


# -- on real time --------------------------------------------------------------------------


async def test_runs_started_without_ticking_are_driven_by_the_scheduler(store: Any) -> None:
    wf = counter(4)
    async with await scheduled(store, wf) as sr:
        ids = [await sr.start(workflow=wf) for _ in range(5)]
        for run_id in ids:
            state = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
            assert state.output == {"n": 4}
            assert verify_ledger_chain(await sr.get_ledger(run_id))["ok"]


async def test_a_slow_run_does_not_hold_up_the_others(store: Any) -> None:
    gate = asyncio.Event()

    async def slow(run: RunState, ctx: Any) -> StepPlan:
        await gate.wait()
        return StepPlan(node_id="slow", complete_output={})

    slow_wf = WorkflowSpec("slow", "slow", {"slow": slow})
    fast_wf = counter(3, "fast")
    async with await scheduled(store, slow_wf, fast_wf) as sr:
        slow_id = await sr.start(workflow=slow_wf)
        await eventually(lambda: sr.scheduler.inflight == 1, "the slow run was not claimed")
        fast_ids = [await sr.start(workflow=fast_wf) for _ in range(3)]
        for run_id in fast_ids:
            await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert (await sr.get_state(slow_id)).status is RunStatus.RUNNING
        gate.set()
        await wait_for_status(sr, slow_id, RunStatus.COMPLETED)


async def test_respond_finds_the_wait_key(store: Any) -> None:
    async with await scheduled(store, APPROVAL) as sr:
        run_id, _ = await sr.run(APPROVAL)
        pending = await sr.find_waiting_runs(wait_reason=WaitReason.USER)
        assert [s.run_id for s in pending] == [run_id]
        assert pending[0].waiting.prompt == "Approve?"
        state = await sr.respond(run_id, {"answer": "yes"})
        assert state.status is RunStatus.COMPLETED
        assert state.output == {"answer": {"answer": "yes"}}
        assert await sr.find_waiting_runs() == []
        with pytest.raises(RunNotWaitingError):
            await sr.respond(run_id, {"answer": "again"})


async def test_emit_event_resumes_every_waiting_run_once(store: Any) -> None:
    wf = waiter("evt:shipped")
    other = waiter("evt:other", "other")
    async with await scheduled(store, wf, other) as sr:
        ids = [(await sr.run(wf))[0] for _ in range(4)]
        other_id, _ = await sr.run(other)
        # Two callers race to emit the same event: each run is resumed exactly once.
        first, second = await asyncio.gather(
            sr.emit_event("evt:shipped", {"n": 1}), sr.emit_event("evt:shipped", {"n": 2})
        )
        assert sorted(s.run_id for s in first + second) == sorted(ids)
        for run_id in ids:
            state = await sr.get_state(run_id)
            assert state.status is RunStatus.COMPLETED
            assert state.output["event"] in ({"n": 1}, {"n": 2})
            ledger = await sr.get_ledger(run_id)
            assert [r["status"] for r in ledger] == ["waiting", "completed", "completed"]
        assert (await sr.get_state(other_id)).status is RunStatus.WAITING
        assert await sr.emit_event("evt:nobody") == []


async def test_resume_event_with_a_wrong_key_is_refused(store: Any) -> None:
    async with await scheduled(store, waiter()) as sr:
        run_id, _ = await sr.run(waiter())
        with pytest.raises(ValueError, match="waits on 'evt:go'"):
            await sr.resume_event(run_id=run_id, wait_key="evt:no", payload={})
        state = await sr.resume_event(run_id=run_id, wait_key="evt:go", payload={"ok": 1})
        assert state.output == {"event": {"ok": 1}}


async def test_sync_subworkflow_returns_the_child_output(store: Any) -> None:
    child = counter(2, "child")
    parent = parent_of("child")
    async with await scheduled(store, child, parent) as sr:
        run_id, state = await sr.run(parent)
        assert state.status is RunStatus.COMPLETED
        sub_run_id = state.output["child"]["sub_run_id"]
        assert state.output["child"]["output"] == {"n": 2}
        child_state = await sr.get_state(sub_run_id)
        assert child_state.parent_run_id == run_id and child_state.vars["x"] == 1


async def test_waiting_child_resumes_its_parent_automatically(store_factory: StoreFactory) -> None:
    child = waiter("evt:child", "child")
    parent = parent_of("child")
    async with await scheduled(store_factory(), child, parent) as sr:
        run_id, state = await sr.run(parent)
        assert state.status is RunStatus.WAITING
        assert state.waiting.reason is WaitReason.SUBWORKFLOW
        sub_run_id = state.waiting.details["sub_run_id"]
        # The event reaches the child through a runtime that only knows the child workflow.
        async with await scheduled(store_factory(), child, auto_start=False) as other:
            await other.emit_event("evt:child", {"done": True})
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        assert done.output["child"] == {
            "sub_run_id": sub_run_id,
            "output": {"event": {"done": True}, "x": 1},
        }
        assert verify_ledger_chain(await sr.get_ledger(run_id))["ok"]


async def test_failed_child_fails_its_parent(store: Any) -> None:
    def boom(run: RunState, ctx: Any) -> StepPlan:
        raise RuntimeError("child exploded")

    child = WorkflowSpec("child", "boom", {"boom": boom})
    async with await scheduled(store, child, parent_of("child")) as sr:
        _, state = await sr.run(parent_of("child"))
        assert state.status is RunStatus.FAILED
        assert "subworkflow 'child'" in state.error and "child exploded" in state.error


async def test_async_subworkflow_returns_at_once_and_runs_in_the_scheduler(store: Any) -> None:
    child = counter(3, "child")
    parent = parent_of("child", run_async=True)
    async with await scheduled(store, child, parent) as sr:
        _, state = await sr.run(parent)
        assert state.status is RunStatus.COMPLETED
        sub_run_id = state.output["child"]["sub_run_id"]
        done = await wait_for_status(sr, sub_run_id, RunStatus.COMPLETED)
        assert done.output == {"n": 3}


async def test_grandchildren_and_cancel_with_children(store: Any) -> None:
    leaf = waiter("evt:leaf", "leaf")
    middle = parent_of("leaf", workflow_id="middle")
    top = parent_of("middle", workflow_id="top")
    async with await scheduled(store, leaf, middle, top) as sr:
        top_id, state = await sr.run(top)
        assert state.status is RunStatus.WAITING
        middle_id = state.waiting.details["sub_run_id"]
        middle_state = await sr.get_state(middle_id)
        assert middle_state.status is RunStatus.WAITING
        leaf_id = middle_state.waiting.details["sub_run_id"]
        assert (await sr.get_state(leaf_id)).parent_run_id == middle_id

        cancelled = await sr.cancel_with_children(top_id, reason="stop all")
        assert [state.run_id for state in cancelled] == [top_id, middle_id, leaf_id]
        assert all(state.status is RunStatus.CANCELLED for state in cancelled)
        for run_id in (middle_id, leaf_id):
            assert (await sr.get_state(run_id)).status is RunStatus.CANCELLED
        assert await sr.cancel_with_children(top_id) == []  # nothing left to cancel
        assert await sr.emit_event("evt:leaf", {}) == []


async def test_grandchild_completion_bubbles_up(store: Any) -> None:
    leaf = waiter("evt:leaf2", "leaf")
    middle = parent_of("leaf", workflow_id="middle")
    top = parent_of("middle", workflow_id="top")
    async with await scheduled(store, leaf, middle, top) as sr:
        top_id, _ = await sr.run(top)
        await sr.emit_event("evt:leaf2", {"v": 7})
        done = await wait_for_status(sr, top_id, RunStatus.COMPLETED)
        assert done.output["child"]["output"]["child"]["output"]["event"] == {"v": 7}


async def test_a_parent_whose_child_ended_before_its_wait_was_stored_is_resumed(
    store: Any,
) -> None:
    """The lost wake-up the chaos test found: the parent's step saw its child still running
    (driven elsewhere), the child then ended - its commit wakes a parent only if it already waits,
    and this one was still running - and the parent's process died right after committing its
    wait, before re-checking the child. The committed wait must be due once for a worker."""
    child_wf, parent_wf = counter(1, "child"), parent_of("child")
    rt = Runtime(store=store, workflow_registry=[child_wf, parent_wf])
    child_id, child = await rt.run(child_wf)
    assert child.status is RunStatus.COMPLETED
    parent = await rt.start(workflow=parent_wf)
    handle = await store.claim_run(
        parent, "dead-worker", utc_now(), utc_now() + timedelta(seconds=60)
    )
    state = handle.state
    state.status = RunStatus.WAITING
    state.waiting = WaitState(
        reason=WaitReason.SUBWORKFLOW,
        wait_key=f"subworkflow:{child_id}",
        resume_to_node="done",
        result_key="child",
        details={"sub_run_id": child_id, "workflow_id": "child"},
    )
    record = StepRecord(run_id=parent, step_id="s", node_id="call", status=StepStatus.WAITING)
    await store.commit_step(
        handle, state, encode_state(state), [record], now=utc_now(), lease_until=None
    )
    async with await scheduled(store, child_wf, parent_wf) as sr:
        done = await wait_for_status(sr, parent, RunStatus.COMPLETED)
    assert done.output is not None and done.output["child"]["sub_run_id"] == child_id


async def test_stop_waits_for_inflight_runs_then_releases(store: Any) -> None:
    gate = asyncio.Event()

    async def slow(run: RunState, ctx: Any) -> StepPlan:
        await gate.wait()
        return StepPlan(node_id="slow", complete_output={})

    wf = WorkflowSpec("slow", "slow", {"slow": slow})
    sr = await scheduled(store, wf)
    run_id = await sr.start(workflow=wf)
    await eventually(lambda: sr.scheduler.inflight, "the run was not claimed", timeout=5)
    await sr.scheduler.stop(grace_s=0.1)  # the node never finishes: cancelled, lease released
    assert sr.runtime.held_runs == frozenset()
    state = await sr.get_state(run_id)
    assert state.status is RunStatus.RUNNING  # nothing lost: another worker can take it
    gate.set()
    assert (await sr.tick(run_id)).status is RunStatus.COMPLETED
    await sr.stop()


async def test_racing_resumers_resume_once_and_the_loser_is_told(
    store_factory: StoreFactory,
) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()

    async def slow_after(run: RunState, ctx: Any) -> StepPlan:
        entered.set()
        await gate.wait()
        return StepPlan(node_id="done", complete_output=own_vars(run))

    wf = waiter("evt:once")
    wf.nodes["done"] = slow_after
    async with await scheduled(store_factory(), wf) as a, await scheduled(store_factory(), wf) as b:
        run_id, _ = await a.run(wf)
        first = asyncio.create_task(
            a.resume_event(run_id=run_id, wait_key="evt:once", payload={"by": "a"})
        )
        await eventually(entered.is_set, "a never reached its next node")  # a holds the run
        with pytest.raises((RunLeasedError, RunNotWaitingError)) as info:
            await b.resume_event(run_id=run_id, wait_key="evt:once", payload={"by": "b"})
        assert run_id in str(info.value)
        gate.set()
        state = await first
        assert state.output["event"] == {"by": "a"}
        with pytest.raises(RunNotWaitingError, match="completed, not waiting"):
            await b.resume_event(run_id=run_id, wait_key="evt:once", payload={"by": "b"})
        ledger = await a.get_ledger(run_id)
        assert [r["status"] for r in ledger] == ["waiting", "completed", "completed"]


@pytest.mark.postgres
async def test_notify_wakes_an_idle_postgres_scheduler_at_once(pg_url: str) -> None:
    """A run started through another pool (another process, say) is picked up long before the
    30 s poll: the commit's NOTIFY wakes the LISTENing scheduler."""
    from abstractruntime import Runtime
    from abstractruntime.storage import SqlStore

    wf = counter(2)
    async with (
        await create_scheduled_runtime(
            database_url=pg_url, workflows=[wf], poll_interval_s=30.0
        ) as sr,
        SqlStore(pg_url) as producer,
    ):
        await asyncio.sleep(0.5)  # idle, listening
        cycles = sr.stats.poll_cycles
        run_id = await Runtime(store=producer).start(workflow=wf)
        await wait_for_status(sr, run_id, RunStatus.COMPLETED, timeout=5)
        assert sr.stats.poll_cycles > cycles
