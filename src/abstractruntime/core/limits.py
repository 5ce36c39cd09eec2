"""Resource limits of a run (``vars["_limits"]``): status, warnings and allowed updates.

Pure functions over a run's vars; ``Runtime.get_limit_status`` / ``check_limits`` /
``update_limits`` expose them. The runtime warns, the workflow decides: nothing here stops a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import LimitWarning, RunState
from .vars import DEFAULT_LIMITS, LIMITS

#: The keys ``update_limits`` changes; the original ignored any other key, so do we.
UPDATABLE = frozenset(
    {
        "max_iterations",
        "max_tokens",
        "max_output_tokens",
        "max_history_messages",
        "warn_iterations_pct",
        "warn_tokens_pct",
        "estimated_tokens_used",
        "current_iteration",
    }
)


def _int(limits: Mapping[str, Any], key: str) -> int:
    """The limit as an int; a missing, null or zero value falls back to the default."""
    value = limits.get(key)
    try:
        return int(value) if value else int(DEFAULT_LIMITS[key])
    except (TypeError, ValueError):
        return int(DEFAULT_LIMITS[key])


def _pct(current: int, maximum: int) -> float:
    return round(current / maximum * 100, 1) if maximum > 0 else 0.0


def _limits(run: RunState) -> Mapping[str, Any]:
    limits = run.vars.get(LIMITS)
    return limits if isinstance(limits, Mapping) else {}


def status(run: RunState) -> dict[str, Any]:
    """Iterations, tokens and history of the run against its limits, with warning flags."""
    limits = _limits(run)
    current, max_iterations = _int(limits, "current_iteration"), _int(limits, "max_iterations")
    used, max_tokens = _int(limits, "estimated_tokens_used"), _int(limits, "max_tokens")
    iterations_pct, tokens_pct = _pct(current, max_iterations), _pct(used, max_tokens)
    return {
        "iterations": {
            "current": current,
            "max": max_iterations,
            "pct": iterations_pct,
            "warning": iterations_pct >= _int(limits, "warn_iterations_pct"),
        },
        "tokens": {
            "estimated_used": used,
            "max": max_tokens,
            "pct": tokens_pct,
            "warning": tokens_pct >= _int(limits, "warn_tokens_pct"),
        },
        "history": {"max_messages": limits.get("max_history_messages", -1)},
    }


def warnings(run: RunState) -> list[LimitWarning]:
    """A ``LimitWarning`` for each limit at its warning threshold ("warning") or over it
    ("exceeded")."""
    limits = _limits(run)
    found: list[LimitWarning] = []
    checks = (
        ("iterations", "current_iteration", "max_iterations", "warn_iterations_pct", False),
        ("tokens", "estimated_tokens_used", "max_tokens", "warn_tokens_pct", True),
    )
    for kind, used_key, max_key, warn_key, needs_use in checks:
        current, maximum = _int(limits, used_key), _int(limits, max_key)
        if maximum <= 0 or (needs_use and current <= 0):
            continue
        if current >= maximum:
            found.append(LimitWarning(kind, "exceeded", current, maximum))
        elif current / maximum * 100 >= _int(limits, warn_key):
            found.append(LimitWarning(kind, "warning", current, maximum))
    return found


def updated(run: RunState, updates: Mapping[str, Any]) -> dict[str, Any]:
    """The run's vars with ``updates`` applied to its limits (unknown keys are ignored)."""
    vars = dict(run.vars)
    limits = dict(_limits(run))
    limits.update({key: value for key, value in updates.items() if key in UPDATABLE})
    vars[LIMITS] = limits
    return vars
