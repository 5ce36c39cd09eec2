"""The original's storage interfaces at its path (``abstractruntime.storage.base``); they live
in ``core.ports``, made async."""

from __future__ import annotations

from ..core.ports import LedgerStore, QueryableRunStore, RunStore

__all__ = ["LedgerStore", "QueryableRunStore", "RunStore"]
