"""The ports of the core: the one storage interface the runtime and the scheduler talk to.

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

The original AbstractRuntime 0.2 split storage in two: a ``RunStore`` (save and load a run's
state) and an append-only ``LedgerStore``, with ``QueryableRunStore`` for the queries a scheduler
needs. Those interfaces are here too, made async; ``Runtime(run_store=..., ledger_store=...)``
drives any such pair through ``core.paired.PairedStore``, which implements ``Store`` over it.

Next to runs, a store holds snapshots (``store.snapshots``, a ``SnapshotStore``) and
artifacts (``store.artifacts``, an ``ArtifactStore``), and streams ledgers for
verification (``iter_ledger``, ``scan_ledgers``) without loading them whole.
"""

from __future__ import annotations

import builtins
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ..errors import ArtifactNotFoundError
from .artifacts import (
    DEFAULT_CONTENT_TYPE,
    Artifact,
    ArtifactInfo,
    ArtifactMetadata,
    content_sha256,
    matches,
    newest_first,
)
from .models import RunState, RunStatus, StepRecord, WaitReason
from .schedules import ScheduleStore
from .snapshot import Snapshot
from .workers import VersionCount, WorkerInfo

#: The ``(workflow_id, version)`` pairs a worker drives (``WorkflowRegistry.served``): its
#: claims take only the runs of these.
Served = Sequence[tuple[str, str]]


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


@dataclass(frozen=True)
class LedgerHead:
    """What a run's row says about its ledger, to catch a ledger cut short at its end (which
    the hash chain alone cannot see)."""

    run_id: str
    #: Number of records committed for the run.
    count: int
    #: ``record_hash`` of the last one (None for an empty ledger).
    head: str | None


