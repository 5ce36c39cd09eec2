"""The step machine: every transition of a run as a function, with no I/O.

Each function takes a run state and what happened (a plan, an effect's outcome, a payload, a
cancel...) and returns a ``Transition``: the new state and the ledger record that says why.
Nothing here reads a clock, a store or a handler: time comes in as ``now``, and the driver
(``runtime.py``) runs the handlers and commits what these functions return. So every rule of a
run's life can be tested without a store, and every store drives the same rules.

The functions take over the ``RunState`` they are given and return it changed (a copy per step
would cost a deep copy of ``vars`` on the hot path): the driver passes a state it no longer
needs, or decodes a fresh one from the committed JSON.

The life of a run::

    running ──plan: next_node──────────────▶ running (a pure transition, held and batched)
    running ──plan: complete_output─────────▶ completed
    running ──effect completed──────────────▶ running at next_node, or completed
    running ──effect waiting────────────────▶ waiting ──resume / timer / child ended──▶ running
    waiting ──its timeout passed first──────▶ running at timeout_node (time_out)
    running ──failed attempt, attempts left─▶ waiting (until the backoff is over) ──▶ running
    running ──final failure, or the last────▶ failed
    any unfinished ──cancel──▶ cancelled;  any ──restore──▶ the snapshot's state
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidTypeError, SerializationError
from . import timeouts, waitkeys
from .effects import EffectOutcome
from .kernel import check_size, clean_error, set_dotted
from .models import (
    Effect,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from .serde import encode, iso
from .snapshot import Snapshot
from .spec import WorkflowSpec
from .vars import LIMITS

#: Key of ``WaitState.details`` that marks a wait as the backoff before an effect's next attempt.
RETRY = "retry"


@dataclass(frozen=True)
class Transition:
    """A run's next state and the ledger record of how it got there."""

    state: RunState
    record: StepRecord


@dataclass(frozen=True)
class Failure:
    """Why a step failed, and whether another attempt of its effect may succeed."""

    error: str
    retryable: bool = False


def new_run(
    workflow: WorkflowSpec,
    vars: Mapping[str, Any] | None,
    *,
    now: datetime,
    run_id: str | None = None,
    actor_id: str | None = None,
    session_id: str | None = None,
    parent_run_id: str | None = None,
    limits: Mapping[str, Any] | None = None,
) -> RunState:
    """A run at the workflow's entry node, ``running``; ``limits`` become its
    ``vars["_limits"]`` unless ``vars`` has them."""
    if vars is not None and not isinstance(vars, Mapping):
        raise InvalidTypeError(f"vars must be a dict, got {type(vars).__name__}")
    vars = dict(vars or {})
    if limits is not None and LIMITS not in vars:
        vars[LIMITS] = dict(limits)
    return RunState(
        run_id=run_id or uuid.uuid4().hex,
        workflow_id=workflow.workflow_id,
        status=RunStatus.RUNNING,
        current_node=workflow.entry_node,
        vars=vars,
        created_at=now,
        updated_at=now,
        actor_id=actor_id,
        session_id=session_id,
        parent_run_id=parent_run_id,
        workflow_version=workflow.version,
    )


def new_record(state: RunState, now: datetime, status: StepStatus) -> StepRecord:
    """The ledger record of a step of ``state`` at its current node, starting ``now``."""
    return StepRecord(
        run_id=state.run_id,
        step_id=uuid.uuid4().hex,
        node_id=state.current_node or "",
        status=status,
        started_at=now,
        ended_at=now,
        actor_id=state.actor_id,
        session_id=state.session_id,
    )


def check_payload(value: Any, what: str, max_bytes: int | None) -> None:
    """``SerializationError`` when ``value`` cannot be JSON, ``SizeLimitError`` when its JSON is
    over ``max_bytes`` (``RuntimeConfig.max_payload_bytes``)."""
    check_size(encode(value, root=what), what, "max_payload_bytes", max_bytes)


# -- a step: the plan of a node ----------------------------------------------------------------


def goto(state: RunState, record: StepRecord, node_id: str, now: datetime) -> Transition:
    """A pure transition (a plan with only ``next_node``)."""
    state.current_node = node_id
    record.ended_at = state.updated_at = now
    return Transition(state, record)


