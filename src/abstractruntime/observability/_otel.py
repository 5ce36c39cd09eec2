"""The OpenTelemetry implementation of the runtime's telemetry hooks (``core/telemetry.py``).

Spans, one trace per run:

- ``abstractruntime.start`` when a run is created: a child of the caller's span, if any. Its
  context is stored with the run (``RunState.trace_context``), so every later step of the run
  (after a wait of days, in another process) is a child of it: one trace per run. A child run is
  created inside its parent's effect span, so it continues its parent's trace.
- ``abstractruntime.step`` per ledger record (each committed step, pure transitions included),
  with the run id, workflow id, node id, effect type, attempt, status and ledger position; it
  links to the span that was current when the step ran if that one is in another trace (the
  HTTP request that resumed the run, the scheduler's poll that claimed it).
- ``abstractruntime.effect <type>`` around the effect, the current span while it runs (so the
  LLM client's ``traceparent`` and the tools' context are the step's), and
  ``abstractruntime.commit`` around the commit, with ``db.system.name``.

Metrics (see ``docs/observability.md`` for the names and attributes): steps and runs by
outcome, step and commit durations, runs waiting by reason, lease takeovers, retries scheduled,
the scheduler's poll duration and claimed runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from ..core.machine import retry_of
from ..core.models import Effect, RunState, RunStatus, StepRecord, StepStatus
from ..core.ports import RunHandle
from ..core.serde import decode
from ..core.telemetry import HeldStep
from ..errors import ConcurrentUpdateError
from .logs import LogScope, log_records, step_log

NAME = "abstractruntime"
RUN_ID = "abstractruntime.run_id"
WORKFLOW_ID = "abstractruntime.workflow_id"
NODE_ID = "abstractruntime.node_id"
EFFECT_TYPE = "abstractruntime.effect_type"
ATTEMPT = "abstractruntime.attempt"
STATUS = "abstractruntime.status"
LEDGER_SEQ = "abstractruntime.ledger_seq"
PARENT_RUN_ID = "abstractruntime.parent_run_id"

#: How often the hooks look again whether an SDK was set up (see ``OpenTelemetry.tracing``).
RECHECK_S = 1.0

#: The step being run in this task, so a commit inside it describes that step's span.
_STEP: contextvars.ContextVar[_StepScope | None] = contextvars.ContextVar(
    "abstractruntime_step", default=None
)


def _effect_type(record: StepRecord) -> str:
    effect = record.effect
    kind = effect.get("type") if isinstance(effect, Mapping) else None
    return str(kind) if kind else "none"


def _db_system(store: object) -> str | None:
    """``db.system.name`` of OTel's semantic conventions for a store, when it has one."""
    dialect = getattr(store, "dialect", None)
    return dialect if dialect in ("postgresql", "sqlite") else None


def _was_waiting(state_json: str) -> str | None:
    """The wait reason of a committed state, None when it did not wait. Decoded only when the
    text says so (the stores keep the canonical JSON, which has no spaces; a store of the
    user's own may add them)."""
    if '"status":"waiting"' not in state_json and '"status": "waiting"' not in state_json:
        return None
    data = decode(state_json)
    waiting = data.get("waiting") if data.get("status") == "waiting" else None
    return str(waiting.get("reason")) if isinstance(waiting, Mapping) else None


