"""Log records as JSON lines (``abstractruntime worker --log-format json``).

The runtime logs through ``logging`` under ``abstractruntime.*``, with the run's id, node and
ledger position as ``extra`` fields where a record concerns a run; this formatter prints each
record as one JSON object with those fields, and the current trace and span ids when
OpenTelemetry is loaded and a span is current. It imports no OpenTelemetry module itself.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

#: Attributes every ``LogRecord`` has: anything else on a record came in through ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def _trace_ids() -> dict[str, str]:
    """The current trace and span ids, when OpenTelemetry is loaded and a span is current."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the record's
    ``extra`` fields, ``trace_id`` / ``span_id`` when a span is current, and ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        data.update(_trace_ids())
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)
