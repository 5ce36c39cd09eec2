"""In-memory stores: the original ``InMemoryRunStore`` / ``InMemoryLedgerStore`` pair.

The reference implementation of the ``Store`` port, and the default of ``Runtime()``. It lives
in the core, next to the port, because it does no I/O: the kernel's rules run on it without a
database (the I/O backends are in ``abstractruntime.storage``, which re-exports these).

They keep JSON text, not live objects, so a run read back is a copy - exactly as with a database -
and the same optimistic-concurrency and lease rules apply. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ..errors import (
    ArtifactNotFoundError,
    ConcurrentUpdateError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
)
from . import pages, timeouts
from .artifacts import (
    DEFAULT_CONTENT_TYPE,
    Artifact,
    ArtifactMetadata,
    check_artifact_id,
    check_content,
    check_content_type,
    check_run_id,
    check_tags,
    compute_artifact_id,
    content_sha256,
    new_metadata,
    newest_first,
    oldest_first,
)
from .events import Mailbox, MemoryEvents
from .kernel import check_limit, due_at
from .ledger import chain_records
from .models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from .ports import ArtifactStore, LedgerHead, RunHandle, Served
from .retention import PurgeOps, Purging
from .schedules import InMemoryScheduleStore
from .serde import canonical_json, decode, encode, to_utc, utc_now
from .snapshot import Snapshot
from .throttle import MemoryLimits
from .workers import MemoryWorkers


async def _stop_nothing() -> None:
    return None


#: How many records a memory scan hands out before it lets other tasks run.
_SCAN_YIELD_EVERY = 1000


@dataclass
class StoredRun:
    """A run as a store that keeps runs in this process holds it: its state and the lease,
    version and due-time bookkeeping of the ``Store`` port, shared by ``MemoryStore`` and
    ``PairedStore`` (which persist the state and ledger in their own ways)."""

    state_json: str
    state: RunState  # decoded copy for filtering; never handed out
    version: int
    due_at: datetime | None
    #: Records committed (None: not read yet, for a store that reads ledgers lazily).
    seq: int | None = 0
    head: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None

    def leased(self, now: datetime) -> bool:
        """A live lease, whoever holds it (claims are not re-entrant)."""
        return self.lease_expires_at is not None and self.lease_expires_at > now

    def is_due(self, now: datetime, workflows: Served | None) -> bool:
        """Due, unclaimed and of one of ``workflows`` (``(workflow_id, version)``; None: any)."""
        return (
            self.due_at is not None
            and self.due_at <= now
            and not self.leased(now)
            and (workflows is None or self.served_by(workflows))
        )

    def served_by(self, workflows: Sequence[tuple[str, str]]) -> bool:
        """Of one of the ``(workflow_id, version)`` pairs."""
        return (self.state.workflow_id, self.state.workflow_version) in workflows

    def handle(self, owner: str | None = None) -> RunHandle:
        assert self.seq is not None
        return RunHandle(
            state=RunState.from_dict(decode(self.state_json)),
            version=self.version,
            seq=self.seq,
            head=self.head,
            state_json=self.state_json,
            owner=owner,
        )

    def lease(self, owner: str, until: datetime) -> None:
        self.lease_owner, self.lease_expires_at, self.due_at = owner, until, until

    def claim(self, owner: str, lease_until: datetime) -> RunHandle:
        self.lease(owner, lease_until)
        self.version += 1
        return self.handle(owner)

    def committed(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        appended: int,
        head: str | None,
        *,
        now: datetime,
        lease_until: datetime | None,
    ) -> RunHandle:
        """Take a commit in (its version checked and its records stored by the caller): the
        lease is kept while the run goes on running, else released."""
        self.state_json, self.state = state_json, RunState.from_dict(decode(state_json))
        self.version += 1
        self.seq = (self.seq or 0) + appended
        self.head = head
        keep = lease_until is not None and state.status is RunStatus.RUNNING
        if keep:
            assert lease_until is not None and handle.owner is not None
            self.lease(handle.owner, lease_until)
        else:
            self.lease_owner = self.lease_expires_at = None
            self.due_at = due_at(state, now, committing=True)
        return RunHandle(
            state, self.version, self.seq, head, state_json, handle.owner if keep else None
        )

    def release(self, owner: str | None, now: datetime) -> None:
        """Give up ``owner``'s lease (nothing if someone else holds the run now)."""
        if self.lease_owner == owner:
            self.lease_owner = self.lease_expires_at = None
            self.due_at = due_at(self.state, now)

    def renew(self, owner: str, lease_until: datetime) -> bool:
        """Extend ``owner``'s lease; whether it still held one."""
        if self.lease_owner != owner:
            return False
        self.lease_expires_at = self.due_at = lease_until
        return True

    def wake(self, now: datetime) -> None:
        """A message or event may be there for this waiting run: due now, for a worker to look
        (bumping the version, so that a holder's release keeps it due)."""
        if self.state.status is RunStatus.WAITING and not self.leased(now):
            self.due_at = now
            self.version += 1

    def wake_if_waiting_on_a_child(self, now: datetime) -> None:
        """A child of this run ended: a parent waiting on a subworkflow is due now."""
        waiting = self.state.waiting
        if (
            self.state.status is RunStatus.WAITING
            and waiting is not None
            and waiting.reason is WaitReason.SUBWORKFLOW
            and self.lease_owner is None
        ):
            self.due_at = now


