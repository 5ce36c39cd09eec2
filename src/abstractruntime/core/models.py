"""The data model: plain, JSON-serialisable dataclasses with a lossless dict round trip.

Timestamps are timezone-aware UTC ``datetime`` objects in memory and ISO-8601 strings in dicts.
Enum values are the lower-case strings of the API contract.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from .serde import iso, to_utc, utc_now

#: The version of a workflow that does not name one, and of the runs stored before versions.
DEFAULT_WORKFLOW_VERSION = "1"


class _StrEnum(str, enum.Enum):
    """``str(x)`` and f-strings give the contract value (``"waiting"``), not ``Class.NAME``."""

    def __str__(self) -> str:
        return str(self.value)


class EffectType(_StrEnum):
    WAIT_EVENT = "wait_event"
    WAIT_UNTIL = "wait_until"
    ASK_USER = "ask_user"
    LLM_CALL = "llm_call"
    TOOL_CALLS = "tool_calls"
    START_SUBWORKFLOW = "start_subworkflow"


class RunStatus(_StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class WaitReason(_StrEnum):
    EVENT = "event"
    UNTIL = "until"
    USER = "user"
    JOB = "job"
    SUBWORKFLOW = "subworkflow"


class StepStatus(_StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    WAITING = "waiting"
    FAILED = "failed"


def _opt_time(value: datetime | str | None) -> datetime | None:
    return None if value is None else to_utc(value)


def _opt_iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


class _IsoTimes:
    """Timestamp fields stay aware UTC datetimes when an ISO-8601 string is assigned later too
    (``run.updated_at = "2025-01-01T00:00:00Z"``, ``run.waiting.until = ...``): the original's
    timestamps were such strings, and its users assign them."""

    _TIMES: ClassVar[frozenset[str]] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, str) and name in self._TIMES:
            value = to_utc(value)
        object.__setattr__(self, name, value)


@dataclass
class Effect:
    """A side effect a node asks the runtime to perform; its result lands at ``result_key``."""

    type: EffectType
    payload: dict[str, Any] = field(default_factory=dict)
    result_key: str | None = None

    def __post_init__(self) -> None:
        self.type = EffectType(self.type)
        if self.payload is None:
            self.payload = {}

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type.value, "payload": self.payload, "result_key": self.result_key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Effect:
        return cls(
            type=EffectType(data["type"]),
            payload=dict(data.get("payload") or {}),
            result_key=data.get("result_key"),
        )


@dataclass
class StepPlan:
    """What a node decided: an effect to perform, the next node, or the final output."""

    node_id: str
    effect: Effect | None = None
    next_node: str | None = None
    complete_output: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "effect": self.effect.to_dict() if self.effect else None,
            "next_node": self.next_node,
            "complete_output": self.complete_output,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepPlan:
        effect = data.get("effect")
        return cls(
            node_id=data["node_id"],
            effect=Effect.from_dict(effect) if effect else None,
            next_node=data.get("next_node"),
            complete_output=data.get("complete_output"),
        )


@dataclass
class WaitState(_IsoTimes):
    """Why and on what a run waits, and where it continues once resumed.

    ``timeout_at``: when the wait gives up (``ask_user``, ``wait_event`` and a sync
    ``start_subworkflow`` with ``timeout_s`` / ``timeout_at``): the run then goes on at
    ``timeout_node`` (None: ``resume_to_node``) with ``{"timed_out": True, ...}`` at
    ``result_key``; ``waiting_since`` is when the timed wait began. The three are in ``to_dict``
    only when set, so the states and ledger records of waits without a timeout keep their bytes.
    """

    _TIMES = frozenset({"until", "timeout_at", "waiting_since"})

    reason: WaitReason
    wait_key: str | None = None
    until: datetime | None = None
    resume_to_node: str | None = None
    result_key: str | None = None
    prompt: str | None = None
    choices: list[str] | None = None
    allow_free_text: bool = True
    details: dict[str, Any] | None = None
    timeout_at: datetime | None = None
    timeout_node: str | None = None
    waiting_since: datetime | None = None

    def __post_init__(self) -> None:
        self.reason = WaitReason(self.reason)
        self.until = _opt_time(self.until)
        self.timeout_at = _opt_time(self.timeout_at)
        self.waiting_since = _opt_time(self.waiting_since)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "reason": self.reason.value,
            "wait_key": self.wait_key,
            "until": _opt_iso(self.until),
            "resume_to_node": self.resume_to_node,
            "result_key": self.result_key,
            "prompt": self.prompt,
            "choices": self.choices,
            "allow_free_text": self.allow_free_text,
            "details": self.details,
        }
        if self.timeout_at is not None:
            data["timeout_at"] = iso(self.timeout_at)
        if self.timeout_node is not None:
            data["timeout_node"] = self.timeout_node
        if self.waiting_since is not None:
            data["waiting_since"] = iso(self.waiting_since)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WaitState:
        return cls(
            reason=WaitReason(data["reason"]),
            wait_key=data.get("wait_key"),
            until=data.get("until"),
            resume_to_node=data.get("resume_to_node"),
            result_key=data.get("result_key"),
            prompt=data.get("prompt"),
            choices=data.get("choices"),
            allow_free_text=data.get("allow_free_text", True),
            details=data.get("details"),
            timeout_at=data.get("timeout_at"),
            timeout_node=data.get("timeout_node"),
            waiting_since=data.get("waiting_since"),
        )


def _trace_context(value: Any) -> dict[str, str] | None:
    """A stored trace context, or None for anything that is not a dict of strings (a state
    edited by hand must not break telemetry)."""
    if not isinstance(value, Mapping):
        return None
    return {str(k): v for k, v in value.items() if isinstance(v, str)} or None


@dataclass
class RunState(_IsoTimes):
    """The durable state of one run: where it is, its variables, and why it waits."""

    _TIMES = frozenset({"created_at", "updated_at"})

    run_id: str
    workflow_id: str
    status: RunStatus
    current_node: str | None
    vars: dict[str, Any] = field(default_factory=dict)
    waiting: WaitState | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    actor_id: str | None = None
    session_id: str | None = None
    parent_run_id: str | None = None
    #: The version of its workflow the run started on (``WorkflowSpec.version``): only that
    #: version's code drives it, until ``Runtime.migrate_runs`` moves it.
    workflow_version: str = DEFAULT_WORKFLOW_VERSION
    #: The W3C trace context (``traceparent``, ``tracestate``) of the code that started the
    #: run, when telemetry was on (``core/telemetry.py``): every later step continues its trace.
    trace_context: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)
        self.created_at = to_utc(self.created_at)
        self.updated_at = to_utc(self.updated_at)

    @classmethod
    def new(
        cls,
        *,
        workflow_id: str,
        entry_node: str,
        actor_id: str | None = None,
        session_id: str | None = None,
        vars: dict[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> RunState:
        """A ``running`` run at ``entry_node`` with a new id (``Runtime.start`` also fills
        ``vars["_limits"]``; this does not)."""
        return cls(
            run_id=uuid.uuid4().hex,
            workflow_id=workflow_id,
            status=RunStatus.RUNNING,
            current_node=entry_node,
            vars=vars or {},
            actor_id=actor_id,
            session_id=session_id,
            parent_run_id=parent_run_id,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "status": self.status.value,
            "current_node": self.current_node,
            "vars": self.vars,
            "waiting": self.waiting.to_dict() if self.waiting else None,
            "output": self.output,
            "error": self.error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "actor_id": self.actor_id,
            "session_id": self.session_id,
            "parent_run_id": self.parent_run_id,
        }
        # Only when not the default, so the states of unversioned workflows keep their bytes
        # (and the original's format).
        if self.workflow_version != DEFAULT_WORKFLOW_VERSION:
            data["workflow_version"] = self.workflow_version
        if self.trace_context is not None:  # likewise: states without telemetry keep their bytes
            data["trace_context"] = self.trace_context
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunState:
        waiting = data.get("waiting")
        return cls(
            run_id=data["run_id"],
            workflow_id=data["workflow_id"],
            status=RunStatus(data["status"]),
            current_node=data.get("current_node"),
            vars=dict(data.get("vars") or {}),
            waiting=WaitState.from_dict(waiting) if waiting else None,
            output=data.get("output"),
            error=data.get("error"),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            actor_id=data.get("actor_id"),
            session_id=data.get("session_id"),
            parent_run_id=data.get("parent_run_id"),
            workflow_version=data.get("workflow_version") or DEFAULT_WORKFLOW_VERSION,
            trace_context=_trace_context(data.get("trace_context")),
        )


@dataclass
class StepRecord(_IsoTimes):
    """One append-only ledger entry. ``prev_hash``/``record_hash`` chain the run's records."""

    _TIMES = frozenset({"started_at", "ended_at"})

    run_id: str
    step_id: str
    node_id: str
    status: StepStatus
    effect: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    started_at: datetime = field(default_factory=utc_now)
    ended_at: datetime | None = None
    actor_id: str | None = None
    session_id: str | None = None
    attempt: int = 1
    idempotency_key: str | None = None
    prev_hash: str | None = None
    record_hash: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        self.status = StepStatus(self.status)
        self.started_at = to_utc(self.started_at)
        self.ended_at = _opt_time(self.ended_at)

    @classmethod
    def start(
        cls,
        *,
        run: RunState,
        node_id: str,
        effect: Effect | None,
        attempt: int = 1,
        idempotency_key: str | None = None,
    ) -> StepRecord:
        """A ``started`` record of a step of ``run`` at ``node_id`` (finish it with a
        ``finish_*`` method)."""
        return cls(
            run_id=run.run_id,
            step_id=uuid.uuid4().hex,
            node_id=node_id,
            status=StepStatus.STARTED,
            effect=effect.to_dict() if effect else None,
            actor_id=run.actor_id,
            session_id=run.session_id,
            attempt=attempt,
            idempotency_key=idempotency_key,
        )

    def finish_success(self, result: dict[str, Any] | None = None) -> StepRecord:
        """Mark it ``completed`` with ``result``; returns itself."""
        self.status, self.result, self.ended_at = StepStatus.COMPLETED, result, utc_now()
        return self

    def finish_waiting(self, wait_state: WaitState) -> StepRecord:
        """Mark it ``waiting``, its result holding the wait (``{"wait": {...}}``)."""
        self.status, self.ended_at = StepStatus.WAITING, utc_now()
        self.result = {"wait": wait_state.to_dict()}
        return self

    def finish_failure(self, error: str) -> StepRecord:
        """Mark it ``failed`` with ``error``; returns itself."""
        self.status, self.error, self.ended_at = StepStatus.FAILED, error, utc_now()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "node_id": self.node_id,
            "status": self.status.value,
            "effect": self.effect,
            "result": self.result,
            "error": self.error,
            "started_at": iso(self.started_at),
            "ended_at": _opt_iso(self.ended_at),
            "actor_id": self.actor_id,
            "session_id": self.session_id,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
            "prev_hash": self.prev_hash,
            "record_hash": self.record_hash,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        fields: dict[str, Any] = {name: data[name] for name in _STEP_RECORD_FIELDS if name in data}
        return cls(**fields)


_STEP_RECORD_FIELDS = tuple(StepRecord.__dataclass_fields__)


@dataclass
class LimitWarning:
    """A run's resource limit at its warning threshold (``status="warning"``) or over it
    (``"exceeded"``), from ``Runtime.check_limits``.

    ``limit_type`` is ``"iterations"`` or ``"tokens"``; ``pct`` is computed from ``current``
    and ``maximum``.
    """

    limit_type: str
    status: str
    current: int
    maximum: int
    pct: float = 0.0

    def __post_init__(self) -> None:
        if self.maximum > 0:
            self.pct = round(self.current / self.maximum * 100, 1)
