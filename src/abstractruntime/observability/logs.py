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
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ..core.models import RunState, StepRecord, StepStatus
from ..core.ports import RunHandle
from ..core.telemetry import NoTelemetry

step_log = logging.getLogger("abstractruntime.step")

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


def log_records(state: RunState, records: Sequence[StepRecord], seq: int) -> None:
    """Log each committed record under ``abstractruntime.step`` (DEBUG; a failure WARNING),
    with the run id, node id and ledger position as ``extra`` fields."""
    for offset, record in enumerate(records):
        level = logging.WARNING if record.status is StepStatus.FAILED else logging.DEBUG
        if step_log.isEnabledFor(level):
            step_log.log(
                level,
                "run %s step %d at node %s: %s%s",
                state.run_id,
                seq + offset,
                record.node_id,
                record.status.value,
                f" ({record.error})" if record.error else "",
                extra={
                    "run_id": state.run_id,
                    "node_id": record.node_id,
                    "workflow_id": state.workflow_id,
                    "ledger_seq": seq + offset,
                    "status": record.status.value,
                },
            )


class LogScope:
    """A commit while no span or metric is recorded: only its log lines, once it is in."""

    __slots__ = ("handle", "records", "state")

    def __init__(
        self,
        handle: RunHandle,
        state: RunState,
        pending: Sequence[StepRecord],
        records: Sequence[StepRecord],
    ) -> None:
        self.handle, self.state = handle, state
        self.records = [*pending, *records] if pending else records

    def __enter__(self) -> LogScope:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            log_records(self.state, self.records, self.handle.seq)


class LogTelemetry(NoTelemetry):
    """Telemetry that only logs: each committed ledger record as a line of
    ``abstractruntime.step`` (``log_records``). ``abstractruntime worker -v`` installs it when
    OpenTelemetry is not on (``instrument()`` logs the same lines)."""

    __slots__ = ()

    def commit(
        self,
        store: object,
        handle: RunHandle,
        state: RunState,
        pending: Sequence[StepRecord],
        records: Sequence[StepRecord],
    ) -> Any:
        if step_log.isEnabledFor(logging.DEBUG) or any(
            record.status is StepStatus.FAILED for record in records
        ):
            return LogScope(handle, state, pending, records)
        return super().commit(store, handle, state, pending, records)
