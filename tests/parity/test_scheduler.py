"""The original's ``tests/test_scheduler.py``, ported: registry, Scheduler, ScheduledRuntime.

One test per test of AbstractRuntime 0.2.0, with ``await``, on the original's in-memory pair and
on a SQLite file (``backend``). Where the original slept, or edited a stored ``waiting.until``
into the past, to make a timer due, these tests move a ``FakeClock`` instead: the runtime reads
it (``RuntimeConfig(clock=...)``) and the scheduler sleeps on it (``Scheduler(wait=...)``). The
edit itself still works and is tested once, in ``test_callbacks_on_resume``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    Scheduler,
    StepPlan,
    WaitReason,
    WorkflowRegistry,
    WorkflowSpec,
    create_scheduled_runtime,
)
from tests.helpers import FakeClock, wait_for_status
from tests.parity.backends import Backend, backend_fixture

backend = backend_fixture()

# -- the original's workflows -----------------------------------------------------------------


def wait_until_workflow(wait_seconds: float, workflow_id: str = "wait_until_wf") -> WorkflowSpec:
    """Waits until ``wait_seconds`` after its first step (on the runtime's clock), then ends."""

    def start_node(run: RunState, ctx: Any) -> StepPlan:
        until = ctx.now() + timedelta(seconds=wait_seconds)
        return StepPlan(
            node_id="start",
            effect=Effect(
                EffectType.WAIT_UNTIL, {"until": until.isoformat()}, result_key="wait_result"
            ),
            next_node="done",
        )

    def done_node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"status": "completed", "waited": True})

    return WorkflowSpec(workflow_id, "start", {"start": start_node, "done": done_node})


def wait_event_workflow() -> WorkflowSpec:
    def start_node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="start",
            effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "my_event"}, result_key="event_data"),
            next_node="done",
        )

    def done_node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="done",
            complete_output={"status": "completed", "event_data": run.vars.get("event_data")},
        )

    return WorkflowSpec("wait_event_wf", "start", {"start": start_node, "done": done_node})


def ask_user_workflow() -> WorkflowSpec:
    def start_node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="start",
            effect=Effect(
                EffectType.ASK_USER,
                {"prompt": "What is your name?", "wait_key": "user_prompt"},
                result_key="user_response",
            ),
            next_node="done",
        )

    def done_node(run: RunState, ctx: Any) -> StepPlan:
        name = run.vars.get("user_response", {}).get("text", "unknown")
        return StepPlan(node_id="done", complete_output={"greeting": f"Hello, {name}!"})

    return WorkflowSpec("ask_user_wf", "start", {"start": start_node, "done": done_node})


def immediate_workflow() -> WorkflowSpec:
    return WorkflowSpec(
        "immediate_wf",
        "start",
        {"start": lambda run, ctx: StepPlan(node_id="start", complete_output={"done": True})},
    )


def on_clock(backend: Backend, clock: FakeClock) -> Runtime:
    return Runtime(**backend.kwargs, config=RuntimeConfig(clock=clock))


# -- WorkflowRegistry (no storage involved) ---------------------------------------------------


def test_register_and_get() -> None:
    registry = WorkflowRegistry()
    wf = wait_event_workflow()
    registry.register(wf)
    assert registry.get(wf.workflow_id) is wf
    assert wf.workflow_id in registry
    assert len(registry) == 1


def test_register_duplicate_raises() -> None:
    registry = WorkflowRegistry()
    wf = wait_event_workflow()
    registry.register(wf)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(wf)


def test_unregister() -> None:
    registry = WorkflowRegistry()
    wf = wait_event_workflow()
    registry.register(wf)
    registry.unregister(wf.workflow_id)
    assert registry.get(wf.workflow_id) is None
    assert wf.workflow_id not in registry


def test_unregister_unknown_raises() -> None:
    with pytest.raises(KeyError, match="not registered"):
        WorkflowRegistry().unregister("unknown")


def test_get_or_raise() -> None:
    registry = WorkflowRegistry()
    wf = wait_event_workflow()
    registry.register(wf)
    assert registry.get_or_raise(wf.workflow_id) is wf
    with pytest.raises(KeyError, match="not registered"):
        registry.get_or_raise("unknown")


def test_list_ids() -> None:
    registry = WorkflowRegistry()
    first, second = wait_event_workflow(), ask_user_workflow()
    registry.register(first)
    registry.register(second)
    assert set(registry.list_ids()) == {first.workflow_id, second.workflow_id}


# -- Scheduler --------------------------------------------------------------------------------


async def test_any_store_can_be_scheduled(backend: Backend) -> None:
    """Deliberately different: the original's Scheduler raised ``TypeError`` unless the run
    store was a ``QueryableRunStore``, as it found due runs with ``list_due_wait_until``. Ours
    claims them with the store's own ``claim_due`` (one indexed query, docs/scheduler.md), which
    every store has, so there is nothing to refuse: a ``SqlStore``, with no
    ``list_due_wait_until`` of its own, is scheduled like the in-memory pair."""
    runtime = Runtime(**backend.kwargs)
    scheduler = Scheduler(runtime=runtime, registry=WorkflowRegistry([immediate_workflow()]))
    run_id = await runtime.start(workflow=immediate_workflow())
    assert await scheduler.poll_once() == 1
    assert (await runtime.get_state(run_id)).status is RunStatus.COMPLETED