Stored = TypeVar("Stored", bound=StoredRun)


def claimable(runs: Iterable[Stored], now: datetime, workflows: Served | None) -> list[Stored]:
    """The due runs (``StoredRun.is_due``), the longest due first."""
    return sorted(
        (run for run in runs if run.is_due(now, workflows)), key=lambda r: r.due_at or now
    )


def earliest_due(runs: Iterable[StoredRun], workflows: Served | None) -> datetime | None:
    """The earliest ``due_at`` of ``runs`` of one of ``workflows`` (None: any)."""
    times = [
        run.due_at
        for run in runs
        if run.due_at is not None and (workflows is None or run.served_by(workflows))
    ]
    return min(times) if times else None


def _due_by(state: RunState, time: datetime) -> bool:
    """Whether the run waits until a time at or before ``time``."""
    waiting = state.waiting
    return (
        state.status is RunStatus.WAITING
        and waiting is not None
        and waiting.reason is WaitReason.UNTIL
        and waiting.until is not None
        and waiting.until <= time
    )


def _deadline_by(state: RunState, time: datetime) -> bool:
    deadline = timeouts.deadline_of(state.waiting)
    return deadline is not None and deadline <= time


def _by_deadline(found: list[Held]) -> list[Held]:
    """Earliest deadline first (as SQL orders ``wait_until``), then the runs without one, most
    recently updated first."""
    timed = [(timeouts.deadline_of(s.state.waiting), s) for s in found]
    first = sorted(
        ((deadline, s) for deadline, s in timed if deadline is not None),
        key=lambda pair: (pair[0], pair[1].state.run_id),
    )
    rest = [s for deadline, s in timed if deadline is None]
    rest.sort(key=lambda s: s.state.updated_at, reverse=True)
    return [s for _, s in first] + rest


class HoldsState(Protocol):
    """A stored run of a store that keeps runs in memory."""

    @property
    def state(self) -> RunState: ...


Held = TypeVar("Held", bound=HoldsState)