def complete(
    state: RunState, record: StepRecord, output: dict[str, Any], now: datetime
) -> Transition:
    """A plan with ``complete_output`` and no effect: the run is done."""
    state.status = RunStatus.COMPLETED
    state.output = output
    record.ended_at = state.updated_at = now
    return Transition(state, record)


def apply_outcome(
    state: RunState,
    record: StepRecord,
    plan: StepPlan,
    outcome: object,
    now: datetime,
    *,
    max_payload_bytes: int | None = None,
) -> Transition | Failure:
    """Apply what performing ``plan.effect`` gave: its result goes to ``vars[result_key]`` and
    the run moves to ``next_node`` (or completes), a wait makes the run wait, a failure fails the
    step (the caller decides about another attempt)."""
    effect = plan.effect
    assert effect is not None
    name = effect.type.value
    if not isinstance(outcome, EffectOutcome):
        return Failure(
            f"effect handler for {name!r} returned {type(outcome).__name__}, "
            "expected an EffectOutcome"
        )
    if outcome.status == "failed":
        return Failure(f"effect {name!r} failed: {outcome.error}", outcome.retryable)
    if outcome.status == "waiting":
        wait = outcome.wait
        if wait is None:
            return Failure(f"effect {name!r} returned a waiting outcome without a WaitState")
        if wait.resume_to_node is None:
            wait.resume_to_node = plan.next_node
        if wait.result_key is None:
            wait.result_key = effect.result_key
        timeouts.arm(wait, effect, record.started_at)
        record.status = StepStatus.WAITING
        record.result = {"wait": wait.to_dict()}
        state.status = RunStatus.WAITING
        state.waiting = wait
    else:
        try:
            check_payload(outcome.result, f"the result of effect {name!r}", max_payload_bytes)
        except SerializationError as exc:
            return Failure(f"node {record.node_id!r}: {exc}")
        record.result = outcome.result
        if effect.result_key:
            set_dotted(state.vars, effect.result_key, outcome.result)
        if plan.next_node is not None:
            state.current_node = plan.next_node
        else:
            state.status = RunStatus.COMPLETED
            state.output = (
                plan.complete_output
                if plan.complete_output is not None
                else {"result": outcome.result}
            )
    record.ended_at = state.updated_at = now
    return Transition(state, record)


def fail(committed: RunState, record: StepRecord, error: str, now: datetime) -> Transition:
    """A failed step is atomic: the run keeps its last committed state (``committed``, a fresh
    copy), marked failed; the error is cleaned as ``kernel.clean_error`` says."""
    committed.status = RunStatus.FAILED
    committed.error = error = clean_error(error)
    committed.waiting = None
    record.status = StepStatus.FAILED
    record.error = error
    record.result = None
    record.ended_at = committed.updated_at = now
    return Transition(committed, record)


def after_failed_attempt(
    committed: RunState,
    record: StepRecord,
    effect: Effect,
    error: str,
    now: datetime,
    *,
    max_attempts: int,
    backoff_s: float,
) -> Transition:
    """A retryable failure of ``record.attempt``: the run waits until the backoff is over and
    then runs the node again (a persisted due time: nothing sleeps, a restart keeps it), or,
    after the last attempt, fails with the last error, saying how many attempts it had (in the
    original's words, "after N attempts"). Like a failed step, the attempt keeps nothing it
    changed (``committed`` is the last committed state): only the wait is new."""
    if record.attempt >= max_attempts:
        if max_attempts > 1:
            error = f"{error} (giving up after {record.attempt} attempts)"
        return fail(committed, record, error, now)
    retry_at = now + timedelta(seconds=max(backoff_s, 0.0))
    node_id = record.node_id
    committed.status, committed.current_node, committed.updated_at = (
        RunStatus.WAITING,
        node_id,
        now,
    )
    committed.waiting = WaitState(
        reason=WaitReason.UNTIL,
        until=retry_at,
        wait_key=waitkeys.retry_key(committed.run_id, node_id),
        resume_to_node=node_id,
        details={
            RETRY: {
                "attempt": record.attempt,
                "max_attempts": max_attempts,
                "idempotency_key": record.idempotency_key,
                "effect_type": effect.type.value,
                "error": error,
            }
        },
    )
    record.status = StepStatus.FAILED
    record.error = error
    record.result = {
        "retry_at": iso(retry_at),
        "attempt": record.attempt,
        "max_attempts": max_attempts,
    }
    record.ended_at = now
    return Transition(committed, record)


