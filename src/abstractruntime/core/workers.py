"""The live workers and the workflow versions they serve (``runs list --orphaned``).

Each scheduler announces itself in the store when it starts and again every few seconds
(``Store.announce_worker``): its owner name and the ``(workflow_id, version)`` pairs of its
registry. A row counts as alive until its ``expires_at``, a few heartbeats after the last one,
so an operator can see which versions some worker drives and which unfinished runs no live
worker can drive (their version's workers are all gone: a finished deploy that forgot a
version, or runs to ``migrate_runs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .models import RunStatus

#: Heartbeats a worker may miss before it counts as gone.
MISSED_HEARTBEATS = 3
#: Rows of workers gone this long are deleted by the next announce.
FORGET_AFTER = timedelta(days=1)
#: The statuses of runs that still need a worker.
UNFINISHED = (RunStatus.RUNNING, RunStatus.WAITING)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as announced: who, since when, its last heartbeat, and what it serves."""

    owner: str
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    serves: tuple[tuple[str, str], ...]

    def alive(self, now: datetime) -> bool:
        return self.expires_at > now

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "serves": [list(pair) for pair in self.serves],
        }


@dataclass(frozen=True)
class VersionCount:
    """How many unfinished runs of one workflow version have one status."""

    workflow_id: str
    version: str
    status: str
    runs: int


def expiry(now: datetime, interval_s: float) -> datetime:
    """Until when a worker announced ``now``, heartbeating every ``interval_s``, is alive."""
    return now + timedelta(seconds=interval_s * MISSED_HEARTBEATS)


def orphaned(
    counts: Iterable[VersionCount], workers: Iterable[WorkerInfo], now: datetime
) -> list[VersionCount]:
    """The counts of the versions no live worker serves."""
    served = {pair for worker in workers if worker.alive(now) for pair in worker.serves}
    return [c for c in counts if (c.workflow_id, c.version) not in served]


def count_versions(states: Iterable[Any]) -> list[VersionCount]:
    """``VersionCount``s of the unfinished ``states`` (for the stores that hold runs in
    memory), by workflow, version and status."""
    tally: dict[tuple[str, str, str], int] = {}
    for state in states:
        if state.status in UNFINISHED:
            key = (state.workflow_id, state.workflow_version, state.status.value)
            tally[key] = tally.get(key, 0) + 1
    return [VersionCount(*key, runs) for key, runs in sorted(tally.items())]


class MemoryWorkers:
    """The worker methods of the ``Store`` port for stores that keep them in this process
    (a mixin of ``MemoryStore`` and ``PairedStore``, which give ``_run_states``)."""

    _workers: dict[str, WorkerInfo]

    async def _run_states(self) -> Iterable[Any]:
        raise NotImplementedError

    def _worker_rows(self) -> dict[str, WorkerInfo]:
        if not hasattr(self, "_workers"):
            self._workers = {}
        return self._workers

    async def announce_worker(
        self,
        owner: str,
        serves: Sequence[tuple[str, str]],
        *,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        rows = self._worker_rows()
        known = rows.get(owner)
        started = known.started_at if known is not None else now
        pairs = tuple((str(w), str(v)) for w, v in serves)
        rows[owner] = WorkerInfo(owner, started, now, expires_at, pairs)
        for name, worker in list(rows.items()):
            if worker.expires_at < now - FORGET_AFTER:
                del rows[name]

    async def forget_worker(self, owner: str) -> None:
        self._worker_rows().pop(owner, None)

    async def list_workers(self) -> list[WorkerInfo]:
        return sorted(self._worker_rows().values(), key=lambda w: w.owner)

    async def version_counts(self) -> list[VersionCount]:
        return count_versions(await self._run_states())
