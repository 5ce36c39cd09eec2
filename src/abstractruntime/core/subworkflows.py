"""Subworkflows: a step that starts a child run, and a child that wakes its parent.

Part of the runtime's driver (``runtime.py``), kept apart for its own rules:

- The child's id derives from the parent and the ledger position of the starting step, so a step
  re-executed after a crash finds the child it already started instead of starting a second one.
- ``async`` children are left to any worker; a sync child is driven at once, here, and the
  parent waits (``WaitReason.SUBWORKFLOW``) if the child waits.
- A child that ends wakes its waiting parent: here when this process holds it, else the store
  makes the parent due (in the child's last commit) for any worker.
- A parent whose wait timed out (``timeout_s`` / ``timeout_at``) cancels its child and the
  child's children, then commits its timeout (``cancel_for_timeout``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ConcurrentUpdateError, RunExistsError, RunLeasedError, RunNotFoundError
from . import machine, waitkeys
from .effects import EffectOutcome
from .models import Effect, RunState, RunStatus, WaitReason, WaitState
from .ports import RunHandle

if TYPE_CHECKING:
    from .runtime import Runtime

#: Children cancelled per parent by ``cancel_tree``.
MAX_CHILDREN = 10_000


def child_run_id(parent_run_id: str, seq: int) -> str:
    """The id of the child started by the parent's step at ledger position ``seq``."""
    return hashlib.sha256(f"{parent_run_id}:{seq}".encode()).hexdigest()[:32]


async def start(rt: Runtime, handle: RunHandle, effect: Effect) -> EffectOutcome:
    """Perform ``start_subworkflow``: start (or, after a crash, find again) the child run and,
    in sync mode, drive it until it waits or ends."""
    parent = handle.state
    payload = effect.payload
    workflow_id = payload.get("workflow_id")
    if not isinstance(workflow_id, str) or not workflow_id:
        return EffectOutcome.failed("start_subworkflow requires payload['workflow_id']")
    child_wf = rt.workflow_registry.get(workflow_id)
    if child_wf is None:
        return EffectOutcome.failed(
            f"start_subworkflow: workflow {workflow_id!r} not found in the workflow_registry "
            "(register it, or pass workflow_registry= with it)"
        )
    child_vars = payload.get("vars") or {}
    if not isinstance(child_vars, Mapping):
        return EffectOutcome.failed("start_subworkflow payload['vars'] must be a dict")
    child_id = child_run_id(parent.run_id, handle.seq)
    run_async = bool(payload.get("async", False))
    child = machine.new_run(
        child_wf,
        child_vars,
        now=rt.config.clock(),
        run_id=child_id,
        actor_id=parent.actor_id,
        session_id=parent.session_id,
        parent_run_id=parent.run_id,
        limits=rt.config.to_limits_dict(),
    )
    child.trace_context = rt.telemetry.run_created(child)  # the child continues our trace
    lease = None if run_async else (rt.config.owner, rt.leases.until())
    try:
        child_handle = rt.leases.track(
            await rt.store.create_run(child, rt.encode(child), lease=lease)
        )
    except RunExistsError:  # this step ran before and died before committing: same child
        if run_async:
            return EffectOutcome.completed({"sub_run_id": child_id, "async": True})
        try:
            child_handle = await rt._claim(child_id)
        except RunLeasedError:
            child_handle = await rt.store.load_run(child_id)
    if run_async:
        return EffectOutcome.completed({"sub_run_id": child_id, "async": True})
    if child_handle.owner is not None:
        child_handle = await rt._drive(child_wf, child_handle, None)
    result = machine.subworkflow_result(child_handle.state)
    if isinstance(result, dict):
        return EffectOutcome.completed(result)
    if isinstance(result, str):
        return EffectOutcome.failed(result)
    child_waiting = child_handle.state.waiting
    return EffectOutcome.waiting(
        WaitState(
            reason=WaitReason.SUBWORKFLOW,
            wait_key=waitkeys.subworkflow_key(child_id),
            details={
                "sub_run_id": child_id,
                "workflow_id": workflow_id,
                # The original's names; ``sub_waiting`` is what the child waited on when the
                # parent parked (it may have moved on since: read the child for its wait now).
                "sub_workflow_id": workflow_id,
                "sub_waiting": {
                    "reason": child_waiting.reason.value if child_waiting else None,
                    "wait_key": child_waiting.wait_key if child_waiting else None,
                },
            },
        )
    )


async def child_result(rt: Runtime, waiting: WaitState) -> dict[str, Any] | str | None:
    """For a parent waiting on its child: the child's output, an error that ends the parent,
    or None while the child goes on."""
    child_id = (waiting.details or {}).get("sub_run_id")
    if not isinstance(child_id, str):
        return None
    try:
        child = (await rt.store.load_run(child_id)).state
    except RunNotFoundError:
        return f"subworkflow run {child_id!r} no longer exists"
    return machine.subworkflow_result(child)


async def wake_parent(rt: Runtime, child: RunState) -> None:
    """A child ended: continue its parent here if it waits on it (else a worker will)."""
    assert child.parent_run_id is not None
    try:
        parent = (await rt.store.load_run(child.parent_run_id)).state
    except RunNotFoundError:
        return
    waiting = parent.waiting
    if (
        parent.status is not RunStatus.WAITING
        or waiting is None
        or waiting.reason is not WaitReason.SUBWORKFLOW
        or (waiting.details or {}).get("sub_run_id") != child.run_id
    ):
        return
    workflow = rt.workflow_registry.for_run(parent)
    if workflow is None:
        return
    with contextlib.suppress(RunLeasedError, ConcurrentUpdateError):
        await rt._drive(workflow, await rt._claim(parent.run_id), None)


async def cancel_tree(rt: Runtime, run_id: str, *, reason: str | None = None) -> list[RunState]:
    """Cancel the run and every unfinished run below it (children, grandchildren...); returns
    the states of the runs this call cancelled, the root first."""
    cancelled: list[RunState] = []
    pending = [run_id]
    while pending:
        current = pending.pop(0)
        was = await rt.get_state(current)
        why = reason if current == run_id else reason or f"parent run {run_id} was cancelled"
        state = await rt.cancel_run(current, why)
        if not was.status.is_terminal and state.status is RunStatus.CANCELLED:
            cancelled.append(state)
        children = await rt.store.list_runs(parent_run_id=current, limit=MAX_CHILDREN)
        # A finished child may still have an unfinished (async) child of its own.
        pending.extend(child.run_id for child in children)
    return cancelled


async def cancel_for_timeout(
    rt: Runtime, parent: RunHandle, waiting: WaitState
) -> RunHandle | None:
    """The claimed ``parent``'s wait on its child timed out: cancel the child with its
    children, before the parent's timeout is committed, so that a process that dies in between
    leaves no child running (the parent is timed out again by the next worker; a cancelled child
    does not fail a parent whose deadline has passed).

    Returns the parent's handle to commit the timeout with (the child's end may have marked the
    parent due, which moves its version), or None when the parent itself changed meanwhile.
    """
    child_id = (waiting.details or {}).get("sub_run_id")
    run_id = parent.state.run_id
    if isinstance(child_id, str):
        with contextlib.suppress(RunNotFoundError):
            await cancel_tree(rt, child_id, reason=f"parent run {run_id} timed out waiting")
    fresh = await rt.store.load_run(run_id)
    if fresh.version == parent.version:
        return parent
    if fresh.state_json != parent.state_json:
        return None
    return replace(fresh, owner=parent.owner)
