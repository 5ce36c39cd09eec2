"""Step state machine helpers: pure decisions shared by every store (no I/O here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import SizeLimitError
from .models import RunState, RunStatus, StepPlan, WaitReason
from .serde import encode
from .spec import WorkflowSpec


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(v, "a.b.c", x)`` sets ``v["a"]["b"]["c"] = x``, creating dicts on the way."""
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"result key {key!r} has an empty part")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def check_plan(workflow: WorkflowSpec, node_id: str, plan: Any) -> str | None:
    """Why ``plan`` (returned by node ``node_id``) cannot be executed, or None when it can."""
    if not isinstance(plan, StepPlan):
        return f"node {node_id!r} returned {type(plan).__name__}, expected a StepPlan"
    if plan.next_node is not None and plan.next_node not in workflow.nodes:
        return (
            f"node {node_id!r} planned next_node {plan.next_node!r}, which is not a node of "
            f"workflow {workflow.workflow_id!r}"
        )
    if plan.effect is None and plan.next_node is None and plan.complete_output is None:
        return f"node {node_id!r} returned a StepPlan with no effect, next_node or complete_output"
    if plan.complete_output is not None and not isinstance(plan.complete_output, dict):
        return (
            f"node {node_id!r} returned complete_output of type "
            f"{type(plan.complete_output).__name__}, expected a dict"
        )
    return None


def encode_state(state: RunState, max_bytes: int | None = None) -> str:
    """The state's canonical JSON; a ``SerializationError`` names the bad key (``vars['x']``),
    a ``SizeLimitError`` a state over ``max_bytes`` (``RuntimeConfig.max_state_bytes``)."""
    data = state.to_dict()
    try:
        text = encode(data, root="state")
    except Exception:
        for name, value in data.items():  # report the field itself, not "state['vars']"
            encode(value, root=name)
        raise
    check_size(text, f"the state of run {state.run_id!r}", "max_state_bytes", max_bytes)
    return text


def check_size(text: str, what: str, limit_name: str, limit: int | None) -> None:
    """Raise ``SizeLimitError`` when ``text`` takes more than ``limit`` bytes as UTF-8."""
    if limit is None or len(text) * 4 <= limit:  # cheap: 4 bytes per character at most
        return
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise SizeLimitError(what, size, limit_name, limit)


def fail(state: RunState, error: str) -> None:
    state.status = RunStatus.FAILED
    state.error = error
    state.waiting = None


def due_at(state: RunState, now: datetime, *, committing: bool = False) -> datetime | None:
    """When a worker should next look at an unclaimed run in ``state`` (None: not by itself).

    ``committing``: the state is being committed by a step. A wait on a subworkflow is then due
    at once, for one check by a worker: the child wakes its parent when it ends only if the
    parent already waits, so a child that ended while the parent's step was still running (and
    whose process then died) would otherwise never wake it. After that check (a release), the
    wait is due only when the child ends.
    """
    if state.status is RunStatus.RUNNING:
        return now
    waiting = state.waiting
    if state.status is RunStatus.WAITING and waiting:
        if waiting.reason is WaitReason.UNTIL:
            return waiting.until
        if committing and waiting.reason is WaitReason.SUBWORKFLOW:
            return now
    return None
