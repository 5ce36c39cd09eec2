"""``respond``: answers a wait for a person or an event, refuses a wait that ends by itself,
and gives every loser of a race the same words (with ``retryable`` saying whether to retry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    NotAnswerableError,
    RetryPolicy,
    RunLeasedError,
    RunNotWaitingError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    ScheduledRuntime,
    Scheduler,
    StepPlan,
    WaitReason,
    WorkflowSpec,
)
from tests.helpers import FakeClock
from tests.workflows import APPROVAL, llm_agent_step, parent_of, timer, waiter

StoreFactory = Callable[[], Any]


def scheduled(store: Any, *workflows: Any, **runtime: Any) -> ScheduledRuntime:
    rt = Runtime(store=store, workflow_registry=list(workflows), **runtime)
    return ScheduledRuntime(rt, Scheduler(rt))


async def test_respond_answers_a_prompt_and_an_event(store: Any) -> None:
    sr = scheduled(store, APPROVAL, waiter("evt:paid"))
    run_id = await sr.start(workflow=APPROVAL)
    await sr.tick(run_id)
    state = await sr.respond(run_id, {"text": "yes"})
    assert state.status is RunStatus.COMPLETED and state.output == {"answer": {"text": "yes"}}
    event_run = await sr.start(workflow=waiter("evt:paid"))
    await sr.tick(event_run)
    assert (await sr.respond(event_run, {"amount": 3})).status is RunStatus.COMPLETED


async def test_respond_refuses_a_timer_and_leaves_it_pending(store: Any) -> None:
    sr = scheduled(store, timer(3600))
    run_id = await sr.start(workflow=timer(3600))
    before = await sr.tick(run_id)
    assert before.waiting is not None and before.waiting.reason is WaitReason.UNTIL
    records = len(await sr.get_ledger(run_id))
    with pytest.raises(NotAnswerableError, match=r"waits until .* \(a timer\), not for an"):
        await sr.respond(run_id, {"text": "now!"})
    after = await sr.get_state(run_id)
    assert after.waiting is not None and after.waiting.until == before.waiting.until
    assert len(await sr.get_ledger(run_id)) == records
    assert not NotAnswerableError.retryable and isinstance(NotAnswerableError("x"), ValueError)


async def test_respond_refuses_a_retry_backoff_and_a_wait_for_a_child(store: Any) -> None:
    def failing(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        return EffectOutcome.failed("HTTP 503", retryable=True)

    clock = FakeClock()
    flow = llm_agent_step()
    sr = scheduled(
        store,
        flow,
        effect_handlers={EffectType.LLM_CALL: failing},
        effect_policy=RetryPolicy(backoff_base=60),
        config=RuntimeConfig(clock=clock),
    )
    run_id = await sr.start(workflow=flow)
    await sr.tick(run_id)
    with pytest.raises(NotAnswerableError, match="to retry its effect at"):
        await sr.respond(run_id, {})
    child, parent = waiter("evt:child", "child"), parent_of("child")
    sr.registry.register(child)
    parent_id = await sr.start(workflow=parent)
    state = await sr.tick(parent_id)
    assert state.waiting is not None and state.waiting.reason is WaitReason.SUBWORKFLOW
    with pytest.raises(NotAnswerableError, match="for its child run"):
        await sr.respond(parent_id, {})


async def test_every_loser_of_an_answer_race_gets_the_same_words(
    store_factory: StoreFactory,
) -> None:
    winner, loser = scheduled(store_factory(), APPROVAL), scheduled(store_factory(), APPROVAL)
    run_id = await winner.start(workflow=APPROVAL)
    await winner.tick(run_id)
    # The winner holds the run (its answer is being committed): the loser may retry.
    handle = await winner.runtime.leases.claim(run_id)
    with pytest.raises(RunLeasedError) as leased:
        await loser.respond(run_id, {"text": "no"})
    assert leased.value.retryable and "try again in a moment" in str(leased.value)
    await winner.runtime._release(handle)
    await winner.respond(run_id, {"text": "yes"})
    # Its retry, and any later answer by either call, says the run has moved on.
    messages = set()
    for call in (
        lambda: loser.respond(run_id, {"text": "no"}),
        lambda: loser.runtime.resume(workflow=APPROVAL, run_id=run_id, wait_key=None),
    ):
        with pytest.raises(RunNotWaitingError) as info:
            await call()
        assert not info.value.retryable
        messages.add(str(info.value))
    assert messages == {
        f"run {run_id!r} is completed, not waiting (answered, ended or cancelled meanwhile); "
        "nothing was done"
    }
    assert (await loser.get_state(run_id)).output == {"answer": {"text": "yes"}}


async def test_an_answer_racing_a_newer_wait_is_not_applied_to_it(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two prompts in a row: an answer that read the first prompt, and lost the race to
    another answer, must not land on the second."""

    def ask(name: str, then: str) -> Any:
        def node(run: RunState, ctx: object) -> StepPlan:
            effect = Effect(EffectType.ASK_USER, {"prompt": name}, result_key=name)
            return StepPlan(node_id=name, effect=effect, next_node=then)

        return node

    def end(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(node_id="end", complete_output={})

    two = WorkflowSpec(
        "two",
        "first",
        {"first": ask("first", "second"), "second": ask("second", "end"), "end": end},
    )
    sr = scheduled(store, two)
    run_id = await sr.start(workflow=two)
    stale = await sr.tick(run_id)  # waits on the first prompt: what the late answer reads
    await sr.respond(run_id, {"a": 1})  # the winner: now it waits on the second prompt
    real_get_state = sr.runtime.get_state
    reads = []

    async def first_read_is_stale(run: str) -> RunState:
        reads.append(run)
        return stale if len(reads) == 1 else await real_get_state(run)

    monkeypatch.setattr(sr.runtime, "get_state", first_read_is_stale)
    with pytest.raises(RunNotWaitingError, match="no longer waits for that answer") as info:
        await sr.respond(run_id, {"a": 2})
    assert "now waits on 'user:" in str(info.value) and not info.value.retryable
    state = await real_get_state(run_id)
    assert state.current_node == "second" and state.vars["first"] == {"a": 1}
    assert "second" not in state.vars


async def test_find_waiting_runs_pages_with_a_cursor(store: Any) -> None:
    """A pending list longer than a page is read whole, page after page, never cut silently."""
    from abstractruntime.core.pages import key_of

    sr = scheduled(store, APPROVAL)
    started = {(await sr.runtime.run(APPROVAL))[0] for _ in range(5)}
    seen: list[str] = []
    after = None
    while True:
        page = await sr.find_waiting_runs(wait_reason=WaitReason.USER, limit=2, after=after)
        if not page:
            break
        assert len(page) <= 2
        seen += [state.run_id for state in page]
        after = key_of(page[-1])
    assert sorted(seen) == sorted(started) and len(seen) == 5
