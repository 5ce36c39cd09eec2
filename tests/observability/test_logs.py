"""Logs as JSON lines, and the package without OpenTelemetry loaded."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from abstractruntime.observability import JsonFormatter
from tests.observability.conftest import Otel


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "abstractruntime.step", logging.WARNING, "f", 1, "run %s", ("r1",), None
    )
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_object_with_its_extra_fields() -> None:
    line = JsonFormatter().format(_record(run_id="r1", node_id="ask", ledger_seq=3))
    data = json.loads(line)
    assert data["message"] == "run r1" and data["level"] == "WARNING"
    assert data["logger"] == "abstractruntime.step"
    assert (data["run_id"], data["node_id"], data["ledger_seq"]) == ("r1", "ask", 3)
    assert "trace_id" not in data  # no span is current
    assert "\n" not in line


def test_inside_a_span_the_line_has_its_trace_and_span_ids(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("work") as span:
        data = json.loads(JsonFormatter().format(_record()))
    context = span.get_span_context()
    assert data["trace_id"] == f"{context.trace_id:032x}"
    assert data["span_id"] == f"{context.span_id:016x}"


def test_an_exception_is_kept_in_the_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad" in data["exception"]


@pytest.mark.parametrize(
    "modules",
    [
        "abstractruntime",
        "abstractruntime, abstractruntime.scheduler, abstractruntime.cli.worker",
        "abstractruntime.integrations.abstractcore, abstractruntime.observability",
    ],
)
def test_importing_the_package_loads_no_opentelemetry(modules: str) -> None:
    code = (
        f"import sys, {modules}\nprint([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_instrument_loads_it() -> None:
    """The check above can fail: instrument() does load OpenTelemetry."""
    code = (
        "import sys\nfrom abstractruntime.observability import instrument, uninstrument\n"
        "instrument(); uninstrument()\nprint('opentelemetry.trace' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_without_the_extra_instrument_says_what_to_install() -> None:
    code = (
        "import sys\nsys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
        "from abstractruntime.errors import InvalidArgumentError\n"
        "from abstractruntime.observability import instrument\n"
        "try:\n    instrument()\nexcept InvalidArgumentError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'abstractruntime[otel]'" in out.stdout


def test_an_exporter_the_worker_cannot_make_is_refused_with_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from abstractruntime.core import telemetry
    from abstractruntime.errors import InvalidArgumentError
    from abstractruntime.observability import configure_sdk

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(InvalidArgumentError, match="otlp, console, none"):
        configure_sdk()
    assert isinstance(telemetry.current(), telemetry.NoTelemetry)  # nothing was installed