class OpenTelemetry:
    """The runtime's hooks (``core.telemetry.Telemetry``) over OpenTelemetry's API.

    Args:
        tracer_provider: where spans go (default: the global one, which is the API's no-op
            until an SDK is configured).
        meter_provider: where metrics go (default: the global one).
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracing = self._metering = False
        self._checked_until = float("-inf")
        self.tracer = trace.get_tracer(NAME, tracer_provider=tracer_provider)
        meter = metrics.get_meter(NAME, meter_provider=meter_provider)
        self.steps = meter.create_counter(
            "abstractruntime.steps", unit="{step}", description="Steps committed, by status"
        )
        self.runs = meter.create_counter(
            "abstractruntime.runs",
            unit="{run}",
            description="Runs started, and runs ended by outcome (completed, failed, cancelled)",
        )
        self.step_duration = meter.create_histogram(
            "abstractruntime.step.duration", unit="s", description="Time of a step, commit included"
        )
        self.commit_duration = meter.create_histogram(
            "abstractruntime.commit.duration", unit="s", description="Time of a commit"
        )
        self.waiting = meter.create_up_down_counter(
            "abstractruntime.runs.waiting",
            unit="{run}",
            description="Runs that started waiting minus runs that stopped, by reason",
        )
        self.takeovers = meter.create_counter(
            "abstractruntime.lease.takeovers",
            unit="{run}",
            description="Commits refused because another worker (or an operator) took the run",
        )
        self.retries = meter.create_counter(
            "abstractruntime.retries.scheduled",
            unit="{retry}",
            description="Failed effect attempts parked for another attempt",
        )
        self.poll_duration = meter.create_histogram(
            "abstractruntime.scheduler.poll.duration",
            unit="s",
            description="Time of a scheduler's claim of due runs",
        )
        self.claimed = meter.create_counter(
            "abstractruntime.scheduler.claimed",
            unit="{run}",
            description="Runs claimed by schedulers' polls",
        )

    # -- whether anything listens ---------------------------------------------------------------

    def tracing(self) -> bool:
        """Whether spans go anywhere: not while the provider is the API's no-op, or the global
        proxy before an SDK is set. Looked up at most every ``RECHECK_S`` (asking the API costs
        microseconds, a step's whole budget), so an SDK set after ``instrument()`` is used
        within that time."""
        if time.monotonic() >= self._checked_until:
            self._recheck()
        return self._tracing

    def metering(self) -> bool:
        """Whether metrics go anywhere (as ``tracing``)."""
        if time.monotonic() >= self._checked_until:
            self._recheck()
        return self._metering

    def _recheck(self) -> None:
        tracer_provider = self._tracer_provider or trace.get_tracer_provider()
        meter_provider = self._meter_provider or metrics.get_meter_provider()
        self._tracing = not isinstance(tracer_provider, _IDLE_TRACER_PROVIDERS)
        self._metering = type(meter_provider).__name__ not in _IDLE_METER_PROVIDERS
        self._checked_until = time.monotonic() + RECHECK_S

    # -- trace contexts -------------------------------------------------------------------------

    @staticmethod
    def carrier(ctx: otel_context.Context) -> dict[str, str] | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=ctx)
        return carrier or None

    def parent_of(self, state: RunState) -> tuple[otel_context.Context | None, list[Link]]:
        """The context a step of ``state``'s run is a child of (the run's stored one), and a
        link to the span current now when it belongs to another trace."""
        current = trace.get_current_span().get_span_context()
        stored = state.trace_context
        if not stored:
            return None, []
        parent = propagate.extract(stored)
        run_trace = trace.get_current_span(parent).get_span_context()
        if current.is_valid and current.trace_id != run_trace.trace_id:
            return parent, [Link(current)]
        return parent, []

    # -- the hooks -------------------------------------------------------------------------------

    def run_created(self, state: RunState) -> dict[str, str] | None:
        if self.metering():
            self.runs.add(1, {"outcome": "started", WORKFLOW_ID: state.workflow_id})
        if not self.tracing():
            return None
        attributes: dict[str, str] = {RUN_ID: state.run_id, WORKFLOW_ID: state.workflow_id}
        if state.parent_run_id:
            attributes[PARENT_RUN_ID] = state.parent_run_id
        span = self.tracer.start_span(
            "abstractruntime.start", kind=SpanKind.INTERNAL, attributes=attributes
        )
        span.end()
        return self.carrier(trace.set_span_in_context(span))

    def step(self, held: HeldStep) -> _StepScope | _Idle:
        if time.monotonic() >= self._checked_until:
            self._recheck()
        if not (self._tracing or self._metering):
            return _IDLE
        return _StepScope(self, held, self._tracing, self._metering)

    def effect(self, state: RunState, effect: Effect, attempt: int) -> Any:
        if not self.tracing():
            return _IDLE
        kind = effect.type.value
        return self.tracer.start_as_current_span(
            f"abstractruntime.effect {kind}",
            attributes={RUN_ID: state.run_id, EFFECT_TYPE: kind, ATTEMPT: attempt},
        )

    def commit(
        self,
        store: object,
        handle: RunHandle,
        state: RunState,
        pending: Sequence[StepRecord],
        records: Sequence[StepRecord],
    ) -> _CommitScope | LogScope | _Idle:
        if time.monotonic() >= self._checked_until:
            self._recheck()
        tracing, metering = self._tracing, self._metering
        if tracing or metering:
            return _CommitScope(self, store, handle, state, pending, records, tracing, metering)
        if step_log.isEnabledFor(logging.DEBUG) or any(
            record.status is StepStatus.FAILED for record in records
        ):  # (a held pure transition never failed)
            return LogScope(handle, state, pending, records)
        return _IDLE

    def poll(self) -> _PollScope | _Idle:
        tracing, metering = self.tracing(), self.metering()
        return _PollScope(self, tracing, metering) if tracing or metering else _IDLE

    def inject(self, headers: MutableMapping[str, str]) -> None:
        if self.tracing():
            propagate.inject(headers)

    def extract(self, headers: Mapping[str, str]) -> AbstractContextManager[Any]:
        if not self.tracing() or "traceparent" not in headers:
            return _IDLE
        return _attached(propagate.extract(dict(headers)))

    # -- shared by the scopes --------------------------------------------------------------------

    def describe(self, span: Span, record: StepRecord, seq: int) -> None:
        """Give a step's span what its ledger record says."""
        span.set_attributes(
            {
                NODE_ID: record.node_id,
                EFFECT_TYPE: _effect_type(record),
                ATTEMPT: record.attempt,
                STATUS: record.status.value,
                LEDGER_SEQ: seq,
            }
        )
        if record.status is StepStatus.FAILED:
            error = record.error or "the step failed"
            span.add_event("exception", {"exception.message": error})
            span.set_status(Status(StatusCode.ERROR, error))

    def committed(
        self, handle: RunHandle, state: RunState, records: Sequence[StepRecord], seq: int
    ) -> None:
        """Count what a successful commit changed."""
        workflow_id = state.workflow_id
        for record in records:
            self.steps.add(
                1,
                {
                    STATUS: record.status.value,
                    WORKFLOW_ID: workflow_id,
                    EFFECT_TYPE: _effect_type(record),
                },
            )
        if not records:
            return
        before = _was_waiting(handle.state_json)
        if before is not None:
            self.waiting.add(-1, {"reason": before})
        if state.status is RunStatus.WAITING and state.waiting is not None:
            self.waiting.add(1, {"reason": state.waiting.reason.value})
            if retry_of(state.waiting) is not None:
                self.retries.add(1, {WORKFLOW_ID: workflow_id})
        elif state.status.is_terminal:
            self.runs.add(1, {"outcome": state.status.value, WORKFLOW_ID: workflow_id})


