"""The kernel: models, workflow specs, the step machine, policies and the runtime (no I/O)."""

from __future__ import annotations

from .config import RuntimeConfig
from .models import (
    Effect,
    EffectType,
    LimitWarning,
    RunState,
    RunStatus,
    StepPlan,
    WaitReason,
    WaitState,
)
from .runtime import Runtime
from .spec import WorkflowSpec
from .vars import LIMITS, ensure_limits, get_limits

__all__ = [
    "LIMITS",
    "Effect",
    "EffectType",
    "LimitWarning",
    "RunState",
    "RunStatus",
    "Runtime",
    "RuntimeConfig",
    "StepPlan",
    "WaitReason",
    "WaitState",
    "WorkflowSpec",
    "ensure_limits",
    "get_limits",
]
