"""Effect policies: how many attempts an effect gets, how long to back off, and its idempotency key.

Pure decisions, no I/O. The runtime asks the policy after a failed attempt (an exception raised
by an effect handler, or an ``EffectOutcome.failed(...)`` that does not say ``retryable=False``)
whether another attempt is allowed and when; the retry is then persisted as a due time, never
slept in-process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ..errors import InvalidArgumentError
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
    """Exponential backoff (``base * 2**(attempt-1)``, capped at ``default_backoff_max``).

    The original AbstractRuntime's policy, with its arguments and defaults: one attempt per
    effect unless told otherwise.

    Args:
        default_max_attempts: attempts of an effect type not named in ``effect_max_attempts``.
        default_backoff_base: the first backoff, in seconds.
        default_backoff_max: the longest backoff, in seconds.
        effect_max_attempts: attempts per effect type, e.g. ``{"llm_call": 3}`` (the keys may
            be ``EffectType`` members too).
        max_attempts_by_type: an alias of ``effect_max_attempts`` (merged over it).
    """

    # The original's dataclass fields, with their defaults (set per instance by __init__).
    default_max_attempts: int = 1
    default_backoff_base: float = 1.0
    default_backoff_max: float = 60.0
    effect_max_attempts: dict[str, int] = {}  # noqa: RUF012 - replaced in __init__, never shared

    def __init__(
        self,
        default_max_attempts: int = 1,
        default_backoff_base: float = 1.0,
        default_backoff_max: float = 60.0,
        effect_max_attempts: Mapping[EffectType | str, int] | None = None,
        *,
        max_attempts_by_type: Mapping[EffectType | str, int] | None = None,
    ) -> None:
        by_type = {
            EffectType(k): int(v)
            for k, v in [
                *(effect_max_attempts or {}).items(),
                *(max_attempts_by_type or {}).items(),
            ]
        }
        for name, value in [("default_max_attempts", default_max_attempts), *by_type.items()]:
            if value < 1:
                raise InvalidArgumentError(
                    f"max attempts for {name} must be at least 1, got {value}"
                )
        if default_backoff_base < 0 or default_backoff_max < 0:
            raise InvalidArgumentError("backoff seconds cannot be negative")
        self.default_max_attempts = default_max_attempts
        self.default_backoff_base = default_backoff_base
        self.default_backoff_max = default_backoff_max
        #: Attempts per effect type, keyed by the type's value (a dict, as in the original).
        self.effect_max_attempts: dict[str, int] = {k.value: v for k, v in by_type.items()}

    @property
    def max_attempts_by_type(self) -> dict[EffectType, int]:
        """``effect_max_attempts`` keyed by ``EffectType``."""
        return {EffectType(k): v for k, v in self.effect_max_attempts.items()}

    @property
    def backoff_base(self) -> float:
        """``default_backoff_base``."""
        return self.default_backoff_base

    @property
    def backoff_max(self) -> float:
        """``default_backoff_max``."""
        return self.default_backoff_max

    def max_attempts(self, effect: Effect) -> int:
        return self.effect_max_attempts.get(
            EffectType(effect.type).value, self.default_max_attempts
        )

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), 62)  # 2**62 already exceeds any sane cap
        return float(min(self.default_backoff_base * 2**exponent, self.default_backoff_max))

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str:
        return compute_idempotency_key(run_id=run.run_id, node_id=node_id, effect=effect)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(default_max_attempts={self.default_max_attempts}, "
            f"effect_max_attempts={self.effect_max_attempts}, "
            f"backoff={self.default_backoff_base}s..{self.default_backoff_max}s)"
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
            effect_max_attempts={
                EffectType.LLM_CALL: llm_max_attempts,
                EffectType.TOOL_CALLS: tool_max_attempts,
            },
        )


class NoRetryPolicy(DefaultEffectPolicy):
    """Every effect gets exactly one attempt."""

    def __init__(self) -> None:
        super().__init__(default_max_attempts=1)
