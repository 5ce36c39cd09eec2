"""Wait timeouts without a store: the wait's fields, the due time, the transition, the parsers."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    StepPlan,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from abstractruntime.cli.base import duration_s
from abstractruntime.core import machine, timeouts
from abstractruntime.core.kernel import check_plan, due_at

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

WF = WorkflowSpec(
    "wf",
    "ask",
    {
        "ask": lambda run, ctx: StepPlan(node_id="ask", complete_output={}),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
        "late": lambda run, ctx: StepPlan(node_id="late", complete_output={}),
    },
)


def waiting(**fields: object) -> RunState:
    state = RunState.new(workflow_id="wf", entry_node="ask")
    state.status = RunStatus.WAITING
    state.waiting = WaitState(
        reason=WaitReason.USER, wait_key="k", resume_to_node="done", result_key="r", **fields
    )  # type: ignore[arg-type]
    return state


def test_wait_state_round_trips_its_timeout_and_old_states_still_load() -> None:
    wait = WaitState(
        reason=WaitReason.USER,
        wait_key="k",
        timeout_at="2026-01-01T13:00:00+01:00",  # type: ignore[arg-type]
        timeout_node="late",
        waiting_since=T0,
    )
    assert wait.timeout_at == T0  # aware UTC, whatever offset it came with
    data = wait.to_dict()
    assert data["timeout_at"] == T0.isoformat() and data["timeout_node"] == "late"
    assert WaitState.from_dict(data) == wait
    old = WaitState(reason=WaitReason.USER, wait_key="k").to_dict()
    assert "timeout_at" not in old  # a wait without a timeout keeps its old bytes
    assert WaitState.from_dict(old).timeout_at is None


def test_a_timed_wait_is_due_at_its_timeout() -> None:
    state = waiting(timeout_at=T0 + timedelta(minutes=5))
    assert due_at(state, T0) == T0 + timedelta(minutes=5)
    assert due_at(waiting(), T0) is None
    sub = waiting(timeout_at=T0 + timedelta(minutes=5))
    assert sub.waiting is not None
    sub.waiting.reason = WaitReason.SUBWORKFLOW
    assert due_at(sub, T0, committing=True) == T0  # the child's check first
    assert due_at(sub, T0) == T0 + timedelta(minutes=5)


def test_time_out_resumes_at_timeout_node_with_the_timeout_payload() -> None:
    state = waiting(timeout_at=T0 + timedelta(seconds=30), waiting_since=T0, timeout_node="late")
    assert machine.time_out(state, WF, T0 + timedelta(seconds=29)) is None
    transition = machine.time_out(state, WF, T0 + timedelta(seconds=31))
    assert transition is not None
    assert transition.state.status is RunStatus.RUNNING
    assert transition.state.current_node == "late"
    payload = {"timed_out": True, "waited_s": 31.0, "wait_key": "k"}
    assert transition.state.vars["r"] == payload and transition.record.result == payload
    assert machine.time_out(transition.state, WF, T0 + timedelta(hours=1)) is None


def test_the_timeout_is_armed_from_the_step_start() -> None:
    wait = WaitState(reason=WaitReason.USER)
    effect = Effect(EffectType.ASK_USER, {"timeout_s": 1.5})
    timeouts.arm(wait, effect, T0)
    assert wait.timeout_at == T0 + timedelta(seconds=1.5) and wait.waiting_since == T0
    until = WaitState(reason=WaitReason.UNTIL)
    timeouts.arm(until, Effect(EffectType.WAIT_UNTIL, {"timeout_s": 1}), T0)
    assert until.timeout_at is None


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"timeout_s": float("inf")}, "payload['timeout_s']"),
        ({"timeout_s": None, "timeout_at": 5}, "payload['timeout_at']"),
        ({"timeout_s": 1, "timeout_node": 3}, "payload['timeout_node']"),
    ],
)
def test_check_plan_names_the_bad_key(payload: dict[str, object], error: str) -> None:
    plan = StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, payload), next_node="done")
    problem = check_plan(WF, "ask", plan)
    assert problem is not None and error in problem


def test_only_waiting_effects_take_a_timeout() -> None:
    plan = StepPlan(node_id="ask", effect=Effect(EffectType.LLM_CALL, {"timeout_s": 5}))
    problem = check_plan(WF, "ask", plan)
    assert problem is not None and "only ask_user, wait_event" in problem


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("90", 90), ("1.5h", 5400)],
)
def test_duration(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-1h", "nan", "inf"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration_s(text)
