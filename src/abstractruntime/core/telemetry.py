"""The runtime's telemetry hooks: what the driver tells an observer, and the no-op default.

The driver (``runtime.py``) calls a handful of hooks at fixed points of a step: around the step,
around its effect, around each commit, and when a run is created; the scheduler around its poll.
``NoTelemetry`` (the default) answers every hook with one shared, empty context manager, so a
runtime without telemetry pays a method call per hook and records nothing. The OpenTelemetry
implementation lives outside the core (``abstractruntime.observability``, the ``otel`` extra)
and is installed with ``abstractruntime.observability.instrument()``: the core never imports
``opentelemetry``.

One implementation is installed per process (``install`` / ``current``): the runtimes, the
scheduler and the LLM client all read it, so turning telemetry on reaches runtimes made before.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from .models import Effect, RunState, StepRecord
from .ports import RunHandle

__all__ = [
    "HeldStep",
    "NoTelemetry",
    "PollScope",
    "Telemetry",
    "current",
    "install",
]


class HeldStep(Protocol):
    """What a step hook may read of the run the driver holds (``runtime._Held``)."""

    @property
    def state(self) -> RunState: ...

    handle: RunHandle
    #: Pure transitions run but not committed yet (committed with the next step).
    pending: list[StepRecord]


class PollScope(Protocol):
    """The scope of one poll cycle of a scheduler (a context manager)."""

    def __enter__(self) -> PollScope: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    def claimed(self, count: int) -> None:
        """The cycle claimed ``count`` runs."""
        ...


class Telemetry(Protocol):
    """What the runtime tells an observer. Every hook must be cheap and must not raise."""

    def run_created(self, state: RunState) -> dict[str, str] | None:
        """A run is about to be created (``start``, ``run``, a child run): the trace context
        to store with it (``RunState.trace_context``), or None."""
        ...

    def step(self, held: HeldStep) -> AbstractContextManager[Any]:
        """The scope of one step of ``held``'s run (its node's handler, effect and commit)."""
        ...

    def effect(self, state: RunState, effect: Effect, attempt: int) -> AbstractContextManager[Any]:
        """The scope of performing ``effect`` (an effect handler, or starting a child run)."""
        ...

    def commit(
        self,
        store: object,
        handle: RunHandle,
        state: RunState,
        pending: Sequence[StepRecord],
        records: Sequence[StepRecord],
    ) -> AbstractContextManager[Any]:
        """The scope of committing ``state`` with the held ``pending`` records and ``records``
        onto ``handle`` (the run as last committed; its ``seq`` numbers the first record) in
        ``store``."""
        ...

    def poll(self) -> PollScope:
        """The scope of one poll cycle of a scheduler."""
        ...

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add the current trace context to outgoing HTTP ``headers`` (``traceparent``)."""
        ...

    def extract(self, headers: Mapping[str, str]) -> AbstractContextManager[Any]:
        """A scope in which the trace context of incoming HTTP ``headers`` is the current one
        (the web API wraps each request in it: a run it starts continues the caller's trace,
        an answer links to it)."""
        ...


class _Nothing:
    """One shared context manager that does nothing (also a ``PollScope``)."""

    __slots__ = ()

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def claimed(self, count: int) -> None:
        return None


_NOTHING = _Nothing()


class NoTelemetry:
    """The default: records nothing, at the cost of a method call per hook."""

    __slots__ = ()

    def run_created(self, state: RunState) -> dict[str, str] | None:
        return None

    def step(self, held: HeldStep) -> _Nothing:
        return _NOTHING

    def effect(self, state: RunState, effect: Effect, attempt: int) -> _Nothing:
        return _NOTHING

    def commit(
        self,
        store: object,
        handle: RunHandle,
        state: RunState,
        pending: Sequence[StepRecord],
        records: Sequence[StepRecord],
    ) -> _Nothing:
        return _NOTHING

    def poll(self) -> _Nothing:
        return _NOTHING

    def inject(self, headers: MutableMapping[str, str]) -> None:
        return None

    def extract(self, headers: Mapping[str, str]) -> _Nothing:
        return _NOTHING


_installed: Telemetry = NoTelemetry()


def current() -> Telemetry:
    """The telemetry installed in this process (``NoTelemetry`` unless one was installed)."""
    return _installed


def install(telemetry: Telemetry | None) -> Telemetry:
    """Install ``telemetry`` for this process (None: ``NoTelemetry``); returns the previous."""
    global _installed
    previous = _installed
    _installed = telemetry if telemetry is not None else NoTelemetry()
    return previous
