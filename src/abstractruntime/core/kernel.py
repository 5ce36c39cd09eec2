"""Step state machine helpers: pure decisions shared by every store (no I/O here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import (
    InvalidArgumentError,
    NotAnswerableError,
    RunNotWaitingError,
    SerializationError,
    SizeLimitError,
)
from . import timeouts
from .models import Effect, EffectType, RunState, RunStatus, StepPlan, WaitReason
from .serde import encode
from .spec import WorkflowSpec

#: Column sizes of the SQL schema (``storage.sql.schema.runs``) for the fields of a run state
#: that are also indexed columns, checked here so that every store refuses the same values:
#: Postgres refuses longer ones and any NUL character; SQLite and memory would keep them.
COLUMN_LIMITS: tuple[tuple[str, int, bool], ...] = (
    # (field, most characters, required)
    ("run_id", 64, True),
    ("workflow_id", 255, True),
    ("workflow_version", 64, True),
    ("current_node", 255, False),
    ("parent_run_id", 64, False),
    ("actor_id", 255, False),
    ("session_id", 255, False),
)
WAIT_KEY_LIMIT = 512

#: Effects whose built-in handlers read ``payload['resume_to_node']``.
_RESUMING_EFFECTS = (EffectType.WAIT_EVENT, EffectType.WAIT_UNTIL, EffectType.ASK_USER)


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
    if plan.next_node is not None and not isinstance(plan.next_node, str):
        return (
            f"node {node_id!r} planned next_node {plan.next_node!r} of type "
            f"{type(plan.next_node).__name__}, expected a node id (a string)"
        )
    if plan.next_node is not None and plan.next_node not in workflow.nodes:
        return (
            f"node {node_id!r} planned next_node {plan.next_node!r}, which is not a node of "
            f"workflow {workflow.workflow_id!r}"
        )
    if plan.effect is not None:
        problem = _effect_problem(workflow, plan.effect)
        if problem:
            return f"node {node_id!r} returned {problem}"
    if plan.effect is None and plan.next_node is None and plan.complete_output is None:
        return f"node {node_id!r} returned a StepPlan with no effect, next_node or complete_output"
    if plan.complete_output is not None and not isinstance(plan.complete_output, dict):
        return (
            f"node {node_id!r} returned complete_output of type "
            f"{type(plan.complete_output).__name__}, expected a dict"
        )
    return None


def _effect_problem(workflow: WorkflowSpec, effect: object) -> str | None:
    """Why a planned effect cannot be performed (checked before anything is performed)."""
    if not isinstance(effect, Effect):
        return f"an effect of type {type(effect).__name__}, expected an Effect"
    if not isinstance(effect.type, EffectType):
        return f"an Effect whose type {effect.type!r} is not an EffectType"
    if not isinstance(effect.payload, dict):
        return (
            f"an Effect {effect.type.value!r} whose payload is a "
            f"{type(effect.payload).__name__}, expected a dict"
        )
    problem = result_key_problem(effect.result_key)
    if problem:
        return f"an Effect {effect.type.value!r} whose {problem}"
    target = effect.payload.get("resume_to_node")
    if (
        effect.type in _RESUMING_EFFECTS
        and isinstance(target, str)
        and target
        and target not in workflow.nodes
    ):
        return (
            f"an Effect {effect.type.value!r} that resumes at node {target!r}, which is not a "
            f"node of workflow {workflow.workflow_id!r}"
        )
    problem = timeouts.problem(effect, workflow.nodes)
    if problem:
        return f"an Effect {effect.type.value!r} whose {problem}"
    return None


def result_key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a ``result_key`` (None, or a dotted path of non-empty parts)."""
    if key is None:
        return None
    if not isinstance(key, str):
        return f"result_key {key!r} is a {type(key).__name__}, expected a string"
    if key and not all(key.split(".")):
        return f"result_key {key!r} has an empty part"
    return None


