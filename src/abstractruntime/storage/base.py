"""The one storage interface the runtime and the scheduler talk to.

A backend stores runs and their hash-chained ledgers. The runtime never writes SQL: it claims a
run (``claim_run`` / ``claim_due``), commits each step with ``commit_step``, which writes the new
state and all the step's ledger records atomically, and only if nobody else committed a step of
the run since (optimistic concurrency on ``RunHandle.version``).

Leases keep two workers from *executing* the same step at once: a claim sets an owner and an
expiry and bumps the version (so a worker whose lease was taken over cannot commit any more);
commits and ``renew`` extend it; a commit that leaves the run not ``running`` releases it. Each run
has a ``due_at``: the time a worker should next look at it (``running`` and unclaimed: now;
waiting until T: T; claimed: the lease expiry, so a dead worker's runs come back by themselves;
waiting for an event or done: never). ``claim_due`` takes due runs by an index on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ..core.models import RunState, RunStatus, StepRecord, WaitReason


@dataclass
class RunHandle:
    """A run as the runtime holds it between steps: state plus what the next commit needs."""

    state: RunState
    version: int
    #: Number of ledger records committed for the run (the next record gets this sequence).
    seq: int
    #: ``record_hash`` of the run's last ledger record (None for an empty ledger).
    head: str | None
    #: The committed state as stored, used to restore the state when a step cannot be stored.
    state_json: str
    #: The lease owner this handle was claimed for (None: loaded, not claimed).
    owner: str | None = None
    #: Records of pure transitions the runtime ran since the last commit; they are committed
    #: with the next step (``state``/``state_json`` already include them, ``version``, ``seq``
    #: and ``head`` do not). Stores ignore it: the runtime passes them to ``commit_step``.
    pending: list[StepRecord] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """A storage backend (in-memory or SQL)."""

    async def create_run(
        self,
        state: RunState,
        state_json: str,
        *,
        lease: tuple[str, datetime] | None = None,
    ) -> RunHandle:
        """Insert a new run (version 0, empty ledger). ``ValueError`` if the id exists.

        With ``lease=(owner, until)`` the run is created claimed by ``owner``; otherwise it is
        unclaimed and, if running, due at once (idle workers are woken).
        """
        ...

    async def load_run(self, run_id: str) -> RunHandle:
        """Load a run without claiming it; ``RunNotFoundError`` when it does not exist."""
        ...

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> RunHandle:
        """Claim one run for ``owner`` until ``lease_until`` and load it.

        Raises ``RunLeasedError`` while another owner's lease is live, ``RunNotFoundError``.
        """
        ...

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[RunHandle]:
        """Claim up to ``limit`` runs that are due and unclaimed (oldest due first)."""
        ...

    async def next_due_at(self, workflow_ids: Sequence[str] | None = None) -> datetime | None:
        """The earliest ``due_at`` of any run (None when no run will ever be due by itself)."""
        ...

    async def commit_step(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        now: datetime,
        lease_until: datetime | None = None,
    ) -> RunHandle:
        """Atomically store ``state`` and append ``records`` (hash-chained onto ``handle.head``).

        Raises ``ConcurrentUpdateError`` (and commits nothing) when the stored version is no
        longer ``handle.version``. With ``lease_until`` and a ``running`` state the lease of
        ``handle.owner`` is extended; otherwise it is released. A run that ends (completed,
        failed, cancelled) marks its waiting parent due, in the same transaction.
        """
        ...

    async def release(self, handle: RunHandle, *, now: datetime) -> None:
        """Give up the lease of ``handle`` without a step (the run becomes due if running)."""
        ...

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> None:
        """Extend ``owner``'s leases on ``run_ids`` (leases lost meanwhile stay lost)."""
        ...

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        """The run's ledger records, oldest first."""
        ...

    async def find_effect(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        """The newest ``completed`` ledger record of the run with this idempotency key (an
        index lookup, never a ledger scan), or None."""
        ...

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow_id: str | None = None,
        wait_reason: WaitReason | None = None,
        wait_key: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
    ) -> list[RunState]:
        """Runs matching every given filter, most recently updated first."""
        ...

    async def close(self) -> None: ...