def select_runs(
    stored_runs: Iterable[Held],
    *,
    status: RunStatus | None = None,
    workflow_id: str | None = None,
    wait_reason: WaitReason | None = None,
    wait_key: str | None = None,
    parent_run_id: str | None = None,
    due_by: datetime | None = None,
    limit: int | None,
    order: str = "updated",
    deadline_before: datetime | None = None,
    workflow_version: str | None = None,
    after: pages.RunKey | None = None,
) -> list[Held]:
    """The stored runs passing every given filter, most recently updated first, ties by run id
    (with ``due_by``: earliest ``until`` first; ``order="deadline"`` or ``deadline_before``:
    earliest deadline first, runs without one last; ``after``: the keyset page that follows a
    run, see ``core.pages``); the list filters of the in-memory stores."""
    timeouts.check_order(order)
    after = pages.check_after(after, order=order, due_by=due_by, deadline_before=deadline_before)
    found = []
    for stored in stored_runs:
        state, waiting = stored.state, stored.state.waiting
        if (
            (status is None or state.status is RunStatus(status))
            and (workflow_id is None or state.workflow_id == workflow_id)
            and (workflow_version is None or state.workflow_version == workflow_version)
            and (parent_run_id is None or state.parent_run_id == parent_run_id)
            and (wait_reason is None or (waiting and waiting.reason is WaitReason(wait_reason)))
            and (wait_key is None or (waiting and waiting.wait_key == wait_key))
            and (due_by is None or _due_by(state, due_by))
            and (deadline_before is None or _deadline_by(state, deadline_before))
            and (after is None or pages.follows(state, after))
        ):
            found.append(stored)
    if due_by is None and (order == "deadline" or deadline_before is not None):
        found = _by_deadline(found)
    elif due_by is not None:
        found.sort(key=lambda s: (s.state.waiting and s.state.waiting.until, s.state.run_id))
    else:  # as SQL orders them: updated_at descending, then run_id ascending
        found.sort(key=lambda s: s.state.run_id)
        found.sort(key=lambda s: s.state.updated_at, reverse=True)
    return found if limit is None else found[: max(limit, 0)]


def _states(stored_runs: Iterable[StoredRun]) -> list[RunState]:
    return [stored.handle().state for stored in stored_runs]


class InMemoryRunStore:
    """Run states kept in this process's memory (the original's ``RunStore`` and
    ``QueryableRunStore``); a ``Runtime`` made with it keeps its runs here.

    ``save`` writes a state directly, outside any step: it is meant for tools and tests (a
    runtime driving the run then finds a newer version and drops the run).
    """

    def __init__(self) -> None:
        self._runs: dict[str, StoredRun] = {}

    async def save(self, run: RunState) -> None:
        """Insert or replace the run's state."""
        state_json = encode(run.to_dict(), root="run")
        copy = RunState.from_dict(decode(state_json))
        stored = self._runs.get(run.run_id)
        if stored is None:
            self._runs[run.run_id] = StoredRun(state_json, copy, 0, due_at(copy, utc_now()))
            return
        stored.state_json, stored.state = state_json, copy
        stored.version += 1
        if stored.lease_owner is None:
            stored.due_at = due_at(copy, utc_now())

    async def load(self, run_id: str) -> RunState | None:
        """The run's state, or None when unknown."""
        stored = self._runs.get(run_id)
        return None if stored is None else RunState.from_dict(decode(stored.state_json))

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[RunState]:
        """Runs passing every given filter, most recently updated first."""
        return _states(
            select_runs(
                self._runs.values(),
                status=status,
                wait_reason=wait_reason,
                workflow_id=workflow_id,
                limit=limit,
            )
        )

    async def list_due_wait_until(
        self, *, now_iso: str | datetime, limit: int = 100
    ) -> builtins.list[RunState]:
        """Runs waiting until a time at or before ``now_iso``, earliest first."""
        return _states(select_runs(self._runs.values(), due_by=to_utc(now_iso), limit=limit))

    async def list_children(
        self, *, parent_run_id: str, status: RunStatus | None = None
    ) -> builtins.list[RunState]:
        """The runs whose ``parent_run_id`` is this one (oldest first)."""
        children = _states(
            select_runs(self._runs.values(), parent_run_id=parent_run_id, status=status, limit=None)
        )
        return sorted(children, key=lambda state: (state.created_at, state.run_id))


