"""Scheduling: the asyncio scheduler and the runtime facade built on it."""

from __future__ import annotations

from ..core.registry import WorkflowRegistry
from .scheduled import ScheduledRuntime, create_scheduled_runtime
from .scheduler import Scheduler, SchedulerStats

__all__ = [
    "ScheduledRuntime",
    "Scheduler",
    "SchedulerStats",
    "WorkflowRegistry",
    "create_scheduled_runtime",
]
