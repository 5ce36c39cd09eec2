"""The step machine on its own: every transition, with no store, no clock and no handler."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    RunStatus,
    Snapshot,
    StepPlan,
    StepStatus,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from abstractruntime.core import machine, waitkeys
from abstractruntime.core.kernel import MAX_ERROR_CHARS
from abstractruntime.core.machine import Failure, Transition

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=5)


def _node(run: RunState, ctx: object) -> StepPlan:  # never called: the machine runs no handler
    raise AssertionError


WF = WorkflowSpec("wf", "a", {"a": _node, "b": _node, "c": _node})
TOOL = Effect(EffectType.TOOL_CALLS, {"calls": []}, result_key="out.tools")


def running(**vars: object) -> RunState:
    return machine.new_run(WF, dict(vars), now=NOW, run_id="r1", actor_id="ann")


def waiting(wait: WaitState) -> RunState:
    state = running()
    state.status, state.waiting = RunStatus.WAITING, wait
    return state


def test_a_new_run_is_running_at_the_entry_node() -> None:
    state = running(x=1)
    assert (state.status, state.current_node, state.vars) == (RunStatus.RUNNING, "a", {"x": 1})
    assert state.created_at == state.updated_at == NOW
    with pytest.raises(TypeError, match="vars must be a dict"):
        machine.new_run(WF, [1, 2], now=NOW)  # type: ignore[arg-type]


def test_goto_and_complete() -> None:
    state = running()
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    moved = machine.goto(state, record, "b", LATER)
    assert moved.state.current_node == "b" and moved.record.node_id == "a"
    assert moved.record.ended_at == moved.state.updated_at == LATER
    done = machine.complete(
        state, machine.new_record(state, LATER, StepStatus.COMPLETED), {"k": 1}, LATER
    )
    assert (done.state.status, done.state.output) == (RunStatus.COMPLETED, {"k": 1})


def test_a_completed_effect_stores_its_result_at_a_dotted_key_and_moves_on() -> None:
    state = running()
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    plan = StepPlan("a", effect=TOOL, next_node="c")
    done = machine.apply_outcome(state, record, plan, EffectOutcome.completed([1]), LATER)
    assert isinstance(done, Transition)
    assert done.state.vars == {"out": {"tools": [1]}} and done.state.current_node == "c"
    assert done.record.result == [1] and done.record.status is StepStatus.COMPLETED


def test_a_completed_effect_without_next_node_completes_the_run() -> None:
    state = running()
    plan = StepPlan("a", effect=TOOL)
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    done = machine.apply_outcome(state, record, plan, EffectOutcome.completed(7), LATER)
    assert isinstance(done, Transition)
    assert (done.state.status, done.state.output) == (RunStatus.COMPLETED, {"result": 7})


def test_a_waiting_outcome_resumes_at_next_node_with_the_effects_result_key() -> None:
    state = running()
    plan = StepPlan("a", effect=TOOL, next_node="b")
    wait = WaitState(reason=WaitReason.EVENT, wait_key="evt")
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    done = machine.apply_outcome(state, record, plan, EffectOutcome.waiting(wait), LATER)
    assert isinstance(done, Transition)
    assert done.state.status is RunStatus.WAITING and done.record.status is StepStatus.WAITING
    assert done.state.waiting is not None
    assert (done.state.waiting.resume_to_node, done.state.waiting.result_key) == ("b", "out.tools")


@pytest.mark.parametrize(
    ("outcome", "error", "retryable"),
    [
        (EffectOutcome.failed("boom", retryable=True), "effect 'tool_calls' failed: boom", True),
        (EffectOutcome.failed("boom"), "effect 'tool_calls' failed: boom", True),
        (
            EffectOutcome.failed("boom", retryable=False),
            "effect 'tool_calls' failed: boom",
            False,
        ),
        ("not an outcome", "returned str, expected an EffectOutcome", False),
        (EffectOutcome(status="waiting"), "waiting outcome without a WaitState", False),
        (EffectOutcome.completed(float("nan")), "node 'a': the result of effect", False),
    ],
)
def test_failed_or_malformed_outcomes_are_failures(
    outcome: object, error: str, retryable: bool
) -> None:
    state = running(keep=1)
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    plan = StepPlan("a", effect=TOOL, next_node="b")
    failure = machine.apply_outcome(state, record, plan, outcome, LATER)
    assert isinstance(failure, Failure)
    assert error in failure.error and failure.retryable is retryable
    assert state.vars == {"keep": 1} and state.status is RunStatus.RUNNING


def test_a_result_over_the_payload_limit_is_a_failure_naming_the_limit() -> None:
    state = running()
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    plan = StepPlan("a", effect=TOOL, next_node="b")
    big = EffectOutcome.completed("x" * 5000)
    failure = machine.apply_outcome(state, record, plan, big, LATER, max_payload_bytes=1024)
    assert isinstance(failure, Failure) and "max_payload_bytes" in failure.error


def test_fail_keeps_the_committed_state_and_cleans_the_error() -> None:
    state = waiting(WaitState(reason=WaitReason.EVENT, wait_key="k"))
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    record.result = {"partial": True}
    failed = machine.fail(state, record, "bad \udc80" + "x" * (MAX_ERROR_CHARS + 50), LATER)
    assert failed.state.status is RunStatus.FAILED and failed.state.waiting is None
    assert failed.state.error == failed.record.error
    assert "\\udc80" in failed.record.error and "more characters cut" in failed.record.error
    assert failed.record.status is StepStatus.FAILED and failed.record.result is None


def test_a_retryable_failure_parks_the_run_until_the_backoff_is_over() -> None:
    state = running(n=1)
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    record.attempt, record.idempotency_key = 1, "key-1"
    parked = machine.after_failed_attempt(
        state, record, TOOL, "timeout", NOW, max_attempts=3, backoff_s=2.5
    )
    wait = parked.state.waiting
    assert parked.state.status is RunStatus.WAITING and wait is not None
    assert wait.reason is WaitReason.UNTIL and wait.until == NOW + timedelta(seconds=2.5)
    assert wait.wait_key == waitkeys.retry_key("r1", "a") == "retry:r1:a"
    assert parked.record.status is StepStatus.FAILED and parked.record.error == "timeout"
    assert parked.record.result == {
        "retry_at": "2026-01-01T12:00:02.500000+00:00",
        "attempt": 1,
        "max_attempts": 3,
    }
    assert machine.timer_payload(wait, NOW) is None  # the backoff is not over yet

    retry = machine.start_retry(parked.state)
    assert retry["attempt"] == 1 and retry["idempotency_key"] == "key-1"
    assert parked.state.status is RunStatus.RUNNING and parked.state.current_node == "a"
    assert parked.state.waiting is None and parked.state.vars == {"n": 1}


def test_the_last_attempt_fails_the_run_and_says_it_gave_up() -> None:
    state = running()
    record = machine.new_record(state, NOW, StepStatus.COMPLETED)
    record.attempt = 3
    done = machine.after_failed_attempt(
        state, record, TOOL, "timeout", NOW, max_attempts=3, backoff_s=1
    )
    assert done.state.status is RunStatus.FAILED
    assert done.state.error == "timeout (giving up after 3 attempts)"


def test_retry_of_only_reads_backoff_waits() -> None:
    assert machine.retry_of(None) is None
    assert machine.retry_of(WaitState(reason=WaitReason.UNTIL, until=NOW)) is None
    assert machine.retry_of(WaitState(reason=WaitReason.EVENT, details={"retry": {}})) is None


def test_a_timer_is_over_at_its_time() -> None:
    wait = WaitState(reason=WaitReason.UNTIL, until=LATER)
    assert machine.timer_payload(wait, NOW) is None
    assert machine.timer_payload(wait, LATER) == {"until": "2026-01-01T12:00:05+00:00"}
    assert machine.timer_payload(WaitState(reason=WaitReason.EVENT, wait_key="k"), LATER) is None


def test_resume_writes_the_payload_and_goes_to_the_resume_node() -> None:
    wait = WaitState(reason=WaitReason.USER, wait_key="k", resume_to_node="c", result_key="a.b")
    done = machine.resume(waiting(wait), WF, {"text": "yes"}, LATER)
    assert (done.state.status, done.state.current_node) == (RunStatus.RUNNING, "c")
    assert done.state.vars == {"a": {"b": {"text": "yes"}}} and done.state.waiting is None
    assert done.record.result == {"text": "yes"} and done.record.status is StepStatus.COMPLETED


def test_resume_with_no_node_to_go_to_completes_with_the_payload() -> None:
    done = machine.resume(
        waiting(WaitState(reason=WaitReason.EVENT, wait_key="k")), WF, {"p": 1}, LATER
    )
    assert (done.state.status, done.state.output) == (RunStatus.COMPLETED, {"p": 1})


def test_resume_at_a_node_the_workflow_lacks_fails_the_run() -> None:
    wait = WaitState(reason=WaitReason.EVENT, wait_key="k", resume_to_node="gone")
    done = machine.resume(waiting(wait), WF, {}, LATER)
    assert done.state.status is RunStatus.FAILED
    assert "cannot resume at node 'gone'" in (done.state.error or "")


def test_subworkflow_results() -> None:
    child = running()
    assert machine.subworkflow_result(child) is None
    child.status, child.output = RunStatus.COMPLETED, {"v": 1}
    assert machine.subworkflow_result(child) == {"sub_run_id": "r1", "output": {"v": 1}}
    child.status, child.error = RunStatus.CANCELLED, "stop"
    assert machine.subworkflow_result(child) == "subworkflow 'wf' (run r1) cancelled: stop"


def test_cancel_ends_an_unfinished_run_and_leaves_a_finished_one() -> None:
    cancelled = machine.cancel(
        waiting(WaitState(reason=WaitReason.EVENT, wait_key="k")), "why", NOW
    )
    assert cancelled is not None
    assert (cancelled.state.status, cancelled.state.error) == (RunStatus.CANCELLED, "why")
    assert cancelled.state.waiting is None and cancelled.record.error == "cancelled: why"
    assert cancelled.record.result == {"cancelled": True, "reason": "why"}
    assert machine.cancel(cancelled.state, None, LATER) is None


def test_restore_brings_the_snapshot_back_and_keeps_the_runs_birth() -> None:
    earlier = running(v=1)
    snap = Snapshot.from_run(run=earlier, name="before")
    current = running(v=2)
    current.created_at = NOW - timedelta(days=1)
    current.status = RunStatus.FAILED
    restored = machine.restore(current, snap, LATER)
    assert restored.state.vars == {"v": 1} and restored.state.status is RunStatus.RUNNING
    assert restored.state.created_at == current.created_at and restored.state.updated_at == LATER
    assert restored.record.result is not None
    assert restored.record.result["replaced"] == {"status": "failed", "node": "a"}


def test_a_fork_is_a_child_and_its_default_wait_keys_name_it() -> None:
    user = waiting(WaitState(reason=WaitReason.USER, wait_key=waitkeys.user_key("r1", "a")))
    forked = machine.fork(Snapshot.from_run(run=user, name="s"), LATER, run_id="r2")
    assert forked.state.run_id == "r2" and forked.state.parent_run_id == "r1"
    assert forked.state.waiting is not None and forked.state.waiting.wait_key == "user:r2:a"
    assert forked.record.result is not None
    assert forked.record.result["forked_from"]["run_id"] == "r1"
    own = waiting(WaitState(reason=WaitReason.EVENT, wait_key="user:r1-not-a-prefix"))
    kept = machine.fork(Snapshot.from_run(run=own, name="s"), LATER, run_id="r3")
    assert kept.state.waiting is not None
    assert kept.state.waiting.wait_key == "user:r1-not-a-prefix"


def test_migrate_renames_the_nodes_of_the_run_and_its_wait_and_notes_it() -> None:
    state = waiting(
        WaitState(
            reason=WaitReason.USER,
            wait_key="user:r1:a",
            resume_to_node="b",
            timeout_at=LATER,
            timeout_node="c",
        )
    )
    state.current_node = "a"
    moved = machine.migrate(state, "2", {"a": "A", "c": "C"}, {"x": 2}, LATER)
    new = moved.state
    assert (new.workflow_version, new.current_node, new.vars) == ("2", "A", {"x": 2})
    assert new.waiting is not None
    assert (new.waiting.resume_to_node, new.waiting.timeout_node) == ("b", "C")  # b unmapped
    assert new.waiting.wait_key == "user:r1:a"  # an answer to the old key still reaches it
    assert new.status is RunStatus.WAITING and new.updated_at == LATER
    assert moved.record.status is StepStatus.COMPLETED and moved.record.node_id == "A"
    assert moved.record.result == {
        "migrated": {
            "from_version": "1",
            "to_version": "2",
            "from_node": "a",
            "to_node": "A",
            "vars_changed": True,
        }
    }
