"""Wait timeouts: the rules of ``timeout_s`` / ``timeout_at`` / ``timeout_node`` (no I/O).

``ask_user``, ``wait_event`` and a sync ``start_subworkflow`` may give up waiting. The effect's
payload says when: ``timeout_s`` (seconds from the start of the step, a number > 0) or
``timeout_at`` (an aware datetime or an ISO-8601 string with its offset), and optionally
``timeout_node`` (default: the node the answer would have gone to). The wait then carries
``timeout_at``, which is also the run's ``due_at`` (``kernel.due_at``): the scheduler's due-run
claim wakes it, in any process, after restarts, with no polling of its own.

The payload is checked before the effect is performed (``problem``, from ``kernel.check_plan``),
so a bad value fails the step without starting a child or asking anybody anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidArgumentError
from .models import Effect, EffectType, WaitState
from .serde import iso, to_utc

#: The effects whose waits may time out.
TIMED_EFFECTS = frozenset(
    {EffectType.ASK_USER, EffectType.WAIT_EVENT, EffectType.START_SUBWORKFLOW}
)

TIMEOUT_S, TIMEOUT_AT, TIMEOUT_NODE = "timeout_s", "timeout_at", "timeout_node"


def _given(payload: Mapping[str, Any], key: str) -> bool:
    return payload.get(key) is not None


def problem(effect: Effect, nodes: Mapping[str, Any]) -> str | None:
    """Why the timeout of ``effect`` is invalid (None: valid, or no timeout asked for); the
    text names the payload key."""
    payload = effect.payload
    asked = [key for key in (TIMEOUT_S, TIMEOUT_AT, TIMEOUT_NODE) if _given(payload, key)]
    if not asked:
        return None
    name = effect.type.value
    if effect.type not in TIMED_EFFECTS:
        return (
            f"payload[{asked[0]!r}] on effect {name!r}: only ask_user, wait_event and a sync "
            "start_subworkflow can time out"
        )
    if effect.type is EffectType.START_SUBWORKFLOW and payload.get("async"):
        return (
            f"payload[{asked[0]!r}]: an async start_subworkflow does not wait, so it cannot "
            "time out"
        )
    if _given(payload, TIMEOUT_S) and _given(payload, TIMEOUT_AT):
        return "payload['timeout_s'] and payload['timeout_at'] are both given; pass one of them"
    if _given(payload, TIMEOUT_S):
        seconds = payload[TIMEOUT_S]
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            return f"payload['timeout_s'] must be a number of seconds > 0, got {seconds!r}"
    elif _given(payload, TIMEOUT_AT):
        error = _timeout_at_problem(payload[TIMEOUT_AT])
        if error:
            return f"payload['timeout_at'] {error}"
    else:
        return "payload['timeout_node'] is given without payload['timeout_s'] or ['timeout_at']"
    node = payload.get(TIMEOUT_NODE)
    if node is not None and (not isinstance(node, str) or node not in nodes):
        return f"payload['timeout_node'] {node!r} is not a node of the workflow"
    return None


def _timeout_at_problem(value: Any) -> str | None:
    if not isinstance(value, (str, datetime)):
        return f"must be an aware datetime or an ISO-8601 string, got {type(value).__name__}"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(_z_as_offset(value.strip()))
        except ValueError:
            return f"{value!r} is not an ISO-8601 timestamp"
    else:
        parsed = value
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return f"{value!r} has no timezone; give one (e.g. '+00:00' or 'Z')"
    return None


def _z_as_offset(text: str) -> str:
    """``fromisoformat`` accepts "Z" only from Python 3.11."""
    return text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text


def normalise(effect: Effect) -> None:
    """A ``timeout_at`` given as a datetime becomes its ISO string, so the payload can be
    recorded as JSON (call after ``problem`` found nothing)."""
    value = effect.payload.get(TIMEOUT_AT)
    if isinstance(value, datetime) and value.tzinfo is not None:
        effect.payload = {**effect.payload, TIMEOUT_AT: iso(value)}


def deadline(payload: Mapping[str, Any], started: datetime) -> datetime | None:
    """When a wait asked for by ``payload`` in a step that started at ``started`` times out."""
    seconds = payload.get(TIMEOUT_S)
    if seconds is not None:
        return started + timedelta(seconds=float(seconds))
    at = payload.get(TIMEOUT_AT)
    if at is not None:
        return to_utc(at)
    return None


def arm(wait: WaitState, effect: Effect, started: datetime) -> None:
    """Give ``wait`` the timeout ``effect`` asks for (nothing when it asks for none)."""
    if effect.type not in TIMED_EFFECTS:
        return
    at = deadline(effect.payload, started)
    if at is None:
        return
    wait.timeout_at = at
    wait.waiting_since = started
    node = effect.payload.get(TIMEOUT_NODE)
    wait.timeout_node = node if isinstance(node, str) else None


def payload(waiting: WaitState, now: datetime) -> dict[str, Any] | None:
    """What a wait whose timeout has passed resumes with (None: no timeout, or not yet)."""
    if waiting.timeout_at is None or now < waiting.timeout_at:
        return None
    since = waiting.waiting_since
    waited = (now - since).total_seconds() if since is not None else None
    return {"timed_out": True, "waited_s": waited, "wait_key": waiting.wait_key}


def deadline_of(waiting: WaitState | None) -> datetime | None:
    """When a wait ends by itself: its ``until`` (``wait_until``, a retry's backoff) or its
    ``timeout_at`` (None: only an answer, an event or a child ends it)."""
    if waiting is None:
        return None
    return waiting.until if waiting.until is not None else waiting.timeout_at


#: The orders of ``Store.list_runs``: most recently updated first, or earliest deadline first.
LIST_ORDERS = ("updated", "deadline")


def check_order(order: str) -> None:
    """``InvalidArgumentError`` for an order ``list_runs`` does not know."""
    if order not in LIST_ORDERS:
        raise InvalidArgumentError(
            f"order must be one of {', '.join(map(repr, LIST_ORDERS))}, got {order!r}"
        )