@contextlib.contextmanager
def _attached(ctx: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


class _Idle:
    """What the hooks return while nothing listens: one shared scope that does nothing."""

    __slots__ = ()

    def __enter__(self) -> _Idle:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def claimed(self, count: int) -> None:
        return None


_IDLE = _Idle()
_IDLE_TRACER_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_IDLE_METER_PROVIDERS = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})


class _StepScope:
    """The span of one step the driver runs (``Runtime._step``)."""

    __slots__ = (
        "_token",
        "_var",
        "held",
        "metering",
        "otel",
        "pending",
        "recorded",
        "run_id",
        "span",
        "t0",
        "tracing",
    )

    def __init__(self, otel: OpenTelemetry, held: HeldStep, tracing: bool, metering: bool) -> None:
        self.otel = otel
        self.tracing, self.metering = tracing, metering
        self.held = held
        self.run_id = held.state.run_id
        self.recorded = False

    def __enter__(self) -> _StepScope:
        if not self.tracing:
            self.t0 = time.perf_counter()
            return self
        otel, state = self.otel, self.held.state
        parent, links = otel.parent_of(state)
        self.span = otel.tracer.start_span(
            "abstractruntime.step",
            context=parent,
            links=links,
            attributes={
                RUN_ID: state.run_id,
                WORKFLOW_ID: state.workflow_id,
                NODE_ID: state.current_node or "",
            },
        )
        ctx = trace.set_span_in_context(self.span)
        if state.trace_context is None:  # a run started without telemetry joins this trace
            state.trace_context = otel.carrier(ctx)
        self._token = otel_context.attach(ctx)
        self._var = _STEP.set(self)
        self.pending = len(self.held.pending)
        self.t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.tracing:
            if self.metering:
                self.otel.step_duration.record(
                    time.perf_counter() - self.t0, {WORKFLOW_ID: self.held.state.workflow_id}
                )
            return
        span, held = self.span, self.held
        try:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            elif not self.recorded and len(held.pending) > self.pending:
                # A pure transition, held: committed with the next step at this position.
                seq = held.handle.seq + len(held.pending) - 1
                self.otel.describe(span, held.pending[-1], seq)
            if self.metering:
                self.otel.step_duration.record(
                    time.perf_counter() - self.t0, {WORKFLOW_ID: held.state.workflow_id}
                )
        finally:
            _STEP.reset(self._var)
            otel_context.detach(self._token)
            span.end()


