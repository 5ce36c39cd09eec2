"""Idempotency keys of the calls a client may retry after a crash or a timeout
(``start``, ``resume``, ``emit_event``, ``ScheduledRuntime.respond``).

The same key returns the first call's result, across processes, and the call's effect happens
once. Each call keeps its key where its effect is committed, in the same transaction:

- ``start``: the run's id is derived from the workflow id and the key, so a second start with
  the key finds the run instead of creating one (``RunExistsError`` is turned into its id).
- ``resume`` / ``respond``: the ledger record of the answer carries ``answer:<key>`` as its
  idempotency key (the ledger's ``(run_id, idempotency_key)`` index finds it), so a retry that
  finds it returns the run's state instead of ``RunNotWaitingError``.
- ``emit_event``: a row of its own keeps the buffered event's id (made in the transaction that
  stores the event, so a retry never buffers it twice) and, once the runs are resumed, their
  ids; a retry returns the states of those runs. Rows older than ``KEY_TTL`` are deleted by
  the scheduler's housekeeping.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from ..errors import InvalidArgumentError, InvalidTypeError

#: How long a key is remembered: a client retries within minutes, not weeks.
KEY_TTL = timedelta(days=7)
#: The longest key (the ledger's idempotency column holds the prefix and the key).
MAX_KEY_LENGTH = 120
#: The prefix of an answer's key in the ledger (effects' keys are hashes: never this).
ANSWER_PREFIX = "answer:"


def check_key(key: object) -> str | None:
    """``key`` if it can be an idempotency key (None: no key), else ``InvalidArgumentError``
    (checked before any I/O)."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise InvalidTypeError(f"idempotency_key must be a string, got {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise InvalidArgumentError(
            f"idempotency_key must be 1 to {MAX_KEY_LENGTH} characters without NUL, got "
            f"{len(key)} characters"
        )
    return key


def run_id_for(workflow_id: str, key: str) -> str:
    """The run id ``start(idempotency_key=key)`` gives a run of ``workflow_id``."""
    return hashlib.sha256(f"start\x00{workflow_id}\x00{key}".encode()).hexdigest()[:32]


def answer_key(key: str) -> str:
    """The ledger idempotency key of an answer made with ``key``."""
    return ANSWER_PREFIX + key
