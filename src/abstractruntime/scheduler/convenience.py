"""``create_scheduled_runtime`` and ``ScheduledRuntime`` at the original's path."""

from __future__ import annotations

from .scheduled import ScheduledRuntime, create_scheduled_runtime

__all__ = ["ScheduledRuntime", "create_scheduled_runtime"]
