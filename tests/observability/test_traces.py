"""One trace per run: a span per ledger record, effects and commits below them, errors on the
span, a child run in its parent's trace, steps linked to whoever resumed the run. On memory,
SQLite and Postgres (the ``store_factory`` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.trace import StatusCode

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime.core.policy import RetryPolicy
from abstractruntime.observability import instrument, uninstrument
from abstractruntime.scheduler import Scheduler
from tests.observability.conftest import Otel, hex_trace
from tests.workflows import APPROVAL, counter


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_run_that_waits_is_one_trace_with_a_span_per_ledger_record(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    async with Runtime(store=store_factory()) as rt:
        with otel.tracer.start_as_current_span("POST /runs") as request:
            run_id = await rt.start(workflow=APPROVAL)
        state = await rt.tick(workflow=APPROVAL, run_id=run_id)
        assert state.status is RunStatus.WAITING and state.waiting is not None
        assert state.trace_context is not None and "traceparent" in state.trace_context
    # Later, another runtime (another worker), another caller: the answer.
    async with Runtime(store=store_factory()) as rt:
        with otel.tracer.start_as_current_span("POST /answer") as answer:
            state = await rt.resume(
                workflow=APPROVAL,
                run_id=run_id,
                wait_key=state.waiting.wait_key,
                payload={"answer": "yes"},
            )
        assert state.status is RunStatus.COMPLETED
        ledger = await rt.get_ledger(run_id)

    run_trace = f"{request.get_span_context().trace_id:032x}"
    (start,) = otel.spans("abstractruntime.start")
    assert start.parent is not None and start.parent.span_id == request.get_span_context().span_id
    steps = otel.steps(run_id)
    assert len(steps) == len(ledger) == 3
    assert [attrs(s)["abstractruntime.ledger_seq"] for s in steps] == [0, 1, 2]
    assert [attrs(s)["abstractruntime.node_id"] for s in steps] == [r["node_id"] for r in ledger]
    assert [attrs(s)["abstractruntime.status"] for s in steps] == [r["status"] for r in ledger]
    assert attrs(steps[0])["abstractruntime.effect_type"] == "ask_user"
    assert {hex_trace(s) for s in steps} == {run_trace}
    # Every step hangs from the run's start span, whoever drove it, whenever.
    assert {s.parent.span_id for s in steps if s.parent} == {start.get_span_context().span_id}
    # The steps the answer drove link to the answer's span (another trace); the first did not.
    answer_id = answer.get_span_context().span_id
    assert [[link.context.span_id for link in s.links] for s in steps] == [
        [],
        [answer_id],
        [answer_id],
    ]
    # Effects and commits are children of their step.
    step_ids = {s.get_span_context().span_id for s in steps}
    (effect,) = otel.spans("abstractruntime.effect ask_user")
    assert (
        effect.parent is not None and effect.parent.span_id == steps[0].get_span_context().span_id
    )
    commits = otel.spans("abstractruntime.commit")
    assert commits and all(c.parent is not None and c.parent.span_id in step_ids for c in commits)
    backend = store_factory.backend  # type: ignore[attr-defined]
    expected = {"sqlite": "sqlite", "postgres": "postgresql"}.get(backend)
    assert {attrs(c).get("db.system.name") for c in commits} == {expected}


async def test_pure_transitions_committed_together_still_get_a_span_each(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    wf = counter(4)
    async with Runtime(store=store_factory()) as rt:
        run_id, state = await rt.run(wf)
        ledger = await rt.get_ledger(run_id)
    assert state.status is RunStatus.COMPLETED
    steps = otel.steps(run_id)
    assert [attrs(s)["abstractruntime.ledger_seq"] for s in steps] == list(range(len(ledger)))
    assert [attrs(s)["abstractruntime.node_id"] for s in steps] == ["n0", "n1", "n2", "n3"]
    assert len(otel.spans("abstractruntime.commit")) == 1  # the batch: one commit


def _raising(run: RunState, ctx: object) -> StepPlan:
    raise RuntimeError("boom: the node broke")


async def test_a_failed_step_has_error_status_with_its_message(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    wf = WorkflowSpec("breaks", "a", {"a": _raising})
    async with Runtime(store=store_factory()) as rt:
        run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    (step,) = otel.steps(run_id)
    assert step.status.status_code is StatusCode.ERROR
    assert "boom: the node broke" in (step.status.description or "")
    assert attrs(step)["abstractruntime.status"] == "failed"
    (event,) = [e for e in step.events if e.name == "exception"]
    assert "boom: the node broke" in str((event.attributes or {})["exception.message"])


async def test_a_failing_effect_is_retried_and_each_attempt_is_a_span(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    calls: list[int] = []

    async def flaky(run: RunState, effect: Effect, next_node: str | None) -> Any:
        calls.append(1)
        raise ConnectionError(f"down ({len(calls)})")

    def node(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL, {"prompt": "x"}))

    wf = WorkflowSpec("flaky", "a", {"a": node})
    policy = RetryPolicy(llm_max_attempts=2, backoff_base=0.0)
    async with Runtime(
        store=store_factory(), effect_handlers={EffectType.LLM_CALL: flaky}, effect_policy=policy
    ) as rt:
        run_id, state = await rt.run(wf)
        ledger = await rt.get_ledger(run_id)
    assert state.status is RunStatus.FAILED and len(calls) == 2
    effects = otel.spans("abstractruntime.effect llm_call")
    assert [attrs(e)["abstractruntime.attempt"] for e in effects] == [1, 2]
    assert all(e.status.status_code is StatusCode.ERROR for e in effects)
    assert "down (1)" in (effects[0].status.description or "")
    steps = otel.steps(run_id)
    assert [attrs(s)["abstractruntime.attempt"] for s in steps] == [r["attempt"] for r in ledger]
    assert steps[-1].status.status_code is StatusCode.ERROR


def _parent(run: RunState, ctx: object) -> StepPlan:
    return StepPlan(
        node_id="call",
        effect=Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": "counter"}, result_key="c"),
        next_node="end",
    )


async def test_a_child_run_continues_its_parents_trace(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    child_wf = counter(2)
    parent_wf = WorkflowSpec(
        "parent",
        "call",
        {"call": _parent, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={})},
    )
    async with Runtime(store=store_factory(), workflow_registry=[child_wf, parent_wf]) as rt:
        run_id, state = await rt.run(parent_wf)
        (child_state,) = await rt.store.list_runs(workflow_id="counter")
    assert state.status is RunStatus.COMPLETED
    child = child_state.run_id
    parent_steps, child_steps = otel.steps(run_id), otel.steps(child)
    assert parent_steps and len(child_steps) == 2
    assert {hex_trace(s) for s in parent_steps + child_steps} == {hex_trace(parent_steps[0])}
    (effect,) = otel.spans("abstractruntime.effect start_subworkflow")
    (child_start,) = [
        s
        for s in otel.spans("abstractruntime.start")
        if attrs(s)["abstractruntime.run_id"] == child
    ]
    assert child_start.parent is not None
    assert child_start.parent.span_id == effect.get_span_context().span_id
    assert attrs(child_start)["abstractruntime.parent_run_id"] == run_id


async def test_steps_a_scheduler_drives_link_to_its_poll(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    wf = counter(2)
    async with Runtime(store=store_factory(), workflow_registry=[wf]) as rt:
        run_id = await rt.start(workflow=wf)
        scheduler = Scheduler(rt, listen=False)
        assert await scheduler.poll_once() == 1
        assert (await rt.get_state(run_id)).status is RunStatus.COMPLETED
    (poll,) = otel.spans("abstractruntime.scheduler.poll")
    assert attrs(poll)["abstractruntime.claimed"] == 1
    steps = otel.steps(run_id)
    assert len(steps) == 2
    poll_id = poll.get_span_context().span_id
    assert all([link.context.span_id for link in s.links] == [poll_id] for s in steps)
    assert otel.total("abstractruntime.scheduler.claimed") == 1
    assert otel.total("abstractruntime.scheduler.poll.duration") >= 1


async def test_a_run_started_without_telemetry_joins_one_trace_when_it_goes_on(
    store_factory: Callable[[], Any], otel: Otel
) -> None:
    uninstrument()
    async with Runtime(store=store_factory()) as rt:
        run_id, state = await rt.run(APPROVAL)
        assert state.trace_context is None
        assert "trace_context" not in state.to_dict()  # states without telemetry keep their bytes
        assert state.waiting is not None
        instrument(otel.tracer_provider, otel.meter_provider)
        state = await rt.resume(
            workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload={"a": 1}
        )
        assert state.status is RunStatus.COMPLETED
        stored = await rt.get_state(run_id)
    assert otel.spans("abstractruntime.start") == []
    steps = otel.steps(run_id)
    assert [attrs(s)["abstractruntime.ledger_seq"] for s in steps] == [1, 2]
    assert len({hex_trace(s) for s in steps}) == 1
    assert stored.trace_context is not None
    assert hex_trace(steps[0]) in stored.trace_context["traceparent"]


def _async_parent(run: RunState, ctx: object) -> StepPlan:
    payload = {"workflow_id": "counter", "async": True}
    return StepPlan(
        node_id="call",
        effect=Effect(EffectType.START_SUBWORKFLOW, payload, result_key="c"),
        complete_output=None,
        next_node="end",
    )


async def test_an_async_child_driven_later_by_a_scheduler_stays_in_its_parents_trace(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    child_wf = counter(2)
    parent_wf = WorkflowSpec(
        "parent",
        "call",
        {
            "call": _async_parent,
            "end": lambda run, ctx: StepPlan(node_id="end", complete_output={}),
        },
    )
    async with Runtime(store=store_factory(), workflow_registry=[child_wf, parent_wf]) as rt:
        run_id, parent = await rt.run(parent_wf)
        assert parent.status is RunStatus.COMPLETED  # it did not wait for its async child
        (child,) = await rt.store.list_runs(workflow_id="counter")
        assert child.status is RunStatus.RUNNING  # nobody drove it yet
        assert await Scheduler(rt, listen=False).poll_once() == 1
        assert (await rt.get_state(child.run_id)).status is RunStatus.COMPLETED
    child_steps = otel.steps(child.run_id)
    assert len(child_steps) == 2
    assert {hex_trace(s) for s in child_steps} == {hex_trace(otel.steps(run_id)[0])}
    (poll,) = otel.spans("abstractruntime.scheduler.poll")
    assert all(
        [link.context.span_id for link in s.links] == [poll.get_span_context().span_id]
        for s in child_steps
    )
