"""Fixtures of the telemetry tests: OpenTelemetry's SDK with its in-memory span exporter and
metric reader, installed through ``instrument()`` for one test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from abstractruntime.observability import instrument, uninstrument


@dataclass
class Otel:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer: Tracer
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def steps(self, run_id: str) -> list[ReadableSpan]:
        """The run's step spans in ledger order."""
        found = [
            s
            for s in self.spans("abstractruntime.step")
            if (s.attributes or {}).get("abstractruntime.run_id") == run_id
        ]
        return sorted(found, key=lambda s: (s.attributes or {})["abstractruntime.ledger_seq"])

    def metric(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of every point of metric ``name``."""
        data = self.reader.get_metrics_data()
        points: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            if value is None:
                                value = point.count  # a histogram: how many were recorded
                            points.append((dict(point.attributes or {}), value))
        return points

    def total(self, name: str, **where: Any) -> Any:
        return sum(
            value
            for attributes, value in self.metric(name)
            if all(attributes.get(k) == v for k, v in where.items())
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrument(tracer_provider, meter_provider)
    try:
        yield Otel(
            exporter,
            reader,
            tracer_provider.get_tracer("tests"),
            tracer_provider,
            meter_provider,
        )
    finally:
        uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def hex_trace(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}"
