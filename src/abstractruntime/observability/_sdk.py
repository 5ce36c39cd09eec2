"""Setting OpenTelemetry's SDK up from the standard ``OTEL_*`` variables (``worker --otel``)."""

from __future__ import annotations

import os
from collections.abc import Callable

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from ..core import telemetry
from ..errors import InvalidArgumentError
from . import instrument
from .export import JsonLinesSpanExporter

SPANS_FILE = "ABSTRACTRUNTIME_OTEL_SPANS_FILE"
_CHOICES = ("otlp", "console", "none")


def _choice(variable: str) -> str:
    value = (os.environ.get(variable) or "otlp").strip().lower()
    if value not in _CHOICES:
        raise InvalidArgumentError(
            f"{variable}={value!r} is not supported here: use one of {', '.join(_CHOICES)}"
        )
    return value


def _span_exporter(kind: str) -> SpanExporter | None:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return ConsoleSpanExporter() if kind == "console" else None


def _metric_reader(kind: str) -> MetricReader | None:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return PeriodicExportingMetricReader(OTLPMetricExporter())
    if kind == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    return None


def configure(service_name: str) -> Callable[[], None]:
    traces, metric_kind = _choice("OTEL_TRACES_EXPORTER"), _choice("OTEL_METRICS_EXPORTER")
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    resource = Resource.create(attributes)  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
    tracer_provider = TracerProvider(resource=resource)
    exporter = _span_exporter(traces)
    if exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    if os.environ.get(SPANS_FILE):
        file_exporter = JsonLinesSpanExporter(os.environ[SPANS_FILE])
        tracer_provider.add_span_processor(BatchSpanProcessor(file_exporter))
    reader = _metric_reader(metric_kind)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader] if reader else [])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    instrument(tracer_provider, meter_provider)

    def shutdown() -> None:
        telemetry.install(None)
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return shutdown
