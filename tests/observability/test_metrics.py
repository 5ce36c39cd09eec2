"""The metrics count what the ledger holds: steps by status, runs by outcome, runs waiting by
reason, retries scheduled; commit and step durations are recorded per commit and step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from abstractruntime import Effect, EffectType, RunState, RunStatus, Runtime, StepPlan, WorkflowSpec
from abstractruntime.core.policy import RetryPolicy
from abstractruntime.errors import ConcurrentUpdateError
from tests.observability.conftest import Otel
from tests.workflows import APPROVAL, counter, timer


def _raising(run: RunState, ctx: object) -> StepPlan:
    raise ValueError("no")


def _llm(run: RunState, ctx: object) -> StepPlan:
    return StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL, {"prompt": "x"}))


async def _down(run: RunState, effect: Effect, next_node: str | None) -> Any:
    raise ConnectionError("down")


async def test_metric_values_match_the_ledgers_counts(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    breaks = WorkflowSpec("breaks", "a", {"a": _raising})
    flaky = WorkflowSpec("flaky", "a", {"a": _llm})
    sleeper = timer(3600)
    policy = RetryPolicy(llm_max_attempts=3, backoff_base=3600)  # parked for an hour
    run_ids: list[str] = []
    async with Runtime(
        store=store_factory(), effect_handlers={EffectType.LLM_CALL: _down}, effect_policy=policy
    ) as rt:
        for wf in (counter(3), counter(5), APPROVAL, APPROVAL, breaks, flaky, sleeper):
            run_id, _ = await rt.run(wf)
            run_ids.append(run_id)
        # One of the approvals is answered; one run waiting on the user is cancelled.
        approvals = [r for r in run_ids if (await rt.get_state(r)).workflow_id == "approval"]
        answered = await rt.get_state(approvals[0])
        assert answered.waiting is not None
        await rt.resume(
            workflow=APPROVAL, run_id=approvals[0], wait_key=answered.waiting.wait_key, payload={}
        )
        await rt.cancel_run(approvals[1], "not needed")
        ledgers = [await rt.get_ledger(r) for r in run_ids]
        states = [await rt.get_state(r) for r in run_ids]

    statuses = Counter(record["status"] for ledger in ledgers for record in ledger)
    for status, count in statuses.items():
        assert otel.total("abstractruntime.steps", **{"abstractruntime.status": status}) == count
    assert otel.total("abstractruntime.steps") == sum(len(ledger) for ledger in ledgers)

    outcomes = Counter(s.status.value for s in states if s.status.is_terminal)
    assert outcomes == {"completed": 3, "failed": 1, "cancelled": 1}
    for outcome, count in outcomes.items():
        assert otel.total("abstractruntime.runs", outcome=outcome) == count
    assert otel.total("abstractruntime.runs", outcome="started") == len(run_ids)

    waiting = Counter(s.waiting.reason.value for s in states if s.waiting is not None)
    assert sum(waiting.values()) == 2  # the timer, and the retry parked for an hour
    for reason in ("user", "until", "event", "subworkflow"):
        assert otel.total("abstractruntime.runs.waiting", reason=reason) == waiting.get(reason, 0)
    assert otel.total("abstractruntime.retries.scheduled") == 1
    assert otel.total("abstractruntime.commit.duration") == len(
        otel.spans("abstractruntime.commit")
    )
    assert otel.total("abstractruntime.step.duration") == sum(len(ledger) for ledger in ledgers)


async def test_a_commit_refused_after_a_takeover_is_counted_and_marked(
    otel: Otel, store_factory: Callable[[], Any]
) -> None:
    """A worker whose run was taken from it (here: cancelled by an operator meanwhile) cannot
    commit: the commit span says so and the takeover is counted."""
    store = store_factory()
    cancelled = False

    async def node(run: RunState, ctx: Any) -> StepPlan:
        nonlocal cancelled
        if not cancelled:
            cancelled = True
            await operator.cancel_run(run.run_id, "taken")
        return StepPlan(node_id="a", complete_output={})

    wf = WorkflowSpec("taken", "a", {"a": node})
    async with Runtime(store=store) as rt, Runtime(store=store) as operator:
        run_id = await rt.start(workflow=wf)
        with pytest.raises(ConcurrentUpdateError):
            await rt.tick(workflow=wf, run_id=run_id)
        assert (await rt.get_state(run_id)).status is RunStatus.CANCELLED
    assert otel.total("abstractruntime.lease.takeovers") == 1
    failed = [
        c
        for c in otel.spans("abstractruntime.commit")
        if c.status.description and "ConcurrentUpdateError" in c.status.description
    ]
    assert len(failed) == 1