async def test_start_and_stop(backend: Backend) -> None:
    scheduler = Scheduler(
        runtime=Runtime(**backend.kwargs), registry=WorkflowRegistry(), poll_interval_s=0.1
    )
    assert not scheduler.is_running
    await scheduler.start()
    assert scheduler.is_running
    await scheduler.stop()
    assert not scheduler.is_running


async def test_start_twice_raises(backend: Backend) -> None:
    scheduler = Scheduler(runtime=Runtime(**backend.kwargs), registry=WorkflowRegistry())
    await scheduler.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            await scheduler.start()
    finally:
        await scheduler.stop()


async def test_poll_once_resumes_due_wait_until(backend: Backend) -> None:
    clock = FakeClock()
    runtime = on_clock(backend, clock)
    wf = wait_until_workflow(60, "wait_wf")
    scheduler = Scheduler(runtime=runtime, registry=WorkflowRegistry([wf]))

    run_id = await runtime.start(workflow=wf)
    state = await runtime.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    assert await scheduler.poll_once() == 0  # not due yet

    clock.advance(70)  # the original edited waiting.until into the past instead
    assert await scheduler.poll_once() == 1
    assert (await runtime.get_state(run_id)).status is RunStatus.COMPLETED


async def test_resume_event(backend: Backend) -> None:
    runtime = Runtime(**backend.kwargs)
    wf = wait_event_workflow()
    scheduler = Scheduler(runtime=runtime, registry=WorkflowRegistry([wf]))

    run_id = await runtime.start(workflow=wf)
    state = await runtime.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    assert state.waiting is not None and state.waiting.wait_key == "my_event"

    state = await scheduler.resume_event(run_id=run_id, wait_key="my_event", payload={"value": 42})
    assert state.status is RunStatus.COMPLETED
    assert state.output is not None and state.output["event_data"] == {"value": 42}


async def test_resume_event_wrong_wait_key_raises(backend: Backend) -> None:
    runtime = Runtime(**backend.kwargs)
    wf = wait_event_workflow()
    scheduler = Scheduler(runtime=runtime, registry=WorkflowRegistry([wf]))
    run_id = await runtime.start(workflow=wf)
    await runtime.tick(workflow=wf, run_id=run_id)

    with pytest.raises(ValueError, match="wait_key mismatch"):
        await scheduler.resume_event(run_id=run_id, wait_key="wrong_key", payload={})


async def test_resume_event_not_waiting_raises(backend: Backend) -> None:
    runtime = Runtime(**backend.kwargs)
    wf = immediate_workflow()
    scheduler = Scheduler(runtime=runtime, registry=WorkflowRegistry([wf]))
    run_id = await runtime.start(workflow=wf)
    await runtime.tick(workflow=wf, run_id=run_id)

    with pytest.raises(ValueError, match="not waiting"):
        await scheduler.resume_event(run_id=run_id, wait_key="x", payload={})


async def test_find_waiting_runs(backend: Backend) -> None:
    runtime = Runtime(**backend.kwargs)
    wf = wait_event_workflow()
    scheduler = Scheduler(runtime=runtime, registry=WorkflowRegistry([wf]))
    first = await runtime.start(workflow=wf)
    second = await runtime.start(workflow=wf)
    await runtime.tick(workflow=wf, run_id=first)
    await runtime.tick(workflow=wf, run_id=second)

    assert len(await scheduler.find_waiting_runs()) == 2
    assert len(await scheduler.find_waiting_runs(wait_reason=WaitReason.EVENT)) == 2
    assert len(await scheduler.find_waiting_runs(wait_reason=WaitReason.USER)) == 0


async def test_stats_tracking(backend: Backend) -> None:
    scheduler = Scheduler(runtime=Runtime(**backend.kwargs), registry=WorkflowRegistry())
    assert scheduler.stats.poll_cycles == 0
    assert scheduler.stats.runs_resumed == 0

    await scheduler.poll_once()
    assert scheduler.stats.poll_cycles == 1
    assert scheduler.stats.last_poll_at is not None


async def test_background_polling_resumes_wait_until(backend: Backend) -> None:
    clock = FakeClock()
    runtime = on_clock(backend, clock)
    wf = wait_until_workflow(0.1)
    scheduler = Scheduler(
        runtime=runtime, registry=WorkflowRegistry([wf]), poll_interval_s=0.05, wait=clock.wait
    )
    run_id = await runtime.start(workflow=wf)
    assert (await runtime.tick(workflow=wf, run_id=run_id)).status is RunStatus.WAITING

    await scheduler.start()
    try:
        # The original slept 50 ms at a time until the run completed; here the scheduler sleeps
        # on the fake clock, and the test moves it to the end of each sleep until it has.
        while (await runtime.get_state(run_id)).status is RunStatus.WAITING:
            await clock.skip()
        state = await wait_for_status(runtime, run_id, RunStatus.COMPLETED)
        assert state.output == {"status": "completed", "waited": True}
        assert scheduler.stats.runs_resumed >= 1
    finally:
        await scheduler.stop()


