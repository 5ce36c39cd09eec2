"""Shared limits' pure rules (``core.throttle``): declaring a Limit, budgets and keys, the
slot and rate decisions, the wait a refused step commits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import (
    EffectType,
    InvalidArgumentError,
    Limit,
    RunState,
    RunStatus,
    RuntimeConfig,
    StepRecord,
    StepStatus,
    WaitReason,
    WorkflowSpec,
)
from abstractruntime.core import machine, throttle
from abstractruntime.core.throttle import budget_key, next_slot, rate_take, slots_free

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of max_concurrent"),
        ({"max_concurrent": 2, "rate": 3}, "exactly one of max_concurrent"),
        ({"max_concurrent": 0}, r"max_concurrent=0\): must be a positive whole number"),
        ({"max_concurrent": 1.5}, "positive whole number"),
        ({"max_concurrent": True}, "positive whole number"),
        ({"rate": -1}, r"rate=-1\): must be a positive whole number"),
        ({"rate": 5, "per_s": 0}, r"per_s=0\): must be a positive number of seconds"),
        ({"rate": 5, "per_s": float("nan")}, "per_s"),
        ({"rate": 5, "per_s": float("inf")}, "per_s"),
        ({"max_concurrent": 2, "per_s": 60.0}, "per_s=...\\) goes with rate=N"),
        ({"max_concurrent": 2, "effect_type": "llm"}, "not an effect type"),
        ({"max_concurrent": 2, "key": ""}, "non-empty string"),
        ({"max_concurrent": 2, "workflow_id": 7}, "non-empty string"),
        ({"max_concurrent": 2, "name": "x" * 256}, "at most 255 characters"),
    ],
)
def test_invalid_limits_say_what_to_do(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Limit(**kwargs)  # type: ignore[arg-type]


def test_a_limit_derives_its_budget_name_so_processes_share_it() -> None:
    assert Limit(effect_type=EffectType.LLM_CALL, max_concurrent=8).name == "concurrent:llm_call"
    assert Limit(effect_type="llm_call", max_concurrent=3).effect_type is EffectType.LLM_CALL
    rate = Limit(effect_type=EffectType.LLM_CALL, rate=60, per_s=60.0, key="tenant")
    assert rate.name == "rate:llm_call/tenant"
    assert Limit(max_concurrent=1, workflow_id="wf").name == "concurrent:*@wf"
    assert Limit(rate=1, name="openai").name == "openai"
    # Equal declarations are one budget; two different ones under one name are refused.
    assert len(RuntimeConfig(limits=[rate, rate]).limits) == 1
    with pytest.raises(InvalidArgumentError, match="give one a name= of its own"):
        RuntimeConfig(limits=[Limit(rate=1, name="n"), Limit(rate=2, name="n")])
    with pytest.raises(InvalidArgumentError, match="takes Limit objects"):
        RuntimeConfig(limits=[{"rate": 1}])  # type: ignore[list-item]


def test_a_limit_applies_to_its_effect_type_and_workflow_only() -> None:
    limit = Limit(effect_type=EffectType.LLM_CALL, max_concurrent=1, workflow_id="wf")
    assert limit.applies(EffectType.LLM_CALL, "wf")
    assert not limit.applies(EffectType.TOOL_CALLS, "wf")
    assert not limit.applies(EffectType.LLM_CALL, "other")
    assert Limit(max_concurrent=1).applies(EffectType.WAIT_EVENT, "any")


def test_the_key_comes_from_the_payload_then_vars_and_missing_is_shared() -> None:
    assert budget_key("tenant", {"tenant": "acme"}, {"tenant": "globex"}) == "acme"
    assert budget_key("tenant", {}, {"tenant": "globex"}) == "globex"
    assert budget_key("tenant", {}, {}) == ""
    assert budget_key("tenant", {"tenant": None}, {}) == ""
    assert budget_key(None, {"tenant": "acme"}, {}) == ""
    assert budget_key("n", {"n": 7}, {}) == "7"
    long = budget_key("k", {"k": "x" * 1000}, {})
    assert long.startswith("sha256:") and len(long) <= throttle.NAME_LIMIT


def test_max_concurrent_runs_is_checked() -> None:
    noop = {"a": lambda run, ctx: None}
    assert WorkflowSpec("wf", "a", noop, max_concurrent_runs=3).max_concurrent_runs == 3
    with pytest.raises(InvalidArgumentError, match="max_concurrent_runs must be a positive"):
        WorkflowSpec("wf", "a", noop, max_concurrent_runs=0)


def test_slots_go_to_the_holders_and_then_the_waiters_in_order() -> None:
    assert slots_free(live_held=1, waiters_ahead=0, capacity=2)
    assert not slots_free(live_held=1, waiters_ahead=1, capacity=2)
    assert not slots_free(live_held=2, waiters_ahead=0, capacity=2)


def test_rate_grants_a_burst_then_reserves_an_even_schedule() -> None:
    log: list[float] = []
    for _ in range(3):  # rate 3 per second: the first three at once
        take = rate_take(log, None, 100.0, 3, 1.0)
        assert take.granted and take.grants is not None
        log = take.grants
    reserved = []
    for _ in range(4):
        take = rate_take(log, None, 100.2, 3, 1.0)
        assert not take.granted and take.grants is not None
        log = take.grants
        reserved.append(take.at)
    # Each a window after a grant, and at least per_s / rate after the one before.
    assert reserved == pytest.approx([101.0, 101.333333, 101.666666, 102.0])
    assert all(b - a >= 1.0 - 1e-6 for a, b in zip(log, log[3:], strict=False))
    # The run whose time came finds its grant there; early, it is told to wait for it.
    assert not rate_take(log, 101.0, 100.9, 3, 1.0).granted
    mine = rate_take(log, 101.0, 101.01, 3, 1.0)
    assert mine.granted and mine.grants is None  # already counted
    # A reservation a whole window stale is given up: the run asks afresh (here the window
    # has room again, so it is granted now and counted now).
    stale = rate_take(log, 101.0, 102.5, 3, 1.0)
    assert stale.granted and stale.grants == pytest.approx([101.666666, 102.0, 102.5])


def test_next_slot_is_now_while_the_window_has_room() -> None:
    assert next_slot([], 5.0, 2, 1.0) == 5.0
    assert next_slot([4.5], 5.0, 2, 1.0) == 5.0
    assert next_slot([4.5, 4.9], 5.0, 2, 1.0) == pytest.approx(5.5)


def test_a_refused_step_waits_like_a_retry_that_is_no_attempt() -> None:
    state = RunState(
        run_id="r1",
        workflow_id="wf",
        status=RunStatus.RUNNING,
        current_node="call",
        created_at=T0,
        updated_at=T0,
    )
    record = StepRecord(
        run_id="r1",
        step_id="s",
        node_id="call",
        status=StepStatus.COMPLETED,
        started_at=T0,
        attempt=2,
        idempotency_key="k",
    )
    until = T0 + timedelta(seconds=3)
    retry = {"attempt": 1, "idempotency_key": "k"}
    limit = {"name": "concurrent:llm_call", "key": "", "kind": "concurrent"}
    key = throttle.wait_key("r1", "call")
    transition = machine.limit_wait(
        state, record, until=until, limit=limit, retry=retry, wait_key=key, now=T0
    )
    waiting = transition.state.waiting
    assert transition.state.status is RunStatus.WAITING and waiting is not None
    assert waiting.reason is WaitReason.UNTIL and waiting.until == until
    assert waiting.resume_to_node == "call" and waiting.wait_key == "limit:r1:call"
    assert machine.retry_of(waiting) == retry and throttle.is_limit_wait(waiting)
    assert transition.record.status is StepStatus.WAITING
    assert transition.record.result == {"limit": limit, "retry_at": "2026-01-01T00:00:03+00:00"}
    assert throttle.waiter_live(RunStatus.WAITING, waiting.wait_key)
    assert not throttle.waiter_live(RunStatus.WAITING, "user:r1:call")
    assert not throttle.waiter_live(RunStatus.CANCELLED, waiting.wait_key)
