"""``MemoryStore.purge``: the purge's operations (``core.retention.PurgeOps``) on a memory store.

Each operation runs without awaiting, so on one event loop it is atomic, like a transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .models import RunStatus
from .retention import CLAIM_S, PURGE_OWNER_PREFIX, PurgeResult, PurgeSpec, RunInfo

if TYPE_CHECKING:
    from .memory import MemoryStore, StoredRun


def _info(stored: StoredRun) -> RunInfo:
    state = stored.state
    return RunInfo(state.run_id, state.parent_run_id, state.status, state.updated_at)


class MemoryPurgeOps:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._runs = store.run_store._runs

    async def candidates(
        self,
        status: RunStatus,
        cutoff: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[RunInfo]:
        found = sorted(
            (
                (stored.state.updated_at, run_id)
                for run_id, stored in self._runs.items()
                if stored.state.status is status and stored.state.updated_at < cutoff
            )
        )
        if after is not None:
            found = [key for key in found if key > after]
        return [_info(self._runs[run_id]) for _, run_id in found[:limit]]

    async def runs(self, run_ids: Collection[str]) -> list[RunInfo]:
        return [_info(self._runs[run_id]) for run_id in run_ids if run_id in self._runs]

    async def children(self, run_ids: Collection[str]) -> list[RunInfo]:
        parents = set(run_ids)
        return [
            _info(stored) for stored in self._runs.values() if stored.state.parent_run_id in parents
        ]

    async def claim(
        self, run_ids: Sequence[str], spec: PurgeSpec, owner: str, now: datetime
    ) -> dict[str, int]:
        claimed = {}
        until = now + timedelta(seconds=CLAIM_S)
        for run_id in run_ids:
            stored = self._runs.get(run_id)
            if stored is None or not spec.qualifies(_info(stored)):
                continue
            taken_over = (stored.lease_owner or "").startswith(PURGE_OWNER_PREFIX)
            if stored.leased(now) and not (taken_over and stored.lease_owner == owner):
                continue
            stored.lease(owner, until)
            stored.due_at = None
            stored.version += 1
            claimed[run_id] = len(self.store.ledger_store._records.get(run_id, []))
        return claimed

    async def release(self, run_ids: Sequence[str], owner: str) -> None:
        for run_id in run_ids:
            stored = self._runs.get(run_id)
            if stored is not None and stored.lease_owner == owner:
                stored.lease_owner = stored.lease_expires_at = None

    def _held(self, run_id: str, owner: str) -> bool:
        stored = self._runs.get(run_id)
        return stored is not None and stored.lease_owner == owner

    async def delete_ledger(self, run_id: str, start: int, stop: int, owner: str) -> int:
        if not self._held(run_id, owner):
            return 0
        records = self.store.ledger_store._records.get(run_id, [])
        gone = len(records[start:stop])
        del records[start:stop]
        return gone

    async def delete_ledgers(self, run_ids: Sequence[str], owner: str) -> int:
        gone = 0
        for run_id in run_ids:
            if self._held(run_id, owner):
                records = self.store.ledger_store._records.get(run_id, [])
                gone += len(records)
                records.clear()
        return gone

    async def delete_runs(self, run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> PurgeResult:
        doomed = {
            run_id
            for run_id in run_ids
            if self._held(run_id, owner) and spec.qualifies(_info(self._runs[run_id]))
        }
        if not doomed:
            return PurgeResult()
        store = self.store
        records = 0
        for run_id in doomed:
            del self._runs[run_id]
            records += len(store.ledger_store._records.pop(run_id, []))
        snapshots = await store.snapshots.list(limit=None)
        snapshot_count = 0
        for snapshot in snapshots:
            if snapshot.run_id in doomed and await store.snapshots.delete(snapshot.snapshot_id):
                snapshot_count += 1
        artifact_count = 0
        for run_id in doomed:
            artifact_count += await store.artifacts.delete_by_run(run_id)
        mailbox = store.mailbox
        for message_id in [m for m, msg in mailbox.messages.items() if msg.run_id in doomed]:
            del mailbox.messages[message_id]
        mailbox.received = {(e, r) for e, r in mailbox.received if r not in doomed}
        return PurgeResult(len(doomed), records, snapshot_count, artifact_count)