def check_limit(limit: object) -> None:
    """``InvalidArgumentError`` for a list's ``limit`` that is not a whole number >= 0
    (checked before any I/O: a caller's mistake is not a database failure)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(f"limit must be a whole number >= 0, got {limit!r}")


def not_waiting(state: RunState) -> RunNotWaitingError:
    """The one error of an answer (``resume``, ``respond``) to a run that does not wait: the
    same words whichever call lost the race."""
    if state.status is RunStatus.WAITING and state.waiting is not None:
        return RunNotWaitingError(
            f"run {state.run_id!r} no longer waits for that answer (answered meanwhile; it now "
            f"waits on {state.waiting.wait_key or state.waiting.reason.value!r}); nothing was done"
        )
    return RunNotWaitingError(
        f"run {state.run_id!r} is {state.status.value}, not waiting (answered, ended or "
        "cancelled meanwhile); nothing was done"
    )


def check_answerable(state: RunState) -> None:
    """Raise unless ``state`` waits for an answer (``respond``): ``not_waiting``, or
    ``NotAnswerableError`` for a wait that ends by itself (a timer, a retry, a child run)."""
    waiting = state.waiting
    if state.status is not RunStatus.WAITING or waiting is None:
        raise not_waiting(state)
    if waiting.reason not in (WaitReason.UNTIL, WaitReason.SUBWORKFLOW):
        return
    if waiting.reason is WaitReason.SUBWORKFLOW:
        why = "for its child run"
    elif (waiting.details or {}).get("retry"):
        why = f"to retry its effect at {waiting.until.isoformat() if waiting.until else '?'}"
    else:
        why = f"until {waiting.until.isoformat() if waiting.until else '?'} (a timer)"
    raise NotAnswerableError(
        f"run {state.run_id!r} waits {why}, not for an answer; it goes on by itself, and "
        "respond() answers waits for a person or an event (use resume() to end a timer early)"
    )


def check_columns(state: RunState) -> None:
    """Raise ``SerializationError`` for a field that is also an indexed column and that no
    database column can hold: not a string, a NUL character, longer than the column."""
    for name, limit, required in COLUMN_LIMITS:
        _check_column(name, getattr(state, name), limit, required)
    if state.waiting is not None:
        _check_column("waiting.wait_key", state.waiting.wait_key, WAIT_KEY_LIMIT, False)


def unstorable(*values: object) -> bool:
    """Whether a lookup value can match nothing stored: a string with a NUL character, which no
    stored key holds (``encode_state`` refuses them) and Postgres refuses to even compare."""
    return any(isinstance(value, str) and "\x00" in value for value in values)


def _check_column(name: str, value: object, limit: int, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        reason = f"it is a {type(value).__name__}, expected a string"
    elif "\x00" in value:
        reason = "it holds a NUL character (\\x00), which database text columns cannot hold"
    elif len(value) > limit:
        reason = f"it has {len(value)} characters, over the {limit} of its column"
    else:
        return
    raise SerializationError(name, reason, where="in its database column")


def encode_state(state: RunState, max_bytes: int | None = None) -> str:
    """The state's canonical JSON; a ``SerializationError`` names the bad key (``vars['x']``)
    or column field (``waiting.wait_key``), a ``SizeLimitError`` a state over ``max_bytes``
    (``RuntimeConfig.max_state_bytes``)."""
    check_columns(state)
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


#: The longest error text a failed run's state keeps: a node that raises an exception with a
#: huge message must still fail within ``max_state_bytes`` instead of failing to fail.
MAX_ERROR_CHARS = 10_000


def clean_error(error: str) -> str:
    """``error`` as a failed run can store it: lone surrogates escaped, at most
    ``MAX_ERROR_CHARS`` characters."""
    if not error.isascii():
        error = error.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(error) > MAX_ERROR_CHARS:
        cut = len(error) - MAX_ERROR_CHARS
        error = f"{error[:MAX_ERROR_CHARS]}... ({cut} more characters cut)"
    return error


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
        return waiting.timeout_at
    return None
