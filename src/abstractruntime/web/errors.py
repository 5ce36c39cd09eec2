"""The one place where the project's exceptions become HTTP statuses.

Every route raises; :func:`error_response` turns what it raised into ``{"error": {"type",
"message"}}`` with the status of its class. A user's mistake is a 4xx naming the problem; an
exception not listed here is a bug: a 500 whose body says so without details (they go to the
log, database URL masked by the store's own messages).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    AbstractRuntimeError,
    ConcurrentUpdateError,
    InvalidArgumentError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    RunNotWaitingError,
    SerializationError,
    SizeLimitError,
    SnapshotNotFoundError,
    StoreError,
    WaitKeyMismatchError,
    WorkflowNotFoundError,
)

log = logging.getLogger("abstractruntime.web")


class HttpError(AbstractRuntimeError):
    """A problem the web layer finds itself (an unknown workflow, a malformed body...)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def not_found(what: str) -> HttpError:
    return HttpError(404, "NotFound", what)


def unprocessable(message: str) -> HttpError:
    return HttpError(422, "InvalidArgumentError", message)


def unauthorized(message: str) -> HttpError:
    return HttpError(401, "Unauthorized", message)


#: Most specific first: the first class an exception is an instance of gives its status.
STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (RunNotFoundError, 404),
    (SnapshotNotFoundError, 404),
    (SizeLimitError, 413),
    (RunNotWaitingError, 409),  # RunFinishedError too
    (WaitKeyMismatchError, 409),
    (RunLeasedError, 409),
    (ConcurrentUpdateError, 409),
    (RunExistsError, 409),
    # This server does not serve the run's workflow, or not its version.
    (WorkflowNotFoundError, 409),
    (SerializationError, 422),
    (InvalidArgumentError, 422),
    (StoreError, 503),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status of ``exc`` (500: a bug)."""
    if isinstance(exc, HttpError):
        return exc.status
    for cls, status in STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for ``exc``; a 500 is logged with its traceback."""
    status = status_of(exc)
    if status == 500:
        log.error("bug while serving a request", exc_info=exc)
        return status, {
            "error": {"type": "InternalError", "message": "internal error (see the server's log)"}
        }
    kind = exc.kind if isinstance(exc, HttpError) else type(exc).__name__
    return status, {"error": {"type": kind, "message": str(exc)}}