class InMemoryLedgerStore:
    """Ledger records kept in this process's memory (the original's ``LedgerStore``).

    A runtime appends a step's records together with its state, hash-chained. ``append``
    adds a record as it is (``HashChainedLedgerStore`` chains it), outside any step.
    """

    def __init__(self) -> None:
        self._records: dict[str, builtins.list[str]] = {}

    async def append(self, record: StepRecord) -> None:
        """Add ``record`` at the end of its run's ledger."""
        text = encode(record.to_dict(), root="record")
        self._records.setdefault(record.run_id, []).append(text)

    async def list(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """The run's records, oldest first (empty for an unknown run)."""
        return [decode(text) for text in self._records.get(run_id, [])]


class InMemorySnapshotStore:
    """Snapshots kept in this process's memory (as JSON text: what is read back is a copy)."""

    def __init__(self) -> None:
        self._snapshots: dict[str, str] = {}

    async def save(self, snapshot: Snapshot) -> None:
        """Insert or replace the snapshot with this id (see ``SnapshotStore.save``)."""
        encode(snapshot.run_state, root="run_state")  # names the bad key, as SQL stores do
        previous = self._snapshots.get(snapshot.snapshot_id)
        if previous is not None:
            snapshot.created_at = Snapshot.from_dict(decode(previous)).created_at
        snapshot.updated_at = max(utc_now(), snapshot.created_at)
        self._snapshots[snapshot.snapshot_id] = canonical_json(snapshot.to_dict())

    async def load(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None when unknown."""
        text = self._snapshots.get(snapshot_id)
        return None if text is None else Snapshot.from_dict(decode(text))

    async def delete(self, snapshot_id: str) -> bool:
        """Delete it; whether it existed."""
        return self._snapshots.pop(snapshot_id, None) is not None

    async def list(
        self,
        *,
        run_id: str | None = None,
        tag: str | None = None,
        query: str | None = None,
        limit: int | None = 100,
        after: tuple[datetime, str] | None = None,
    ) -> builtins.list[Snapshot]:
        """Snapshots passing every filter, newest first (see ``SnapshotStore.list``)."""
        found = [
            snapshot
            for snapshot in (Snapshot.from_dict(decode(t)) for t in self._snapshots.values())
            if snapshot.matches(run_id=run_id, tag=tag, query=query)
            and (after is None or (snapshot.created_at, snapshot.snapshot_id) < after)
        ]
        found.sort(key=lambda s: (s.created_at, s.snapshot_id), reverse=True)
        return found if limit is None else found[: max(limit, 0)]


class InMemoryArtifactStore(ArtifactStore):
    """Artifacts kept in this process's memory (see ``core.ports.ArtifactStore``).

    What is read back is a copy of the metadata (the content is immutable ``bytes``), so a
    caller's edit never changes what is stored.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, Artifact] = {}

    async def store(
        self,
        content: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        """Store ``content`` (replacing what the id held); returns its metadata."""
        content = check_content(content)
        if artifact_id is None:
            artifact_id = compute_artifact_id(content)
        meta = new_metadata(
            check_artifact_id(artifact_id),
            content,
            check_content_type(content_type),
            check_run_id(run_id),
            check_tags(tags),
        )
        self._blobs[artifact_id] = Artifact(meta, content)
        return meta.copy()

    async def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> str:
        """Store ``data`` unless already stored; returns its id (its whole SHA-256)."""
        check_content_type(content_type)
        artifact_id = content_sha256(data)
        if artifact_id not in self._blobs:
            await self.store(data, content_type=content_type, artifact_id=artifact_id)
        return artifact_id

    async def load(self, artifact_id: str) -> Artifact | None:
        """The artifact, or None when unknown."""
        found = self._blobs.get(check_artifact_id(artifact_id))
        return None if found is None else Artifact(found.metadata.copy(), found.content)

    async def get(self, artifact_id: str) -> bytes:
        """The content; ``ArtifactNotFoundError`` when unknown."""
        found = self._blobs.get(check_artifact_id(artifact_id))
        if found is None:
            raise ArtifactNotFoundError(artifact_id)
        return found.content

    async def get_metadata(self, artifact_id: str) -> ArtifactMetadata | None:
        """The metadata, or None when unknown."""
        found = self._blobs.get(check_artifact_id(artifact_id))
        return None if found is None else found.metadata.copy()

    async def exists(self, artifact_id: str) -> bool:
        """Whether it is stored."""
        return check_artifact_id(artifact_id) in self._blobs

    async def delete(self, artifact_id: str) -> bool:
        """Delete it; whether it existed."""
        return self._blobs.pop(check_artifact_id(artifact_id), None) is not None

    async def list_by_run(self, run_id: str) -> list[ArtifactMetadata]:
        """The run's artifacts, oldest first."""
        return oldest_first(
            a.metadata.copy() for a in self._blobs.values() if a.metadata.run_id == run_id
        )

    async def list_all(self, *, limit: int | None = 1000) -> list[ArtifactMetadata]:
        """Every artifact, newest first, at most ``limit``."""
        return [m.copy() for m in newest_first((a.metadata for a in self._blobs.values()), limit)]


class MemoryStore(MemoryEvents, MemoryWorkers, MemoryLimits, Purging):
    """The ``Store`` interface over an ``InMemoryRunStore`` and an ``InMemoryLedgerStore``,
    with buffered events and messages (``core.events.MemoryEvents``).

    No method awaits between its check and its write, so on one event loop each is atomic.
    """

    def __init__(
        self,
        run_store: InMemoryRunStore | None = None,
        ledger_store: InMemoryLedgerStore | None = None,
        *,
        snapshot_store: InMemorySnapshotStore | None = None,
        artifact_store: InMemoryArtifactStore | None = None,
    ) -> None:
        self.run_store = run_store if run_store is not None else InMemoryRunStore()
        self.ledger_store = ledger_store if ledger_store is not None else InMemoryLedgerStore()
        #: Snapshots of the runs (``Runtime.restore_snapshot`` / ``fork_snapshot`` use them).
        self.snapshots = snapshot_store if snapshot_store is not None else InMemorySnapshotStore()
        #: Artifacts (``core.ports.ArtifactStore``).
        self.artifacts = artifact_store if artifact_store is not None else InMemoryArtifactStore()
        #: Cron schedules (``core.schedules``).
        self.schedules = InMemoryScheduleStore()
        #: Buffered events and messages (``Runtime.emit_event`` / ``send``).
        self.mailbox = Mailbox()

    async def _run_states(self) -> Iterable[RunState]:
        return [stored.state for stored in self.run_store._runs.values()]

    def _purge_ops(self) -> PurgeOps:
        from .memory_retention import MemoryPurgeOps  # it needs this module's classes

        return MemoryPurgeOps(self)

    def _get(self, run_id: str) -> StoredRun:
        stored = self.run_store._runs.get(run_id)
        if stored is None:
            raise RunNotFoundError(run_id)
        return stored

    async def _stored(self, run_id: str) -> StoredRun:
        return self._get(run_id)

    def _all_stored(self) -> Iterable[StoredRun]:
        return list(self.run_store._runs.values())

    async def create_run(
        self,
        state: RunState,
        state_json: str,
        *,
        lease: tuple[str, datetime] | None = None,
    ) -> RunHandle:
        runs = self.run_store._runs
        if state.run_id in runs:
            raise RunExistsError(state.run_id)
        copy = RunState.from_dict(decode(state_json))
        stored = StoredRun(state_json, copy, 0, due_at(copy, state.created_at))
        if lease is not None:
            stored.lease(*lease)
        runs[state.run_id] = stored
        self.ledger_store._records[state.run_id] = []
        return RunHandle(
            state=state,
            version=0,
            seq=0,
            head=None,
            state_json=state_json,
            owner=None if lease is None else lease[0],
        )

    async def load_run(self, run_id: str) -> RunHandle:
        return self._get(run_id).handle()

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> RunHandle:
        stored = self._get(run_id)
        if stored.leased(now):
            raise RunLeasedError(run_id, stored.lease_owner, stored.lease_expires_at)
        return stored.claim(owner, lease_until)

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None = None,
    ) -> list[RunHandle]:
        due = claimable(self.run_store._runs.values(), now, workflows)
        return [stored.claim(owner, lease_until) for stored in due[:limit]]

    async def next_due_at(self, workflows: Served | None = None) -> datetime | None:
        return earliest_due(self.run_store._runs.values(), workflows)

    async def commit_step(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        run_id = state.run_id
        stored = self._get(run_id)
        if stored.version != handle.version:
            raise ConcurrentUpdateError(run_id, handle.version)
        dicts, head = chain_records(records, handle.head, max_record_bytes)
        self.ledger_store._records[run_id].extend(canonical_json(d) for d in dicts)
        committed = stored.committed(
            handle, state, state_json, len(dicts), head, now=now, lease_until=lease_until
        )
        if state.status.is_terminal and state.parent_run_id:
            parent = self.run_store._runs.get(state.parent_run_id)
            if parent is not None:
                parent.wake_if_waiting_on_a_child(now)
        return committed

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Nothing to hear: every writer of a memory store is in this process, and the runtime
        tells its due listeners itself."""
        return _stop_nothing

    async def release(self, handle: RunHandle, *, now: datetime) -> None:
        stored = self.run_store._runs.get(handle.state.run_id)
        if stored is not None:
            stored.release(handle.owner, now)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        runs = self.run_store._runs
        return [r for r in run_ids if r in runs and runs[r].renew(owner, lease_until)]

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        self._get(run_id)
        return await self.ledger_store.list(run_id)

    async def iter_ledger(self, run_id: str) -> AsyncGenerator[dict[str, Any], None]:
        async with contextlib.aclosing(self.scan_ledgers(run_id)) as items:
            async for item in items:
                if isinstance(item, dict):
                    yield item

    async def scan_ledgers(
        self, run_id: str | None = None
    ) -> AsyncGenerator[LedgerHead | dict[str, Any], None]:
        run_ids = [run_id] if run_id is not None else sorted(self.run_store._runs)
        handed_out = 0
        for current in run_ids:
            stored = self.run_store._runs.get(current)
            if stored is None:
                if run_id is not None:
                    raise RunNotFoundError(run_id)
                continue
            # What the run said when we got to it: records appended meanwhile are not ours.
            count, head = stored.seq or 0, stored.head
            yield LedgerHead(current, count, head)
            texts = self.ledger_store._records.get(current, [])
            for index in range(min(count, len(texts))):
                yield decode(texts[index])
                handed_out += 1
                if handed_out % _SCAN_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a long ledger must not starve the event loop

    async def ledger_tail(self, run_id: str) -> dict[str, Any] | None:
        self._get(run_id)
        texts = self.ledger_store._records.get(run_id) or []
        return decode(texts[-1]) if texts else None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow_id: str | None = None,
        wait_reason: WaitReason | None = None,
        wait_key: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        due_by: datetime | None = None,
        order: str = "updated",
        deadline_before: datetime | None = None,
        workflow_version: str | None = None,
        after: pages.RunKey | None = None,
    ) -> list[RunState]:
        check_limit(limit)
        return _states(
            select_runs(
                self.run_store._runs.values(),
                status=status,
                workflow_id=workflow_id,
                wait_reason=wait_reason,
                wait_key=wait_key,
                parent_run_id=parent_run_id,
                due_by=due_by,
                limit=limit,
                order=order,
                deadline_before=deadline_before,
                workflow_version=workflow_version,
                after=after,
            )
        )

    async def find_effect(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        for text in reversed(self.ledger_store._records.get(run_id, [])):
            record: dict[str, Any] = decode(text)
            if (
                record.get("idempotency_key") == idempotency_key
                and record.get("status") == StepStatus.COMPLETED.value
            ):
                return record
        return None

    async def close(self) -> None:
        return None
