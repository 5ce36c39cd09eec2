"""``PairedStore``: the ``Store`` port over any run store + ledger store pair (no I/O of its own).

The original AbstractRuntime 0.2 stored runs in two parts: a ``RunStore`` (``save``/``load``)
and an append-only ``LedgerStore`` (``append``/``list``). ``Runtime(run_store=...,
ledger_store=...)`` keeps accepting such a pair, including a user's own classes whose methods are
plain ``def`` or ``async def`` (what they return is awaited only when awaitable).

What a database would hold beside the runs - versions, leases, due times - lives in this
adapter's memory, with exactly ``MemoryStore``'s rules (optimistic version check, leases,
``due_at``, a waiting parent made due when its child ends). Hence the limit: **one process
drives a pair at a time**. Versions start at 0 when a run is first read, so two processes each
holding an adapter over the same files would not see each other's claims.

A step's commit appends its records to the ledger store (chained here with
``core.ledger.chain_records``: a ledger store that chains itself, such as
``HashChainedLedgerStore``, computes the same hashes, which is checked), then saves the state.
A crash between the two leaves records the run does not reflect, as the original did;
``storage.files`` has a faster, crash-safe path for its own file stores.

Which runs exist: the runs this process created or loaded by id, and - when the run store is a
``QueryableRunStore`` - every run it lists, read once when a scheduler first asks what is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import (
    ConcurrentUpdateError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
)
from .events import Mailbox, MemoryEvents
from .kernel import check_limit, due_at, encode_state
from .ledger import chain_records
from .memory import (
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
    MemoryStore,
    StoredRun,
    claimable,
    earliest_due,
    select_runs,
)
from .models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from .ports import ArtifactStore, LedgerHead, RunHandle, Served, SnapshotStore, Store
from .schedules import InMemoryScheduleStore
from .serde import decode
from .throttle import MemoryLimits
from .workers import MemoryWorkers

#: ``limit`` passed to a queryable run store's ``list_runs`` to read every run.
_ALL_RUNS = 1_000_000_000


async def maybe_await(value: Any) -> Any:
    """``value``, awaited when it is awaitable (a user's store may be sync or async)."""
    return await value if inspect.isawaitable(value) else value


async def _stop_nothing() -> None:
    return None


@dataclass
class PairedRun(StoredRun):
    """What the adapter holds about one run (a subclass may keep more in ``extra``); ``seq``
    and ``head`` are None until the run's ledger is read."""

    #: idempotency key -> newest completed record (built on first ``find_effect``).
    effects: dict[str, dict[str, Any]] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    extra: dict[str, Any] = field(default_factory=dict)


def _copy(state_json: str) -> RunState:
    return RunState.from_dict(decode(state_json))


class PairedStore(MemoryEvents, MemoryWorkers, MemoryLimits):
    """The ``Store`` interface over a run store and a ledger store (see the module docstring).

    Buffered events and messages live in this process's memory (``core.events.MemoryEvents``),
    like the versions and leases: they do not outlive the process.

    Args:
        run_store: Has ``save(run)`` and ``load(run_id)`` (a ``RunStore``, or any object with
            them, sync or async); ``list_runs(...)`` too makes it discoverable.
        ledger_store: Has ``append(record)`` and ``list(run_id)`` (a ``LedgerStore``).
        snapshot_store: ``store.snapshots`` (default: in memory).
        artifact_store: ``store.artifacts`` (default: in memory).
    """

    def __init__(
        self,
        run_store: Any,
        ledger_store: Any,
        *,
        snapshot_store: SnapshotStore | None = None,
        artifact_store: ArtifactStore | None = None,
    ) -> None:
        self.run_store = run_store
        self.ledger_store = ledger_store
        self.snapshots: SnapshotStore = (
            snapshot_store if snapshot_store is not None else InMemorySnapshotStore()
        )
        self.artifacts: ArtifactStore = (
            artifact_store if artifact_store is not None else InMemoryArtifactStore()
        )
        #: Cron schedules, in this process's memory: they do not outlive it (an app declares
        #: its schedules at startup), and one process drives a pair anyway.
        self.schedules = InMemoryScheduleStore()
        self._runs: dict[str, PairedRun] = {}
        #: Buffered events and messages (``Runtime.emit_event`` / ``send``), in memory.
        self.mailbox = Mailbox()
        self._loading: dict[str, asyncio.Lock] = {}
        self._discovered = False

    # -- I/O hooks (a subclass with a faster path overrides these) ------------------------------

    async def _read(self, run_id: str) -> tuple[RunState, dict[str, Any]] | None:
        """The stored state of a run and what the subclass keeps with it, or None."""
        state = await maybe_await(self.run_store.load(run_id))
        return None if state is None else (state, {})

    async def _read_all(self) -> list[tuple[RunState, dict[str, Any]]] | None:
        """Every stored run, or None when the run store cannot list them."""
        list_runs = getattr(self.run_store, "list_runs", None)
        if list_runs is None:
            return None
        try:
            states = await maybe_await(list_runs(limit=_ALL_RUNS))
        except TypeError:  # a list_runs of another shape: we cannot discover runs
            return None
        return [(state, {}) for state in states]

    async def _read_position(self, run: PairedRun) -> tuple[int, str | None]:
        """The number of ledger records of a run and the last one's ``record_hash``."""
        records = await maybe_await(self.ledger_store.list(run.state.run_id))
        return len(records), (records[-1].get("record_hash") if records else None)

    async def _read_ledger(self, run: PairedRun) -> list[dict[str, Any]]:
        """The run's committed records, oldest first."""
        records = list(await maybe_await(self.ledger_store.list(run.state.run_id)))
        return records if run.seq is None else records[: run.seq]

    async def _write_new(self, state: RunState, run: PairedRun) -> None:
        await maybe_await(self.run_store.save(state))

    async def _write_step(
        self,
        run: PairedRun,
        state: RunState,
        records: Sequence[StepRecord],
        dicts: Sequence[dict[str, Any]],
    ) -> None:
        """Store a step: its records first, then the state (the original's order)."""
        for data in dicts:
            copy = StepRecord.from_dict(data)
            await maybe_await(self.ledger_store.append(copy))
            if copy.record_hash != data["record_hash"]:
                raise StoreError(
                    f"the ledger store re-chained a record of run {state.run_id!r} onto another "
                    f"head (expected {data['record_hash']}, it made {copy.record_hash}); is "
                    "another process writing the same ledger? One process drives a pair of "
                    "stores at a time."
                )
        await maybe_await(self.run_store.save(state))

    # -- runs in memory -----------------------------------------------------------------------

    def _remember(self, state: RunState, extra: dict[str, Any]) -> PairedRun:
        """A run read from the stores: due as if just committed (a running run is due now; a
        wait on a subworkflow is due once, for a check of its child)."""
        run = PairedRun(
            state=state,
            state_json=encode_state(state),
            version=0,
            due_at=due_at(state, state.updated_at, committing=True),
            seq=None,
            extra=extra,
        )
        self._runs[state.run_id] = run
        return run

    async def _get(self, run_id: str) -> PairedRun:
        run = self._runs.get(run_id)
        if run is not None:
            return run
        lock = self._loading.setdefault(run_id, asyncio.Lock())
        async with lock:
            run = self._runs.get(run_id)
            if run is None:
                found = await self._read(run_id)
                if found is None:
                    raise RunNotFoundError(run_id)
                run = self._runs.get(run_id) or self._remember(*found)
        self._loading.pop(run_id, None)
        return run

    async def _stored(self, run_id: str) -> PairedRun:
        return await self._get(run_id)

    def _all_stored(self) -> list[PairedRun]:
        return self._known()

    async def _positioned(self, run_id: str) -> PairedRun:
        run = await self._get(run_id)
        if run.seq is None:
            seq, head = await self._read_position(run)
            if run.seq is None:
                run.seq, run.head = seq, head
        return run

    async def _discover(self) -> None:
        if self._discovered:
            return
        found = await self._read_all()
        self._discovered = True
        for state, extra in found or ():
            if state.run_id not in self._runs:
                self._remember(state, extra)

    def _known(self) -> list[PairedRun]:
        return list(self._runs.values())

    async def _run_states(self) -> list[RunState]:
        await self._discover()
        return [run.state for run in self._known()]

    # -- the Store port -----------------------------------------------------------------------

    async def create_run(
        self,
        state: RunState,
        state_json: str,
        *,
        lease: tuple[str, datetime] | None = None,
    ) -> RunHandle:
        run_id = state.run_id
        lock = self._loading.setdefault(run_id, asyncio.Lock())
        async with lock:
            if run_id in self._runs or await self._read(run_id) is not None:
                raise RunExistsError(run_id)
            copy = _copy(state_json)
            run = PairedRun(state_json, copy, 0, due_at(copy, state.created_at))
            await self._write_new(copy, run)
            if lease is not None:
                run.lease(*lease)
            self._runs[run_id] = run
        self._loading.pop(run_id, None)
        return RunHandle(
            state=state,
            version=0,
            seq=0,
            head=None,
            state_json=state_json,
            owner=None if lease is None else lease[0],
        )

    async def load_run(self, run_id: str) -> RunHandle:
        return (await self._positioned(run_id)).handle()

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> RunHandle:
        run = await self._positioned(run_id)
        async with run.lock:  # a commit in flight lands first, as in one transaction
            if run.leased(now):
                raise RunLeasedError(run_id, run.lease_owner, run.lease_expires_at)
            return run.claim(owner, lease_until)

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflows: Served | None = None,
    ) -> list[RunHandle]:
        await self._discover()
        claimed: list[RunHandle] = []
        for run in claimable(self._known(), now, workflows):
            if len(claimed) >= limit:
                break
            if run.lock.locked():  # a commit in flight
                continue
            if run.seq is None:
                await self._positioned(run.state.run_id)
            if run.is_due(now, workflows) and not run.lock.locked():  # still, after the read
                claimed.append(run.claim(owner, lease_until))
        return claimed

    async def next_due_at(self, workflows: Served | None = None) -> datetime | None:
        await self._discover()
        return earliest_due(self._known(), workflows)

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
        run = await self._positioned(run_id)
        async with run.lock:
            if run.version != handle.version:
                raise ConcurrentUpdateError(run_id, handle.version)
            dicts, head = chain_records(records, handle.head, max_record_bytes)
            await self._write_step(run, _copy(state_json), records, dicts)
            if run.effects is not None:
                self._index_effects(run.effects, dicts)
            committed = run.committed(
                handle, state, state_json, len(dicts), head, now=now, lease_until=lease_until
            )
            if state.status.is_terminal and state.parent_run_id:
                # A parent not in memory yet is due anyway when read (see ``_remember``).
                parent = self._runs.get(state.parent_run_id)
                if parent is not None:
                    parent.wake_if_waiting_on_a_child(now)
            return committed

    async def release(self, handle: RunHandle, *, now: datetime) -> None:
        run = self._runs.get(handle.state.run_id)
        if run is not None:
            run.release(handle.owner, now)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        runs = self._runs
        return [r for r in run_ids if r in runs and runs[r].renew(owner, lease_until)]

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        return await self._read_ledger(await self._positioned(run_id))

    async def iter_ledger(self, run_id: str) -> AsyncGenerator[dict[str, Any], None]:
        async with contextlib.aclosing(self.scan_ledgers(run_id)) as items:
            async for item in items:
                if isinstance(item, dict):
                    yield item

    async def scan_ledgers(
        self, run_id: str | None = None
    ) -> AsyncGenerator[LedgerHead | dict[str, Any], None]:
        if run_id is None:
            await self._discover()
        run_ids = [run_id] if run_id is not None else sorted(self._runs)
        for current in run_ids:
            try:
                run = await self._positioned(current)
            except RunNotFoundError:
                if run_id is not None:
                    raise
                continue
            count, head = run.seq or 0, run.head
            yield LedgerHead(current, count, head)
            for record in (await self._read_ledger(run))[:count]:
                yield record

    async def ledger_tail(self, run_id: str) -> dict[str, Any] | None:
        records = await self.get_ledger(run_id)
        return records[-1] if records else None

    @staticmethod
    def _index_effects(index: dict[str, dict[str, Any]], records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            key = record.get("idempotency_key")
            if key is not None and record.get("status") == StepStatus.COMPLETED.value:
                index[key] = record

    async def find_effect(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        run = await self._positioned(run_id)
        if run.effects is None:
            effects: dict[str, dict[str, Any]] = {}
            self._index_effects(effects, await self._read_ledger(run))
            if run.effects is None:
                run.effects = effects
        return run.effects.get(idempotency_key)

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
        after: tuple[datetime, str] | None = None,
    ) -> list[RunState]:
        check_limit(limit)
        await self._discover()
        found = select_runs(
            self._known(),
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
        return [_copy(r.state_json) for r in found]

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Nothing to hear: one process drives a pair, and the runtime tells its own due
        listeners itself."""
        return _stop_nothing

    async def close(self) -> None:
        return None


def _chains(ledger_store: Any) -> bool:
    """A ledger decorator that hash-chains what it appends (``HashChainedLedgerStore``)."""
    return bool(getattr(type(ledger_store), "chains_records", False))


def store_for_pair(
    run_store: Any = None, ledger_store: Any = None, *, artifact_store: Any = None
) -> Store:
    """The ``Store`` for ``Runtime(run_store=..., ledger_store=...)``.

    Both None or the in-memory classes (the ledger possibly in a ``HashChainedLedgerStore``):
    a ``MemoryStore``. A run store offering
    ``paired_store(ledger_store)`` (the file stores do) may supply a faster adapter; otherwise a
    ``PairedStore``. A missing half defaults to the in-memory one.
    """
    # The original's common pair: HashChainedLedgerStore(InMemoryLedgerStore()). A memory store
    # chains every record itself, with the same hashes.
    inner = getattr(ledger_store, "inner", None) if _chains(ledger_store) else None
    memory_ledger = inner if isinstance(inner, InMemoryLedgerStore) else ledger_store
    memory = (run_store is None or isinstance(run_store, InMemoryRunStore)) and (
        memory_ledger is None or isinstance(memory_ledger, InMemoryLedgerStore)
    )
    if memory:
        return MemoryStore(run_store, memory_ledger, artifact_store=artifact_store)
    if run_store is None:
        run_store = InMemoryRunStore()
    if ledger_store is None:
        ledger_store = InMemoryLedgerStore()
    special = getattr(run_store, "paired_store", None)
    if callable(special):
        store = special(ledger_store, artifact_store=artifact_store)
        if store is not None:
            return store  # type: ignore[no-any-return]
    return PairedStore(run_store, ledger_store, artifact_store=artifact_store)
