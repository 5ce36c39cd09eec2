"""Runtime configuration."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidArgumentError
from .serde import utc_now
from .throttle import Limit, check_limits


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class RuntimeConfig:
    """Knobs of a ``Runtime``.

    Attributes:
        max_steps: default ``max_steps`` of ``tick``/``resume``/``run``.
        clock: returns the current aware UTC time; inject a fake clock in tests.
        lease_s: how long a claim on a run lasts without renewal: the time after which a dead
            worker's runs are taken over by others. Commits and the scheduler's heartbeat renew
            it, so a step may take longer than this while its worker lives.
        owner: the lease owner name of this runtime (default: host, pid and a random suffix).
        max_batched_steps: pure transitions (a plan with only ``next_node``) are deterministic
            functions of the committed state, so they are committed together with the step
            after them (an effect, a wait, the end), up to this many at once; 1 commits every
            step by itself. A crash loses only such steps, and they run again.
        max_batch_s: and at most this old (by ``clock``): a chain of slow nodes still commits
            regularly.
        max_state_bytes: the largest run state (its JSON, vars included): a step that would
            store a larger one fails, naming this limit; ``start`` refuses such vars.
        max_payload_bytes: the largest effect payload, effect result or resume payload (JSON):
            an effect over it fails its step; ``resume`` refuses such a payload.
        max_record_bytes: the largest ledger record (its JSON: the effect, its result, the
            error...): a step whose record is larger fails, naming this limit.
        event_buffer_s: the default ``buffer_s`` of ``emit_event``: how long an event is kept
            for the runs that start waiting on its key later (0: not kept, the original's
            behaviour).
        retention: how long finished runs are kept (None: forever, the default). With it, a
            ``Scheduler`` purges the runs that ended longer ago, with their ledgers, snapshots
            and artifacts, in small batches in the background (``store.purge``).
        retention_interval_s: how often the scheduler starts a retention pass at most.
        limits: concurrency and rate limits (``Limit``) shared by every worker of the store;
            see ``core.throttle``.

    The original's resource limits, copied into each new run's ``vars["_limits"]`` by
    ``start`` (see ``to_limits_dict``) and checked by ``Runtime.check_limits``; the runtime
    warns, the workflow decides:

        max_iterations: iterations an agent loop may make (default 25).
        warn_iterations_pct: the percentage of ``max_iterations`` that warns (default 80).
        max_tokens: the context window (None: ``model_capabilities["max_tokens"]``, else
            32768).
        max_output_tokens: the largest LLM answer (None: the provider's default).
        warn_tokens_pct: the percentage of ``max_tokens`` that warns (default 80).
        max_history_messages: messages of history sent to the LLM (-1: all).
        model_capabilities: what the LLM client reports (``get_model_capabilities()``).
    """

    max_iterations: int = 25
    warn_iterations_pct: int = 80
    max_tokens: int | None = None
    max_output_tokens: int | None = None
    warn_tokens_pct: int = 80
    max_history_messages: int = -1
    model_capabilities: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 100
    clock: Callable[[], datetime] = field(default=utc_now)
    lease_s: float = 30.0
    owner: str = field(default_factory=default_owner)
    max_batched_steps: int = 100
    max_batch_s: float = 0.1
    max_state_bytes: int = 16 * 1024 * 1024
    max_payload_bytes: int = 8 * 1024 * 1024
    max_record_bytes: int = 16 * 1024 * 1024
    event_buffer_s: float = 0.0
    retention: timedelta | None = None
    retention_interval_s: float = 60.0
    limits: Sequence[Limit] = ()

    def __post_init__(self) -> None:
        self.limits = check_limits(self.limits)
        if self.lease_s <= 0:
            raise InvalidArgumentError("lease_s must be positive")
        if self.max_steps < 1:
            raise InvalidArgumentError("max_steps must be at least 1")
        if self.max_batched_steps < 1:
            raise InvalidArgumentError(
                "max_batched_steps must be at least 1 (1: commit every step)"
            )
        if self.max_batch_s < 0:
            raise InvalidArgumentError("max_batch_s cannot be negative")
        if self.event_buffer_s < 0:
            raise InvalidArgumentError(
                "event_buffer_s cannot be negative (0: events are not buffered)"
            )
        if self.retention is not None and (
            not isinstance(self.retention, timedelta) or self.retention < timedelta(0)
        ):
            raise InvalidArgumentError(
                "retention must be a non-negative timedelta (None: keep runs)"
            )
        if self.retention_interval_s <= 0:
            raise InvalidArgumentError("retention_interval_s must be positive")
        if min(self.max_state_bytes, self.max_payload_bytes, self.max_record_bytes) < 1024:
            raise InvalidArgumentError(
                "max_state_bytes, max_payload_bytes and max_record_bytes must be at least 1024"
            )

    def to_limits_dict(self) -> dict[str, Any]:
        """The ``vars["_limits"]`` of a new run."""
        return {
            "max_iterations": self.max_iterations,
            "current_iteration": 0,
            "max_tokens": self.max_tokens or self.model_capabilities.get("max_tokens", 32768),
            "max_output_tokens": self.max_output_tokens,
            "estimated_tokens_used": 0,
            "max_history_messages": self.max_history_messages,
            "warn_iterations_pct": self.warn_iterations_pct,
            "warn_tokens_pct": self.warn_tokens_pct,
        }

    def with_capabilities(self, capabilities: dict[str, Any]) -> RuntimeConfig:
        """A copy of this config with ``model_capabilities`` replaced."""
        return replace(self, model_capabilities=dict(capabilities))