def retry_of(waiting: WaitState | None) -> dict[str, Any] | None:
    """The retry bookkeeping of a backoff wait (None for any other wait)."""
    if waiting is None or waiting.reason is not WaitReason.UNTIL:
        return None
    retry = (waiting.details or {}).get(RETRY)
    return retry if isinstance(retry, dict) else None


def start_retry(state: RunState) -> dict[str, Any]:
    """A backoff wait is over: the run is back at the node, to run it as the next attempt
    (nothing is committed in between: the attempt count and key live in the committed wait).
    Returns the retry bookkeeping for that attempt."""
    retry = retry_of(state.waiting)
    assert retry is not None and state.waiting is not None
    state.current_node = state.waiting.resume_to_node
    state.status, state.waiting = RunStatus.RUNNING, None
    return retry


# -- waits ending --------------------------------------------------------------------------------


def timer_payload(waiting: WaitState, now: datetime) -> dict[str, Any] | None:
    """The resume payload of a ``wait_until`` whose time has come (None: not yet)."""
    if waiting.reason is WaitReason.UNTIL and waiting.until is not None and now >= waiting.until:
        return {"until": iso(waiting.until)}
    return None


def time_out(state: RunState, workflow: WorkflowSpec, now: datetime) -> Transition | None:
    """A waiting run whose timeout has passed goes on at its ``timeout_node`` (else at
    ``resume_to_node``) with ``{"timed_out": True, "waited_s", "wait_key"}`` at ``result_key``;
    the record's result says so. None: it does not wait, or its timeout has not passed."""
    waiting = state.waiting
    if state.status is not RunStatus.WAITING or waiting is None:
        return None
    payload = timeouts.payload(waiting, now)
    if payload is None:
        return None
    if waiting.timeout_node is not None:
        waiting.resume_to_node = waiting.timeout_node
    return resume(state, workflow, payload, now)


def subworkflow_result(child: RunState) -> dict[str, Any] | str | None:
    """What a parent gets from its child: the output, an error, or None while it goes on."""
    if child.status is RunStatus.COMPLETED:
        return {"sub_run_id": child.run_id, "output": child.output}
    if child.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        return (
            f"subworkflow {child.workflow_id!r} (run {child.run_id}) {child.status.value}: "
            f"{child.error}"
        )
    return None


def resume(
    state: RunState, workflow: WorkflowSpec, payload: dict[str, Any], now: datetime
) -> Transition:
    """A waiting run gets ``payload`` (an answer, an event, a timer, a child's output): it goes
    on at ``resume_to_node`` with the payload at ``result_key``; with no node to go to, the
    wait was its last step and the payload is its output."""
    waiting = state.waiting
    assert waiting is not None
    record = new_record(state, now, StepStatus.COMPLETED)
    record.result = payload
    target = waiting.resume_to_node
    if target is not None and target not in workflow.nodes:
        error = (
            f"cannot resume at node {target!r}: workflow {workflow.workflow_id!r} has no such node"
        )
        return fail(state, record, error, now)
    if waiting.result_key:
        set_dotted(state.vars, waiting.result_key, payload)
    state.waiting = None
    state.updated_at = now
    if target is None:
        state.status = RunStatus.COMPLETED
        state.output = payload
    else:
        state.status = RunStatus.RUNNING
        state.current_node = target
    return Transition(state, record)


# -- operators' transitions ----------------------------------------------------------------------


def cancel(state: RunState, reason: str | None, now: datetime) -> Transition | None:
    """Cancel a run that is not finished (None for a finished one: it stays as it is)."""
    if state.status.is_terminal:
        return None
    record = new_record(state, now, StepStatus.FAILED)
    record.error = f"cancelled: {reason}" if reason else "cancelled"
    record.result = {"cancelled": True, "reason": reason}
    state.status = RunStatus.CANCELLED
    state.error = reason or "cancelled"
    state.waiting = None
    state.updated_at = now
    return Transition(state, record)


