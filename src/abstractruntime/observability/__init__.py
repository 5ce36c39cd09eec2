"""OpenTelemetry traces, metrics and logs for the runtime (the ``otel`` extra).

``instrument()`` installs the OpenTelemetry implementation of the runtime's telemetry hooks
(``core/telemetry.py``) for this process: every runtime, scheduler and LLM client reports to it
from then on. Importing this package imports no ``opentelemetry`` module; ``instrument``,
``continue_trace`` and ``configure_sdk`` do (``pip install abstractruntime[otel]``).
``JsonFormatter`` and ``LogTelemetry`` (log lines of every committed step, without
OpenTelemetry) need nothing: the formatter adds trace and span ids when OpenTelemetry is loaded.

See docs/observability.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..core import telemetry
from ..errors import InvalidArgumentError
from .logs import JsonFormatter, LogTelemetry

if TYPE_CHECKING:
    from ._otel import OpenTelemetry

__all__ = [
    "JsonFormatter",
    "LogTelemetry",
    "configure_sdk",
    "continue_trace",
    "instrument",
    "uninstrument",
]

_MISSING = (
    "OpenTelemetry is not installed: pip install 'abstractruntime[otel]' "
    "(opentelemetry-api, opentelemetry-sdk and the OTLP exporter)"
)


def _import_otel() -> Any:
    try:
        from . import _otel
    except ImportError as exc:  # the extra is not installed
        raise InvalidArgumentError(_MISSING) from exc
    return _otel


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> OpenTelemetry:
    """Report every runtime's steps, effects and commits, and the schedulers' polls, to
    OpenTelemetry from now on (in this process); returns the installed hooks.

    Args:
        tracer_provider: where spans go (default: the global provider; without an SDK
            configured, that is the API's no-op and nothing is recorded).
        meter_provider: where metrics go (default: the global provider).
    """
    hooks = _import_otel().OpenTelemetry(tracer_provider, meter_provider)
    telemetry.install(hooks)
    return hooks  # type: ignore[no-any-return]


def uninstrument() -> None:
    """Stop reporting to OpenTelemetry (the runtime's hooks go back to doing nothing)."""
    telemetry.install(None)


@contextlib.contextmanager
def continue_trace(headers: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context of incoming ``headers`` (``traceparent``...) the current one, so
    that a ``start`` or ``resume`` called inside continues the caller's trace (``start``) or
    links to it (``resume``)::

        with continue_trace(request.headers):
            await runtime.resume(...)
    """
    _import_otel()
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)


def configure_sdk(service_name: str = "abstractruntime") -> Callable[[], None]:
    """Set OpenTelemetry's SDK up as the global tracer and meter providers, with exporters
    chosen by the standard ``OTEL_*`` variables, and ``instrument()``; returns a function that
    flushes and shuts them down (``abstractruntime worker --otel`` calls this).

    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: ``otlp`` (default: OTLP over HTTP,
    configured by ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the other ``OTEL_EXPORTER_OTLP_*``
    variables), ``console`` or ``none``; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` name the process (default service name: ``service_name``).
    ``ABSTRACTRUNTIME_OTEL_SPANS_FILE``: also append every span to that file as JSON lines.
    """
    _import_otel()
    from ._sdk import configure

    return configure(service_name)
