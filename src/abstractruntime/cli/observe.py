"""The worker's logging and telemetry options: ``--log-format json`` and ``--otel``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from ..core import telemetry
from ..observability import JsonFormatter, LogTelemetry, configure_sdk
from .base import Parser

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_arguments(parser: Parser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line, with the run id, node id and, with --otel, the "
        "trace and span ids",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="send traces and metrics to OpenTelemetry, configured by the OTEL_* variables "
        "(needs pip install 'abstractruntime[otel]'; see docs/observability.md)",
    )


def setup(args: argparse.Namespace) -> Callable[[], None]:
    """Configure logging (and OpenTelemetry with ``--otel``); returns what to call at exit."""
    handler = logging.StreamHandler()
    json_lines = getattr(args, "log_format", "text") == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if getattr(args, "otel", False):
        return configure_sdk("abstractruntime-worker")
    if getattr(args, "verbose", False):  # -v: a line per committed step, without OpenTelemetry
        previous = telemetry.install(LogTelemetry())

        def restore() -> None:
            telemetry.install(previous)

        return restore
    return lambda: None