def set_vars(
    state: RunState, vars: dict[str, Any], note: dict[str, Any], now: datetime
) -> Transition:
    """An operator's change of the run's vars (``update_limits``), noted in the ledger; the
    run stays where it is."""
    state.vars = vars
    state.updated_at = now
    record = new_record(state, now, StepStatus.COMPLETED)
    record.result = note
    return Transition(state, record)


def migrate(
    state: RunState,
    to_version: str,
    node_map: Mapping[str, str],
    vars: dict[str, Any],
    now: datetime,
) -> Transition:
    """An operator's move of a run to another version of its workflow: its nodes (the current
    one and those its wait continues at) renamed by ``node_map``, its vars replaced; noted in
    the ledger with a ``migrated`` result."""
    from_version, from_node = state.workflow_version, state.current_node
    state.workflow_version = to_version
    state.current_node = _mapped(node_map, state.current_node)
    waiting = state.waiting
    if waiting is not None:
        waiting.resume_to_node = _mapped(node_map, waiting.resume_to_node)
        waiting.timeout_node = _mapped(node_map, waiting.timeout_node)
    changed = vars != state.vars
    state.vars = vars
    state.updated_at = now
    record = new_record(state, now, StepStatus.COMPLETED)
    record.result = {
        "migrated": {
            "from_version": from_version,
            "to_version": to_version,
            "from_node": from_node,
            "to_node": state.current_node,
            "vars_changed": changed,
        }
    }
    return Transition(state, record)


def _mapped(node_map: Mapping[str, str], node: str | None) -> str | None:
    return node if node is None else node_map.get(node, node)


def restore(current: RunState, snapshot: Snapshot, now: datetime) -> Transition:
    """The snapshot's state becomes the run's current state; the run keeps its birth."""
    state = snapshot.state
    state.created_at = current.created_at
    state.updated_at = now
    record = new_record(state, now, StepStatus.COMPLETED)
    record.result = {
        "restored": snapshot.snapshot_id,
        "snapshot_name": snapshot.name,
        "snapshot_step_id": snapshot.step_id,
        "replaced": {"status": current.status.value, "node": current.current_node},
    }
    return Transition(state, record)


def fork(snapshot: Snapshot, now: datetime, run_id: str | None = None) -> Transition:
    """A new run from the snapshot's state, a child of the snapshot's run; a wait key the
    runtime made for the old run is renamed to the new one."""
    state = snapshot.state
    state.run_id = run_id or uuid.uuid4().hex
    state.parent_run_id = snapshot.run_id
    state.created_at = state.updated_at = now
    if state.waiting is not None and state.waiting.wait_key is not None:
        state.waiting.wait_key = waitkeys.renamed_for(
            state.waiting.wait_key, snapshot.run_id, state.run_id
        )
    record = new_record(state, now, StepStatus.COMPLETED)
    record.result = {
        "forked_from": {
            "snapshot_id": snapshot.snapshot_id,
            "run_id": snapshot.run_id,
            "step_id": snapshot.step_id,
        }
    }
    return Transition(state, record)


def limit_wait(
    committed: RunState,
    record: StepRecord,
    *,
    until: datetime,
    limit: dict[str, Any],
    retry: dict[str, Any],
    wait_key: str,
    now: datetime,
) -> Transition:
    """A step refused by a concurrency or rate limit (``core.throttle``): the run waits, at
    the latest until ``until``, and then runs the node again, like a retry that is not an
    attempt (``retry["attempt"]`` stays where it was, the idempotency key is kept). A release
    of the budget makes it due sooner. Like a failed attempt, the step keeps nothing it changed
    (``committed`` is the last committed state)."""
    node_id = record.node_id
    committed.status, committed.current_node, committed.updated_at = (
        RunStatus.WAITING,
        node_id,
        now,
    )
    committed.waiting = WaitState(
        reason=WaitReason.UNTIL,
        until=until,
        wait_key=wait_key,
        resume_to_node=node_id,
        details={RETRY: retry, "limit": limit},
    )
    record.status = StepStatus.WAITING
    record.result = {"limit": limit, "retry_at": iso(until)}
    record.ended_at = now
    return Transition(committed, record)
