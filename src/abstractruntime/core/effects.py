"""Effect outcomes and the built-in effect handlers (pure: they decide, they do no I/O).

An effect handler is ``async def h(run, effect, default_next_node) -> EffectOutcome`` (a plain
``def`` too; the original's ``h(run, effect)`` is accepted by its signature).
``default_next_node`` is the plan's ``next_node``; a waiting outcome resumes there unless the
effect payload names ``resume_to_node``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..errors import InvalidArgumentError
from . import waitkeys
from .models import Effect, EffectType, RunState, WaitReason, WaitState
from .serde import iso, to_utc


@dataclass
class EffectOutcome:
    """What performing an effect gave: a result, a wait, or an error."""

    status: Literal["completed", "waiting", "failed"]
    result: Any = None
    wait: WaitState | None = None
    error: str | None = None
    #: For a failure: whether another attempt may succeed. As in the original AbstractRuntime,
    #: a failure is retried as the effect policy allows unless it says ``retryable=False`` (a
    #: 4xx, a malformed payload: the same call would fail the same way); an exception a handler
    #: raises is retried too.
    retryable: bool = True

    @classmethod
    def completed(cls, result: Any = None) -> EffectOutcome:
        return cls(status="completed", result=result)

    @classmethod
    def waiting(cls, wait: WaitState) -> EffectOutcome:
        return cls(status="waiting", wait=wait)

    @classmethod
    def failed(cls, error: str, *, retryable: bool = True) -> EffectOutcome:
        """A failure, retried per the effect policy unless ``retryable=False``."""
        return cls(status="failed", error=error, retryable=retryable)


EffectHandler = Callable[[RunState, Effect, str | None], EffectOutcome | Awaitable[EffectOutcome]]


def accepting_next_node(handler: Callable[..., Any]) -> EffectHandler:
    """``handler`` as a three-argument effect handler: the original's two-argument handlers
    ``(run, effect)`` are wrapped (by their signature) so they keep working."""
    if not callable(handler):
        raise InvalidArgumentError(f"effect handler {handler!r} is not callable")
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume ours
        return handler
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) or len(positional) != 2:
        return handler

    def two_arguments(
        run: RunState, effect: Effect, default_next_node: str | None
    ) -> EffectOutcome | Awaitable[EffectOutcome]:
        result: EffectOutcome | Awaitable[EffectOutcome] = handler(run, effect)
        return result

    return two_arguments


def _resume_target(effect: Effect, default_next_node: str | None) -> str | None:
    target = effect.payload.get("resume_to_node")
    return target if isinstance(target, str) and target else default_next_node


def wait_event(run: RunState, effect: Effect, default_next_node: str | None) -> EffectOutcome:
    wait_key = effect.payload.get("wait_key")
    if not isinstance(wait_key, str) or not wait_key:
        return EffectOutcome.failed(
            "wait_event requires payload['wait_key'] (a non-empty string)", retryable=False
        )
    return EffectOutcome.waiting(
        WaitState(
            reason=WaitReason.EVENT,
            wait_key=wait_key,
            resume_to_node=_resume_target(effect, default_next_node),
            result_key=effect.result_key,
            details=effect.payload.get("details"),
        )
    )


def ask_user(run: RunState, effect: Effect, default_next_node: str | None) -> EffectOutcome:
    payload = effect.payload
    wait_key = payload.get("wait_key") or waitkeys.user_key(run.run_id, run.current_node)
    choices = payload.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)
    ):
        return EffectOutcome.failed(
            "ask_user payload['choices'] must be a list of strings", retryable=False
        )
    prompt = payload.get("prompt")
    return EffectOutcome.waiting(
        WaitState(
            reason=WaitReason.USER,
            wait_key=str(wait_key),
            resume_to_node=_resume_target(effect, default_next_node),
            result_key=effect.result_key,
            prompt=None if prompt is None else str(prompt),
            choices=choices,
            allow_free_text=bool(payload.get("allow_free_text", True)),
            details=payload.get("details"),
        )
    )


def make_wait_until(
    now: Callable[[], datetime],
) -> Callable[[RunState, Effect, str | None], EffectOutcome]:
    """``wait_until`` needs the runtime's clock to tell whether its time has already come."""

    def wait_until(run: RunState, effect: Effect, default_next_node: str | None) -> EffectOutcome:
        raw = effect.payload.get("until")
        if raw is None:
            return EffectOutcome.failed(
                "wait_until requires payload['until'] (ISO-8601 time)", retryable=False
            )
        try:
            until = to_utc(raw)
        except (TypeError, ValueError) as exc:
            return EffectOutcome.failed(
                f"wait_until payload['until'] is invalid: {exc}", retryable=False
            )
        if now() >= until:
            return EffectOutcome.completed({"until": iso(until)})
        return EffectOutcome.waiting(
            WaitState(
                reason=WaitReason.UNTIL,
                until=until,
                wait_key=effect.payload.get("wait_key"),
                resume_to_node=_resume_target(effect, default_next_node),
                result_key=effect.result_key,
            )
        )

    return wait_until


def builtin_handlers(now: Callable[[], datetime]) -> dict[EffectType, EffectHandler]:
    return {
        EffectType.WAIT_EVENT: wait_event,
        EffectType.ASK_USER: ask_user,
        EffectType.WAIT_UNTIL: make_wait_until(now),
    }
