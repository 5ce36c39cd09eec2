"""The original's ``RunStore`` / ``LedgerStore`` interfaces over any ``Store``.

``Runtime.run_store`` and ``Runtime.ledger_store`` are these views when the runtime was given a
``store=`` (a ``SqlStore``...) rather than the original's pair of stores, so code written for the
original (``rt.run_store.load(run_id)``, ``rt.ledger_store.list(run_id)``,
``rt.run_store.list_due_wait_until(now_iso=...)``) works on every backend.

Writes through a view (``save``, ``append``) are operator writes outside any step: each is one
committed transaction with the store's version check, so a worker driving the run meanwhile
loses its next commit instead of overwriting it.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from ..errors import RunNotFoundError
from .kernel import encode_state
from .models import RunState, RunStatus, StepRecord, WaitReason
from .ports import Store
from .serde import to_utc, utc_now


class StoreRunView:
    """A ``Store``'s runs as the original's ``RunStore`` / ``QueryableRunStore``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, run: RunState) -> None:
        """Replace the stored state of an existing run, or create the run."""
        state_json = encode_state(run, None)
        try:
            handle = await self.store.load_run(run.run_id)
        except RunNotFoundError:
            await self.store.create_run(run, state_json)
            return
        await self.store.commit_step(handle, run, state_json, [], now=utc_now())

    async def load(self, run_id: str) -> RunState | None:
        """The run's state, or None when unknown."""
        try:
            return (await self.store.load_run(run_id)).state
        except RunNotFoundError:
            return None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[RunState]:
        """Runs passing every given filter, most recently updated first."""
        return await self.store.list_runs(
            status=status, wait_reason=wait_reason, workflow_id=workflow_id, limit=limit
        )

    async def list_due_wait_until(
        self, *, now_iso: str | datetime, limit: int = 100
    ) -> builtins.list[RunState]:
        """Runs waiting until a time at or before ``now_iso``, earliest first."""
        return await self.store.list_runs(due_by=to_utc(now_iso), limit=limit)

    async def list_children(
        self, *, parent_run_id: str, status: RunStatus | None = None
    ) -> builtins.list[RunState]:
        """The runs started by ``parent_run_id`` (oldest first)."""
        children = await self.store.list_runs(
            parent_run_id=parent_run_id, status=status, limit=_ALL
        )
        return sorted(children, key=lambda state: (state.created_at, state.run_id))


class StoreLedgerView:
    """A ``Store``'s ledgers as the original's ``LedgerStore``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def append(self, record: StepRecord) -> None:
        """Chain ``record`` onto its run's ledger (``RunNotFoundError`` for an unknown run)."""
        handle = await self.store.load_run(record.run_id)
        await self.store.commit_step(
            handle, handle.state, handle.state_json, [record], now=utc_now()
        )

    async def list(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """The run's records, oldest first (empty for an unknown run)."""
        try:
            return await self.store.get_ledger(run_id)
        except RunNotFoundError:
            return []


#: "No limit" for list_runs, whose stores all take an int.
_ALL = 2**31 - 1
