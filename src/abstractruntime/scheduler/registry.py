"""``WorkflowRegistry`` at the original's path (it lives in ``core.registry``)."""

from __future__ import annotations

from ..core.registry import WorkflowRegistry

__all__ = ["WorkflowRegistry"]
