"""Effect policies: how many attempts an effect gets, how long to back off, and its idempotency key.

Pure decisions, no I/O. The runtime asks the policy after a *retryable* failure (an exception
raised by an effect handler, or ``EffectOutcome.failed(..., retryable=True)``) whether another
attempt is allowed and when; the retry is then persisted as a due time, never slept in-process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from .models import Effect, EffectType, RunState
from .serde import canonical_json


def compute_idempotency_key(*, run_id: str, node_id: str, effect: Effect) -> str:
    """The idempotency key of performing ``effect`` at ``node_id`` of run ``run_id``.

    A SHA-256 (hex, 32 characters) over the run id, node id, effect type and payload, in
    canonical JSON: the same effect planned again by the same node of the same run gets the same
    key, so an external system can deduplicate the attempts of one effect.
    """
    body = {
        "run_id": run_id,
        "node_id": node_id,
        "effect_type": EffectType(effect.type).value,
        "effect_payload": effect.payload,
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()[:32]


@runtime_checkable
class EffectPolicy(Protocol):
    """What the runtime asks about an effect; ``DefaultEffectPolicy`` is the reference."""

    def max_attempts(self, effect: Effect) -> int:
        """How many times ``effect`` may be attempted in all (1: never retried)."""
        ...

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        ...

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str:
        """The key recorded with the effect's ledger records (and kept across its retries)."""
        ...


class DefaultEffectPolicy:
    """Exponential backoff (``base * 2**(attempt-1)``, capped at ``backoff_max``).

    Args:
        default_max_attempts: attempts of an effect type not named in ``max_attempts_by_type``.
        default_backoff_base: the first backoff, in seconds.
        default_backoff_max: the longest backoff, in seconds.
        max_attempts_by_type: attempts per effect type, e.g. ``{EffectType.LLM_CALL: 3}``.
    """

    def __init__(
        self,
        *,
        default_max_attempts: int = 1,
        default_backoff_base: float = 1.0,
        default_backoff_max: float = 60.0,
        max_attempts_by_type: Mapping[EffectType | str, int] | None = None,
    ) -> None:
        by_type = {EffectType(k): int(v) for k, v in (max_attempts_by_type or {}).items()}
        for name, value in [("default_max_attempts", default_max_attempts), *by_type.items()]:
            if value < 1:
                raise ValueError(f"max attempts for {name} must be at least 1, got {value}")
        if default_backoff_base < 0 or default_backoff_max < 0:
            raise ValueError("backoff seconds cannot be negative")
        self.default_max_attempts = default_max_attempts
        self.backoff_base = default_backoff_base
        self.backoff_max = default_backoff_max
        self.max_attempts_by_type = by_type

    def max_attempts(self, effect: Effect) -> int:
        return self.max_attempts_by_type.get(effect.type, self.default_max_attempts)

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), 62)  # 2**62 already exceeds any sane cap
        return float(min(self.backoff_base * 2**exponent, self.backoff_max))

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str:
        return compute_idempotency_key(run_id=run.run_id, node_id=node_id, effect=effect)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(default_max_attempts={self.default_max_attempts}, "
            f"by_type={ {k.value: v for k, v in self.max_attempts_by_type.items()} }, "
            f"backoff={self.backoff_base}s..{self.backoff_max}s)"
        )


class RetryPolicy(DefaultEffectPolicy):
    """Retries LLM calls and tool calls (the effects that fail transiently); others run once."""

    def __init__(
        self,
        *,
        llm_max_attempts: int = 3,
        tool_max_attempts: int = 2,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(
            default_max_attempts=1,
            default_backoff_base=backoff_base,
            default_backoff_max=backoff_max,
            max_attempts_by_type={
                EffectType.LLM_CALL: llm_max_attempts,
                EffectType.TOOL_CALLS: tool_max_attempts,
            },
        )


class NoRetryPolicy(DefaultEffectPolicy):
    """Every effect gets exactly one attempt."""

    def __init__(self) -> None:
        super().__init__(default_max_attempts=1)
