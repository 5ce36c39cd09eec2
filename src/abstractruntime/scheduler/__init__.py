"""Scheduling: the asyncio scheduler and the runtime facade built on it."""

from __future__ import annotations

from .scheduled import ScheduledRuntime, create_scheduled_runtime
from .scheduler import Scheduler, SchedulerStats

__all__ = ["ScheduledRuntime", "Scheduler", "SchedulerStats", "create_scheduled_runtime"]
