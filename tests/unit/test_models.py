from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from abstractruntime.errors import InvalidWorkflowError


def test_enum_values_are_the_contract_strings() -> None:
    assert [e.value for e in EffectType] == [
        "wait_event",
        "wait_until",
        "ask_user",
        "llm_call",
        "tool_calls",
        "start_subworkflow",
    ]
    assert [s.value for s in RunStatus] == [
        "running",
        "waiting",
        "completed",
        "failed",
        "cancelled",
    ]
    assert [r.value for r in WaitReason] == ["event", "until", "user", "job", "subworkflow"]
    assert [s.value for s in StepStatus] == ["started", "completed", "waiting", "failed"]
    assert str(RunStatus.WAITING) == "waiting"


def _full_state() -> RunState:
    return RunState(
        run_id="r1",
        workflow_id="wf",
        status=RunStatus.WAITING,
        current_node="ask",
        vars={"a": {"b": [1, 2.5, None, True, "é"]}},
        waiting=WaitState(
            reason=WaitReason.USER,
            wait_key="user:r1:ask",
            until="2030-01-01T10:00:00+02:00",
            resume_to_node="next",
            result_key="answer.text",
            prompt="Ok?",
            choices=["yes", "no"],
            allow_free_text=False,
            details={"k": 1},
        ),
        output=None,
        error=None,
        actor_id="alice",
        session_id="s1",
        parent_run_id="p1",
    )


def test_run_state_round_trips_through_json_losslessly() -> None:
    state = _full_state()
    data = json.loads(json.dumps(state.to_dict()))
    again = RunState.from_dict(data)
    assert again == state
    assert again.to_dict() == state.to_dict()


def test_timestamps_are_aware_utc_and_offsets_normalised() -> None:
    state = _full_state()
    assert state.created_at.tzinfo is not None
    assert state.created_at.utcoffset() == timedelta(0)
    assert state.waiting is not None
    assert state.waiting.until == datetime(2030, 1, 1, 8, 0, tzinfo=timezone.utc)
    assert state.to_dict()["waiting"]["until"] == "2030-01-01T08:00:00+00:00"


def test_timestamps_assigned_as_iso_strings_become_datetimes() -> None:
    """The original's timestamps were ISO strings, and its users assign them."""
    state = _full_state()
    state.updated_at = "2025-01-01T02:00:00+02:00"  # type: ignore[assignment]
    assert state.updated_at == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert state.waiting is not None
    state.waiting.until = "2020-01-01T00:00:00Z"  # type: ignore[assignment]
    assert state.waiting.until == datetime(2020, 1, 1, tzinfo=timezone.utc)
    record = StepRecord(run_id="r", step_id="s", node_id="n", status=StepStatus.COMPLETED)
    record.ended_at = "2020-01-01T00:00:00"  # type: ignore[assignment]  # naive: taken as UTC
    assert record.ended_at == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert RunState.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp"):
        state.created_at = "yesterday"  # type: ignore[assignment]


def test_step_plan_and_record_round_trip() -> None:
    plan = StepPlan(
        node_id="n",
        effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k"}, result_key="r"),
        next_node="m",
    )
    assert StepPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    record = StepRecord(
        run_id="r",
        step_id="s",
        node_id="n",
        status=StepStatus.COMPLETED,
        effect=plan.effect.to_dict() if plan.effect else None,
        result={"x": 1},
        ended_at=datetime.now(timezone.utc),
        attempt=2,
        idempotency_key="abc",
    )
    assert StepRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_effect_type_accepts_the_string_value() -> None:
    assert Effect("ask_user").type is EffectType.ASK_USER  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Effect("teleport")  # type: ignore[arg-type]


def test_workflow_spec_rejects_unknown_entry_node() -> None:
    with pytest.raises(InvalidWorkflowError, match="entry node 'missing'"):
        WorkflowSpec("wf", "missing", {"a": lambda run, ctx: None})
