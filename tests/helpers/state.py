"""What a test compares of a run's state."""

from __future__ import annotations

from typing import Any

from abstractruntime import RunState
from abstractruntime.core.vars import LIMITS


def own_vars(state: RunState) -> dict[str, Any]:
    """The run's vars without the ``_limits`` every run gets at start (``RuntimeConfig``)."""
    return {key: value for key, value in state.vars.items() if key != LIMITS}
