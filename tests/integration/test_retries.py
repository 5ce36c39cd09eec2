"""Durable retries: failed attempts are recorded, backoffs are persisted due times, not sleeps."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import (
    DefaultEffectPolicy,
    Effect,
    EffectOutcome,
    EffectType,
    NoRetryPolicy,
    RetryPolicy,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    Scheduler,
    WaitReason,
    compute_idempotency_key,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.storage import SqlStore
from tests.helpers import FakeClock, own_vars, scheduled_on, wait_for_status
from tests.workflows import counter, llm_agent_step, waiter

ROOT = Path(__file__).resolve().parents[2]
StoreFactory = Callable[[], Any]


class Flaky:
    """An llm_call handler that fails ``failures`` times (retryable unless told), then answers."""

    def __init__(self, failures: int, *, retryable: bool = True, raises: bool = False) -> None:
        self.failures = failures
        self.retryable = retryable
        self.raises = raises
        self.calls = 0

    async def __call__(self, run: RunState, effect: Effect, next_node: str | None) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            if self.raises:
                raise ConnectionError(f"connection reset (call {self.calls})")
            return EffectOutcome.failed(f"HTTP 503 (call {self.calls})", retryable=self.retryable)
        return EffectOutcome.completed({"content": "hello"})


def runtime(store: Any, handler: Flaky, policy: Any, clock: FakeClock | None = None) -> Runtime:
    config = RuntimeConfig(clock=clock) if clock else None
    return Runtime(
        store=store,
        effect_handlers={EffectType.LLM_CALL: handler},
        effect_policy=policy,
        config=config,
    )


async def test_retryable_failures_back_off_then_succeed(store: Any) -> None:
    clock, flaky = FakeClock(), Flaky(2)
    rt = runtime(store, flaky, RetryPolicy(backoff_base=10, backoff_max=15), clock)
    wf = llm_agent_step()

    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.WAITING and state.waiting is not None
    assert state.waiting.reason is WaitReason.UNTIL
    assert state.waiting.until == clock.now + timedelta(seconds=10)
    assert state.waiting.details is not None
    assert state.waiting.details["retry"]["attempt"] == 1
    assert own_vars(state) == {}  # the failed attempt kept nothing it changed

    clock.advance(9)  # not yet due: ticking does not attempt again
    assert (await rt.tick(workflow=wf, run_id=run_id)).status is RunStatus.WAITING
    assert flaky.calls == 1

    clock.advance(1)
    state = await rt.tick(workflow=wf, run_id=run_id)
    assert flaky.calls == 2 and state.status is RunStatus.WAITING
    assert state.waiting is not None
    assert state.waiting.until == clock.now + timedelta(seconds=15)  # 20s, capped at 15s

    clock.advance(15)
    state = await rt.tick(workflow=wf, run_id=run_id)
    assert flaky.calls == 3
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"planned": 1, "answer": {"content": "hello"}}

    ledger = await rt.get_ledger(run_id)
    assert verify_ledger_chain(ledger)["ok"]
    assert [(r["node_id"], r["status"], r["attempt"]) for r in ledger] == [
        ("call", "failed", 1),
        ("call", "failed", 2),
        ("call", "completed", 3),
        ("done", "completed", 1),
    ]
    assert ledger[0]["error"] == "effect 'llm_call' failed: HTTP 503 (call 1)"
    key = compute_idempotency_key(
        run_id=run_id, node_id="call", effect=Effect(EffectType.LLM_CALL, {"prompt": "hi"})
    )
    assert [r["idempotency_key"] for r in ledger[:3]] == [key] * 3
    assert await store.find_effect(run_id, key) == ledger[2]  # the completed attempt
    assert await store.find_effect(run_id, "0" * 32) is None


async def test_the_last_attempt_fails_the_run_with_the_last_error(store: Any) -> None:
    clock, flaky = FakeClock(), Flaky(99, raises=True)  # exceptions count as retryable
    rt = runtime(store, flaky, RetryPolicy(llm_max_attempts=3, backoff_base=1), clock)
    run_id, state = await rt.run(llm_agent_step())
    for _ in range(2):
        assert state.status is RunStatus.WAITING
        clock.advance(60)
        state = await rt.tick(workflow=llm_agent_step(), run_id=run_id)
    assert flaky.calls == 3
    assert state.status is RunStatus.FAILED and state.waiting is None
    assert state.error is not None
    assert "ConnectionError: connection reset (call 3)" in state.error
    assert "giving up after 3 attempts" in state.error
    ledger = await rt.get_ledger(run_id)
    assert [(r["status"], r["attempt"]) for r in ledger] == [
        ("failed", 1),
        ("failed", 2),
        ("failed", 3),
    ]


@pytest.mark.parametrize(
    ("make_flaky", "policy"),
    [
        (lambda: Flaky(1, retryable=False), RetryPolicy()),  # a 4xx, say: no use trying again
        (lambda: Flaky(1, raises=True), None),  # the default policy gives one attempt
        (lambda: Flaky(1), NoRetryPolicy()),
        (lambda: Flaky(1), RetryPolicy(llm_max_attempts=1)),
    ],
)
async def test_failures_that_are_not_retried(
    store: Any, make_flaky: Callable[[], Flaky], policy: Any
) -> None:
    flaky = make_flaky()
    rt = runtime(store, flaky, policy)
    run_id, state = await rt.run(llm_agent_step())
    assert state.status is RunStatus.FAILED
    assert flaky.calls == 1
    assert "giving up" not in (state.error or "")
    assert [r["status"] for r in await rt.get_ledger(run_id)] == ["failed"]


async def test_a_failed_outcome_is_retried_unless_it_says_retryable_false(store: Any) -> None:
    """As in the original: ``EffectOutcome.failed(error)`` gets the policy's attempts; only
    ``retryable=False`` (a 4xx, a malformed request) makes a failure final at once."""
    clock, calls = FakeClock(), 0

    def plain(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        nonlocal calls
        calls += 1
        return EffectOutcome.failed(f"boom {calls}") if calls < 3 else EffectOutcome.completed(1)

    rt = runtime(store, plain, RetryPolicy(llm_max_attempts=3), clock)  # type: ignore[arg-type]
    run_id, state = await rt.run(llm_agent_step())
    while state.status is RunStatus.WAITING:
        clock.advance(60)
        state = await rt.tick(workflow=llm_agent_step(), run_id=run_id)
    assert state.status is RunStatus.COMPLETED and calls == 3
    assert EffectOutcome.failed("x").retryable is True
    assert EffectOutcome.failed("x", retryable=False).retryable is False


async def test_retries_are_per_effect_type(store: Any) -> None:
    """RetryPolicy retries LLM and tool calls; a custom effect of another type runs once."""
    calls = 0

    def flaky_event(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        nonlocal calls
        calls += 1
        return EffectOutcome.failed("nope", retryable=True)

    rt = Runtime(
        store=store,
        effect_handlers={EffectType.WAIT_EVENT: flaky_event},
        effect_policy=RetryPolicy(),
    )
    _, state = await rt.run(waiter())
    assert state.status is RunStatus.FAILED and calls == 1


def test_policies_validate_and_back_off_exponentially() -> None:
    policy = DefaultEffectPolicy(default_backoff_base=0.5, default_backoff_max=3)
    effect = Effect(EffectType.TOOL_CALLS, {})
    assert [policy.backoff_seconds(effect=effect, attempt=n) for n in range(1, 6)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]
    assert policy.backoff_seconds(effect=effect, attempt=10_000) == 3.0
    assert RetryPolicy().max_attempts(effect) == 2
    assert RetryPolicy().max_attempts(Effect(EffectType.LLM_CALL)) == 3
    assert RetryPolicy().max_attempts(Effect(EffectType.ASK_USER)) == 1
    with pytest.raises(ValueError, match="at least 1"):
        DefaultEffectPolicy(max_attempts_by_type={EffectType.LLM_CALL: 0})
    with pytest.raises(TypeError, match="effect_policy must have"):
        Runtime(effect_policy=object())


def test_idempotency_key_hashes_run_node_type_and_payload() -> None:
    effect = Effect(EffectType.LLM_CALL, {"prompt": "hi", "params": {"a": 1, "b": 2}})
    key = compute_idempotency_key(run_id="r", node_id="n", effect=effect)
    assert len(key) == 32 and int(key, 16) >= 0
    reordered = Effect(EffectType.LLM_CALL, {"params": {"b": 2, "a": 1}, "prompt": "hi"})
    assert compute_idempotency_key(run_id="r", node_id="n", effect=reordered) == key
    others = [
        ("r2", "n", effect),
        ("r", "n2", effect),
        ("r", "n", Effect(EffectType.TOOL_CALLS, effect.payload)),
        ("r", "n", Effect(EffectType.LLM_CALL, {"prompt": "hello"})),
    ]
    for run_id, node_id, other in others:
        assert compute_idempotency_key(run_id=run_id, node_id=node_id, effect=other) != key


async def test_other_runs_keep_moving_during_a_backoff(store: Any) -> None:
    flaky = Flaky(99)
    fast = counter(3, "fast")
    async with await create_scheduled_runtime(
        store=store,
        workflows=[llm_agent_step(), fast],
        effect_handlers={EffectType.LLM_CALL: flaky},
        effect_policy=RetryPolicy(backoff_base=30),
        poll_interval_s=0.1,
    ) as sr:
        slow_id, state = await sr.run(llm_agent_step())
        assert state.status is RunStatus.WAITING
        fast_id = await sr.start(workflow=fast)
        await wait_for_status(sr, fast_id, RunStatus.COMPLETED, timeout=5)
        assert (await sr.get_state(slow_id)).status is RunStatus.WAITING
        assert flaky.calls == 1


async def test_the_scheduler_runs_a_pending_retry_at_its_time(store: Any) -> None:
    clock, flaky = FakeClock(), Flaky(1)
    started = clock.now
    async with await scheduled_on(
        clock,
        store=store,
        workflows=[llm_agent_step()],
        effect_handlers={EffectType.LLM_CALL: flaky},
        effect_policy=RetryPolicy(backoff_base=0.2),
        poll_interval_s=5.0,  # the retry's due time, not the poll, must wake the scheduler
    ) as sr:
        run_id, state = await sr.run(llm_agent_step())
        assert state.status is RunStatus.WAITING
        assert await clock.sleeping() == 0.2
        clock.advance(0.2)
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED, timeout=4)
        assert done.output == {"planned": 1, "answer": {"content": "hello"}}
        assert flaky.calls == 2
        ledger = await sr.get_ledger(run_id)
    retried_at = (started + timedelta(seconds=0.2)).isoformat()
    assert [(r["status"], r["attempt"], r["started_at"]) for r in ledger[:2]] == [
        ("failed", 1, started.isoformat()),
        ("completed", 2, retried_at),
    ]


async def test_a_retry_pending_when_the_process_is_killed_runs_after_restart(
    db_url: str,
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.acceptance.retry_child",
        db_url,
        "0.5",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        run_id, status = line.decode().split()
        assert status == "waiting"  # the failed attempt and the retry's due time are committed
    finally:
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL

    flaky = Flaky(0)
    async with SqlStore(db_url) as store:
        pending = await Runtime(store=store).get_state(run_id)
        assert pending.waiting is not None and pending.waiting.until is not None
        async with await create_scheduled_runtime(
            store=store,
            workflows=[llm_agent_step()],
            effect_handlers={EffectType.LLM_CALL: flaky},
            effect_policy=RetryPolicy(backoff_base=0.5),
            poll_interval_s=0.1,
        ) as sr:
            done = await wait_for_status(sr, run_id, RunStatus.COMPLETED, timeout=10)
            assert datetime.now(timezone.utc) >= pending.waiting.until
            ledger = await sr.get_ledger(run_id)
    assert flaky.calls == 1
    assert done.output == {"planned": 1, "answer": {"content": "hello"}}
    assert [(r["status"], r["attempt"]) for r in ledger] == [
        ("failed", 1),
        ("completed", 2),
        ("completed", 1),
    ]
    assert verify_ledger_chain(ledger)["ok"]


async def test_the_scheduler_counts_outcomes_as_committed(store: Any) -> None:
    """A run whose first attempt failed and whose retry completed counts as completed, not
    failed (the worker's closing line reads these counters)."""
    clock = FakeClock()
    wf = llm_agent_step()
    recovered, exhausted = Flaky(1), Flaky(99)
    outcomes = {}
    for name, handler in (("recovered", recovered), ("exhausted", exhausted)):
        rt = runtime(store, handler, RetryPolicy(llm_max_attempts=2, backoff_base=1), clock)
        rt.workflow_registry.register(wf)
        scheduler = Scheduler(rt)
        run_id = await rt.start(workflow=wf)
        assert await scheduler.poll_once() == 1  # the first attempt fails: a retry wait
        clock.advance(5)
        assert await scheduler.poll_once() == 1  # the second ends the run
        outcomes[name] = (
            (await rt.get_state(run_id)).status,
            scheduler.stats.ended_completed,
            scheduler.stats.ended_failed,
            scheduler.stats.runs_failed,
            scheduler.stats.runs_resumed,
        )
    assert outcomes == {
        "recovered": (RunStatus.COMPLETED, 1, 0, 0, 2),
        "exhausted": (RunStatus.FAILED, 0, 1, 0, 2),
    }