class _CommitScope:
    """The span of one commit; outside a step (a resume, a timeout, an operator's cancel) it
    makes the step spans of its records itself."""

    __slots__ = (
        "_token",
        "handle",
        "metering",
        "otel",
        "own",
        "pending",
        "records",
        "span",
        "state",
        "steps",
        "store",
        "system",
        "t0",
        "tracing",
    )

    def __init__(
        self,
        otel: OpenTelemetry,
        store: object,
        handle: RunHandle,
        state: RunState,
        pending: Sequence[StepRecord],
        records: Sequence[StepRecord],
        tracing: bool,
        metering: bool,
    ) -> None:
        self.otel = otel
        self.tracing, self.metering = tracing, metering
        self.store = store
        self.handle = handle
        self.state = state
        self.pending = list(pending)  # the driver empties its list after the commit
        self.records = list(records)
        self._token: Any = None
        self.steps: list[Span] = []

    def __enter__(self) -> _CommitScope:
        otel, state = self.otel, self.state
        scope = _STEP.get()
        self.own = scope if scope is not None and scope.run_id == state.run_id else None
        self.system = _db_system(self.store)
        self.t0 = time.perf_counter()
        if not self.tracing:
            return self
        if self.own is None and self.records:
            parent, links = otel.parent_of(state)
            self.steps = [
                otel.tracer.start_span(
                    "abstractruntime.step",
                    context=parent,
                    links=links,
                    attributes={RUN_ID: state.run_id, WORKFLOW_ID: state.workflow_id},
                )
                for _ in self.records
            ]
            ctx = trace.set_span_in_context(self.steps[-1])
            if state.trace_context is None:  # a run started without telemetry joins this trace
                state.trace_context = otel.carrier(ctx)  # (stored with its next commit)
            self._token = otel_context.attach(ctx)
        attributes: dict[str, Any] = {RUN_ID: state.run_id, "db.operation.name": "commit_step"}
        if self.system is not None:
            attributes["db.system.name"] = self.system
            attributes["db.system"] = self.system  # the name before semantic conventions 1.26
        self.span = otel.tracer.start_span("abstractruntime.commit", attributes=attributes)
        self.t0 = time.perf_counter()
        return self

    def _untraced(self, exc: BaseException | None) -> None:
        """The commit's metrics and log lines, with no span to describe."""
        otel = self.otel
        metric = {"db.system.name": self.system} if self.system else {}
        otel.commit_duration.record(time.perf_counter() - self.t0, metric)
        if exc is not None:
            if isinstance(exc, ConcurrentUpdateError):
                otel.takeovers.add(1, {WORKFLOW_ID: self.state.workflow_id})
            return
        committed = [*self.pending, *self.records]
        otel.committed(self.handle, self.state, committed, self.handle.seq)
        log_records(self.state, committed, self.handle.seq)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.tracing:
            self._untraced(exc)
            return
        otel, span = self.otel, self.span
        try:
            duration = time.perf_counter() - self.t0
            metric = {"db.system.name": self.system} if self.system else {}
            if self.metering:
                otel.commit_duration.record(duration, metric)
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                if self.metering and isinstance(exc, ConcurrentUpdateError):
                    otel.takeovers.add(1, {WORKFLOW_ID: self.state.workflow_id})
                for step in self.steps:
                    step.set_status(Status(StatusCode.ERROR, f"the commit failed: {exc}"))
                return
            seq = self.handle.seq
            committed = [*self.pending, *self.records]
            last = seq + len(committed) - 1
            if self.own is not None and self.records:
                otel.describe(self.own.span, self.records[-1], last)
                self.own.recorded = True
            first = last - len(self.records) + 1
            for offset, (step, record) in enumerate(zip(self.steps, self.records, strict=False)):
                otel.describe(step, record, first + offset)
            if self.metering:
                otel.committed(self.handle, self.state, committed, seq)
                for _ in self.steps:
                    otel.step_duration.record(duration, {WORKFLOW_ID: self.state.workflow_id})
            log_records(self.state, committed, seq)
        finally:
            span.end()
            if self._token is not None:
                otel_context.detach(self._token)
            for step in self.steps:
                step.end()


class _PollScope:
    """A scheduler's poll: its duration and claims as metrics; a span only when it claimed
    runs (an idle worker polls every second), current while their tasks start."""

    __slots__ = ("_token", "metering", "otel", "span", "t0", "t0_ns", "tracing")

    def __init__(self, otel: OpenTelemetry, tracing: bool, metering: bool) -> None:
        self.otel = otel
        self.tracing, self.metering = tracing, metering
        self.span: Span | None = None
        self._token: Any = None

    def __enter__(self) -> _PollScope:
        self.t0 = time.perf_counter()
        self.t0_ns = time.time_ns()
        return self

    def claimed(self, count: int) -> None:
        if self.metering:
            self.otel.claimed.add(count)
        if count and self.tracing and self.span is None:
            self.span = self.otel.tracer.start_span(
                "abstractruntime.scheduler.poll",
                start_time=self.t0_ns,
                attributes={"abstractruntime.claimed": count},
            )
            self._token = otel_context.attach(trace.set_span_in_context(self.span))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.metering:
            self.otel.poll_duration.record(time.perf_counter() - self.t0)
        if self._token is not None:
            otel_context.detach(self._token)
        if self.span is not None:
            if exc is not None:
                self.span.record_exception(exc)
                self.span.set_status(Status(StatusCode.ERROR, str(exc)))
            self.span.end()