async def test_callbacks_on_resume(backend: Backend) -> None:
    """As the original did: a waiting run's ``waiting.until`` edited into the past (an ISO
    string, its timestamps' type) and saved through the run store makes the run due."""
    runtime = Runtime(**backend.kwargs)
    resumed_runs: list[str] = []
    failed_runs: list[tuple[str, str]] = []
    wf = wait_until_workflow(60, "callback_wf")
    scheduler = Scheduler(
        runtime=runtime,
        registry=WorkflowRegistry([wf]),
        on_run_resumed=lambda state: resumed_runs.append(state.run_id),
        on_run_failed=lambda run_id, error: failed_runs.append((run_id, str(error))),
    )
    run_id = await runtime.start(workflow=wf)
    state = await runtime.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting is not None
    assert await scheduler.poll_once() == 0

    past = datetime.now(timezone.utc) - timedelta(seconds=10)
    state.waiting.until = past.isoformat()  # type: ignore[assignment]
    await runtime.run_store.save(state)
    assert await scheduler.poll_once() == 1
    assert run_id in resumed_runs
    assert failed_runs == []
    assert (await runtime.get_state(run_id)).status is RunStatus.COMPLETED


# -- ScheduledRuntime -------------------------------------------------------------------------


async def test_create_scheduled_runtime(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, workflows=[wf], auto_start=False)
    assert not sr.is_running
    assert wf.workflow_id in sr.registry


async def test_create_scheduled_runtime_auto_start(backend: Backend) -> None:
    sr = await create_scheduled_runtime(
        **backend.kwargs, workflows=[wait_event_workflow()], auto_start=True
    )
    try:
        assert sr.is_running
    finally:
        await sr.stop()


async def test_scheduled_runtime_start_and_tick(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, workflows=[wf], auto_start=False)
    run_id = await sr.start(workflow=wf)
    state = await sr.tick(run_id)  # no workflow needed: it is found in the registry
    assert state.status is RunStatus.WAITING


async def test_scheduled_runtime_resume_event(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, workflows=[wf], auto_start=False)
    run_id = await sr.start(workflow=wf)
    await sr.tick(run_id)

    state = await sr.resume_event(run_id=run_id, wait_key="my_event", payload={"data": "test"})
    assert state.status is RunStatus.COMPLETED
    assert state.output is not None and state.output["event_data"] == {"data": "test"}


async def test_scheduled_runtime_auto_registers_workflow(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, workflows=[])
    try:
        await sr.start(workflow=wf)
        assert wf.workflow_id in sr.registry
    finally:
        await sr.stop()


async def test_scheduled_runtime_find_waiting_runs(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, workflows=[wf], auto_start=False)
    run_id = await sr.start(workflow=wf)
    await sr.tick(run_id)

    waiting = await sr.find_waiting_runs()
    assert len(waiting) == 1
    assert waiting[0].run_id == run_id


async def test_scheduled_runtime_get_state_and_ledger(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, workflows=[wf], auto_start=False)
    run_id = await sr.start(workflow=wf)
    await sr.tick(run_id)

    assert (await sr.get_state(run_id)).run_id == run_id
    assert len(await sr.get_ledger(run_id)) >= 1


async def test_scheduled_runtime_run_method(backend: Backend) -> None:
    wf = wait_event_workflow()
    sr = await create_scheduled_runtime(**backend.kwargs, auto_start=False)
    run_id, state = await sr.run(wf)
    assert run_id is not None
    assert state.status is RunStatus.WAITING
    assert wf.workflow_id in sr.registry


async def test_scheduled_runtime_respond_method(backend: Backend) -> None:
    sr = await create_scheduled_runtime(**backend.kwargs, auto_start=False)
    run_id, state = await sr.run(wait_event_workflow())
    assert state.status is RunStatus.WAITING

    state = await sr.respond(run_id, {"value": 42})  # finds the wait_key itself
    assert state.status is RunStatus.COMPLETED
    assert state.output is not None and state.output["event_data"] == {"value": 42}


@pytest.mark.parametrize("config", ["none", "database_url"])
async def test_scheduled_runtime_zero_config(config: str, tmp_path: Any) -> None:
    """All defaults: in memory and started, as in the original; or only a database URL."""
    kwargs = {} if config == "none" else {"database_url": f"sqlite+aiosqlite:///{tmp_path}/z.db"}
    sr = await create_scheduled_runtime(**kwargs)
    try:
        assert sr.is_running  # auto_start=True by default
        run_id, state = await sr.run(wait_event_workflow())
        assert state.status is RunStatus.WAITING
        state = await sr.respond(run_id, {"answer": "yes"})
        assert state.status is RunStatus.COMPLETED
    finally:
        await sr.stop()