class SnapshotStore(Protocol):
    """Named, tagged copies of run states (``store.snapshots``)."""

    async def save(self, snapshot: Snapshot) -> None:
        """Insert or replace the snapshot with this id.

        Sets ``snapshot.updated_at`` to now; a replaced snapshot keeps its first ``created_at``
        (``snapshot.created_at`` is set to it).
        """
        ...

    async def load(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None when no snapshot has this id."""
        ...

    async def delete(self, snapshot_id: str) -> bool:
        """Delete it; whether it existed."""
        ...

    async def list(
        self,
        *,
        run_id: str | None = None,
        tag: str | None = None,
        query: str | None = None,
        limit: int | None = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[Snapshot]:
        """Snapshots passing every given filter, newest (``created_at``) first.

        ``after``: the next page, after the ``(created_at, snapshot_id)`` of the last
        snapshot of the previous one (a keyset cursor: pages neither skip nor repeat one).

        ``tag`` matches case-insensitively; ``query`` is a case-insensitive substring of the name
        or the description, taken literally (``%``, ``_`` and quotes are plain characters).
        ``limit=None``: no limit.
        """
        ...


@runtime_checkable
class ArtifactStore(Protocol):
    """Artifacts (``store.artifacts``): the original AbstractRuntime's ``ArtifactStore``, async.

    A store implements the seven abstract methods (``store``, ``load``, ``get_metadata``,
    ``exists``, ``delete``, ``list_by_run``, ``list_all``); the others have default bodies made
    of them, which a subclass inherits (``class MyStore(ArtifactStore)``) and a backend overrides
    where it can do better (the SQL store filters in SQL). ``isinstance(x, ArtifactStore)``
    works, as it did on the original's abstract class. Ids: see ``core.artifacts``. Every
    method refuses a malformed id with ``InvalidArgumentError`` (a ``ValueError``).
    """

    @abstractmethod
    async def store(
        self,
        content: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        """Store ``content`` and return its metadata.

        The id is ``artifact_id``, else ``compute_artifact_id(content)`` (the original's
        content address). An artifact already stored under the id is replaced, metadata
        included (``created_at`` becomes now), as in the original.
        """
        ...

    @abstractmethod
    async def load(self, artifact_id: str) -> Artifact | None:
        """The artifact (content and metadata), or None when unknown."""
        ...

    @abstractmethod
    async def get_metadata(self, artifact_id: str) -> ArtifactMetadata | None:
        """The metadata without the content, or None when unknown."""
        ...

    @abstractmethod
    async def exists(self, artifact_id: str) -> bool: ...

    @abstractmethod
    async def delete(self, artifact_id: str) -> bool:
        """Delete it; whether it existed. References to it in runs are not checked."""
        ...

    @abstractmethod
    async def list_by_run(self, run_id: str) -> list[ArtifactMetadata]:
        """The run's artifacts, oldest first."""
        ...

    @abstractmethod
    async def list_all(self, *, limit: int | None = 1000) -> list[ArtifactMetadata]:
        """Every artifact, newest first, at most ``limit`` (None: no limit)."""
        ...

    async def delete_by_run(self, run_id: str) -> int:
        """Delete the run's artifacts; how many were deleted."""
        deleted = 0
        for meta in await self.list_by_run(run_id):
            if await self.delete(meta.artifact_id):
                deleted += 1
        return deleted

    async def search(
        self,
        *,
        run_id: str | None = None,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = 1000,
    ) -> list[ArtifactMetadata]:
        """Artifacts passing every given filter, newest first, at most ``limit``.

        A metadata filter, not semantic search: ``content_type`` is equal, every one of ``tags``
        is there with an equal value (case-sensitive). Unlike the original, which without a
        ``run_id`` filtered only the newest ``limit`` artifacts, the limit applies after the
        filter.
        """
        if run_id is not None:
            candidates = await self.list_by_run(run_id)
        else:
            candidates = await self.list_all(limit=None)
        found = [m for m in candidates if matches(m, content_type=content_type, tags=tags)]
        return newest_first(found, limit)

    async def store_text(
        self,
        text: str,
        *,
        content_type: str = "text/plain",
        encoding: str = "utf-8",
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        """Store text, encoded."""
        return await self.store(
            text.encode(encoding),
            content_type=content_type,
            run_id=run_id,
            tags=tags,
            artifact_id=artifact_id,
        )

    async def store_json(
        self,
        data: Any,
        *,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        """Store JSON-serialisable data as compact UTF-8 JSON, as the original did (so the same
        data gets the same id)."""
        content = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return await self.store(
            content,
            content_type="application/json",
            run_id=run_id,
            tags=tags,
            artifact_id=artifact_id,
        )

    async def load_text(self, artifact_id: str, encoding: str = "utf-8") -> str | None:
        """The content decoded as text, or None when unknown."""
        artifact = await self.load(artifact_id)
        return None if artifact is None else artifact.as_text(encoding)

    async def load_json(self, artifact_id: str) -> Any | None:
        """The content parsed as JSON, or None when unknown."""
        artifact = await self.load(artifact_id)
        return None if artifact is None else artifact.as_json()

    # -- ours: content-addressed bytes --------------------------------------------------------

    async def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> str:
        """Store ``data`` unless it is already stored; returns its id, its whole SHA-256.

        The first ``content_type`` wins; the SQL store also keeps one copy when concurrent puts
        of the same bytes race.
        """
        artifact_id = content_sha256(data)
        if not await self.exists(artifact_id):
            await self.store(data, content_type=content_type, artifact_id=artifact_id)
        return artifact_id

    async def get(self, artifact_id: str) -> bytes:
        """The content; ``ArtifactNotFoundError`` (a ``KeyError``) when unknown."""
        artifact = await self.load(artifact_id)
        if artifact is None:
            raise ArtifactNotFoundError(artifact_id)
        return artifact.content

    async def info(self, artifact_id: str) -> ArtifactInfo | None:
        """Content type, size and creation time, or None when unknown."""
        meta = await self.get_metadata(artifact_id)
        return None if meta is None else meta.info()


@runtime_checkable
class Store(Protocol):
    """A storage backend (in-memory or SQL)."""

    @property
    def snapshots(self) -> SnapshotStore:
        """The backend's snapshots."""
        ...

    @property
    def artifacts(self) -> ArtifactStore:
        """The backend's artifacts."""
        ...

    @property
    def schedules(self) -> ScheduleStore:
        """The backend's cron schedules (``core.schedules``)."""
        ...

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
        workflows: Served | None = None,
    ) -> list[RunHandle]:
        """Claim up to ``limit`` runs that are due and unclaimed (oldest due first), of the
        ``(workflow_id, version)`` pairs ``workflows`` (None: of any workflow)."""
        ...

    async def next_due_at(self, workflows: Served | None = None) -> datetime | None:
        """The earliest ``due_at`` of the runs of ``workflows`` (see ``claim_due``); None when
        no run will ever be due by itself."""
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
        max_record_bytes: int | None = None,
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

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> list[str]:
        """Extend ``owner``'s leases on ``run_ids`` (leases lost meanwhile stay lost); returns
        the ids renewed. A run whose row another transaction holds locked right now (its own
        commit in flight, say) is skipped rather than waited for, so that one blocked row
        cannot hold the other leases back: the next beat renews it."""
        ...

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        """The run's ledger records, oldest first."""
        ...

    def iter_ledger(self, run_id: str) -> AsyncGenerator[dict[str, Any], None]:
        """The run's ledger records, oldest first, streamed in constant memory.

        ``RunNotFoundError`` (when iterated) for an unknown run.
        """
        ...

    def scan_ledgers(
        self, run_id: str | None = None
    ) -> AsyncGenerator[LedgerHead | dict[str, Any], None]:
        """Every run's ``LedgerHead`` followed by its records (oldest first), run after run, in
        constant memory and from one consistent read; only ``run_id`` when given (then
        ``RunNotFoundError`` for an unknown run)."""
        ...

    async def ledger_tail(self, run_id: str) -> dict[str, Any] | None:
        """The run's newest ledger record (None for an empty ledger); ``RunNotFoundError``."""
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
        due_by: datetime | None = None,
        order: str = "updated",
        deadline_before: datetime | None = None,
        workflow_version: str | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[RunState]:
        """Runs matching every given filter, most recently updated first (ties by run id).

        ``after``: a keyset cursor, the ``(updated_at, run_id)`` of the last run of the page
        before (``core.pages.key_of``); only the runs that follow it in this order. Only with
        the default order (``InvalidArgumentError`` otherwise).

        ``workflow_version``: only the runs on that version of their workflow.

        ``due_by``: only runs waiting until a time at or before it (``wait_until``), earliest
        first.

        ``order="deadline"``: earliest deadline first (a wait's ``until`` or ``timeout_at``),
        then the runs without one, most recently updated first. ``deadline_before``: only the
        runs whose deadline is at or before it (earliest first, whatever ``order``).
        """
        ...

    async def announce_worker(
        self, owner: str, serves: Served, *, now: datetime, expires_at: datetime
    ) -> None:
        """Record (or refresh) ``owner`` as a live worker of the ``serves`` versions until
        ``expires_at`` (``core/workers.py``)."""
        ...

    async def forget_worker(self, owner: str) -> None:
        """Remove ``owner`` from the live workers (it stopped)."""
        ...

    async def list_workers(self) -> list[WorkerInfo]:
        """The announced workers, alive or not, by owner."""
        ...

    async def version_counts(self) -> list[VersionCount]:
        """How many unfinished runs each workflow version has, by status."""
        ...

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` whenever another process makes a run due (Postgres ``LISTEN``);
        returns an async function that stops listening. A backend that cannot hear other
        processes returns at once with a no-op stopper: the scheduler then relies on polling
        and on the runtime's in-process due listeners."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """What a run that waits on a key finds for it: the oldest message sent to it on that key
    (``message_id``), else the oldest unexpired buffered event of the key that this run has not
    received yet (``event_id``)."""

    payload: dict[str, Any]
    message_id: int | None = None
    event_id: int | None = None


@runtime_checkable
class EventStore(Protocol):
    """What a ``Store`` offers for buffered events and messages (``Runtime.emit_event`` with a
    buffer, ``Runtime.send``); see ``core.events`` for the protocol between them.

    A store without these methods still runs every workflow; ``emit_event`` without a buffer
    works on it as ever, and the rest raises ``InvalidArgumentError``.
    """

    async def buffer_event(
        self,
        key: str,
        payload_json: str,
        *,
        now: datetime,
        expires_at: datetime,
        idempotency_key: str | None = None,
    ) -> int:
        """Store an event for the runs that start waiting on ``key`` before ``expires_at``;
        returns its id (increasing). With ``idempotency_key``, in the same transaction, the
        key keeps the event's id: a second call with the key returns it and stores nothing."""
        ...

    async def emit_result(self, idempotency_key: str) -> list[str] | None:
        """The ids of the runs an ``emit_event`` with this key resumed (None: no call with
        the key has finished)."""
        ...

    async def record_emit(self, idempotency_key: str, resumed: list[str], *, now: datetime) -> None:
        """Keep the runs an ``emit_event`` with this key resumed."""
        ...

    async def delete_old_emit_keys(self, before: datetime, limit: int) -> int:
        """Forget up to ``limit`` emit keys made before ``before``; how many."""
        ...

    async def send_message(self, run_id: str, key: str, payload_json: str, *, now: datetime) -> int:
        """Store a message for one run; returns its id (increasing: FIFO per run and key).
        ``RunNotFoundError`` for an unknown run."""
        ...

    async def find_delivery(self, run_id: str, key: str, now: datetime) -> Delivery | None:
        """What a run waiting on ``key`` should receive now (see ``Delivery``), or None."""
        ...

    async def commit_delivery(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        delivery: Delivery,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        """``commit_step`` of the resume that hands ``delivery`` to the run, in the same
        transaction as deleting the message (or noting that the run received the event).

        ``ConcurrentUpdateError`` (and nothing committed) when the version moved on, the message
        is gone or the run already received the event: it was delivered once already.
        """
        ...

    async def wake_waiting(self, run_ids: Sequence[str], now: datetime) -> None:
        """Make those of ``run_ids`` that wait and are not claimed due now, so that a worker
        that knows their workflow looks for their delivery."""
        ...

    async def delete_expired_events(self, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` buffered events expired at ``now``; how many."""
        ...

    async def wake_deliverable(self, now: datetime, limit: int) -> int:
        """Make up to ``limit`` runs due now that wait, unclaimed and not due, on a key for
        which they have a message or an unexpired event not received yet (what a process that
        died between storing and looking left behind); how many."""
        ...


# -- the original 0.2 interfaces: a run store and a ledger store ---------------------------------


class RunStore(ABC):
    """Saves and loads run states (the original's ``RunStore``, made async).

    A subclass may implement the methods as plain ``def``: ``PairedStore`` awaits what they
    return only when it is awaitable.
    """

    @abstractmethod
    async def save(self, run: RunState) -> None:
        """Insert or replace the run's state."""

    @abstractmethod
    async def load(self, run_id: str) -> RunState | None:
        """The run's state, or None when no run has this id."""


class LedgerStore(ABC):
    """An append-only journal of step records (the original's ``LedgerStore``, made async)."""

    @abstractmethod
    async def append(self, record: StepRecord) -> None:
        """Append ``record`` to the ledger of ``record.run_id``."""

    @abstractmethod
    async def list(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """The run's records as dicts, oldest first (empty for an unknown run)."""


@runtime_checkable
class QueryableRunStore(Protocol):
    """The queries a run store may offer besides ``save``/``load`` (structural, as in the
    original: a run store implements them without inheriting from this)."""

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> list[RunState]:
        """Runs matching every given filter, most recently updated first."""
        ...

    async def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> list[RunState]:
        """Runs waiting (``WaitReason.UNTIL``) for a time at or before ``now_iso``, earliest
        ``waiting.until`` first. Read-only: nothing is claimed."""
        ...

    async def list_children(
        self, *, parent_run_id: str, status: RunStatus | None = None
    ) -> list[RunState]:
        """The runs whose ``parent_run_id`` is ``parent_run_id`` (optionally of one status)."""
        ...
