"""Namespaces of ``RunState.vars``, as the original names them (a convention, not a schema).

- ``context``: what the user gave the run (task, conversation, inputs);
- ``scratchpad``: the workflow's working memory;
- ``_runtime``: what the host manages (tool specs, inbox...);
- ``_temp``: values passed from one step to the next;
- ``_limits``: the run's resource limits (``RuntimeConfig.to_limits_dict``), filled by
  ``Runtime.start``, read by ``Runtime.check_limits`` and changed by ``Runtime.update_limits``.

The helpers create a missing (or non-dict) namespace in place and return it.
"""

from __future__ import annotations

from typing import Any

CONTEXT = "context"
SCRATCHPAD = "scratchpad"
RUNTIME = "_runtime"
TEMP = "_temp"
LIMITS = "_limits"

#: The limits of a run started without a ``RuntimeConfig`` of its own.
DEFAULT_LIMITS: dict[str, Any] = {
    "max_iterations": 25,
    "current_iteration": 0,
    "max_tokens": 32768,
    "max_output_tokens": None,
    "max_history_messages": -1,
    "estimated_tokens_used": 0,
    "warn_iterations_pct": 80,
    "warn_tokens_pct": 80,
}


def ensure_namespaces(vars: dict[str, Any]) -> dict[str, Any]:
    """Make ``context``, ``scratchpad``, ``_runtime`` and ``_temp`` dicts; returns ``vars``."""
    for key in (CONTEXT, SCRATCHPAD, RUNTIME, TEMP):
        if not isinstance(vars.get(key), dict):
            vars[key] = {}
    return vars


def get_namespace(vars: dict[str, Any], key: str) -> dict[str, Any]:
    """The namespace ``key`` of ``vars`` (the four namespaces are created first)."""
    ensure_namespaces(vars)
    namespace: dict[str, Any] = vars[key]
    return namespace


def get_context(vars: dict[str, Any]) -> dict[str, Any]:
    return get_namespace(vars, CONTEXT)


def get_scratchpad(vars: dict[str, Any]) -> dict[str, Any]:
    return get_namespace(vars, SCRATCHPAD)


def get_runtime(vars: dict[str, Any]) -> dict[str, Any]:
    return get_namespace(vars, RUNTIME)


def get_temp(vars: dict[str, Any]) -> dict[str, Any]:
    return get_namespace(vars, TEMP)


def clear_temp(vars: dict[str, Any]) -> None:
    get_temp(vars).clear()


def get_limits(vars: dict[str, Any]) -> dict[str, Any]:
    """The ``_limits`` namespace, created with ``DEFAULT_LIMITS`` when missing."""
    if not isinstance(vars.get(LIMITS), dict):
        vars[LIMITS] = dict(DEFAULT_LIMITS)
    limits: dict[str, Any] = vars[LIMITS]
    return limits


def ensure_limits(vars: dict[str, Any]) -> dict[str, Any]:
    """Same as ``get_limits``: the mutable ``_limits`` dict inside ``vars``."""
    return get_limits(vars)
