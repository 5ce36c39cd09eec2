"""Events that wait for their run, and messages to one run (``emit_event``, ``send``).

Part of the runtime's driver (``runtime.py``), kept apart for its own rules:

- ``emit_event(key, payload, buffer_s=...)`` resumes every run waiting on ``key`` now; with a
  buffer it first stores the event, and a run that starts waiting on ``key`` before the event
  expires receives it at once. Each run receives a buffered event once (the store notes it).
- ``send(run_id, key, payload)`` stores a message for one run, kept until that run waits on
  ``key``; messages are received in the order sent, one per wait.

Why nothing is lost in the window between "look for an event" and "wait": the writer stores
first, then looks for waiting runs; the run commits its wait first, then looks for what was
stored (``deliver_pending``, right after every commit that leaves a run waiting on a key). Each
side's look starts after its own write is committed, so of any emit and any wait, at least one
sees the other: either the run finds the event, or the emitter finds the waiting run (both may;
the delivery itself decides, below). No lock is needed for this on any store.

Why nothing is delivered twice: the commit of the resume that delivers (``commit_delivery``)
deletes the message, or notes that the run received the event, in its own transaction, and
fails (``ConcurrentUpdateError``, nothing applied) when the message is gone or the event noted
already - besides the run's version check, which alone lets one of two racing deliveries commit.

A process that dies between its write and its look (a run that committed its wait, an
emitter that stored its event) leaves a run waiting with its message or event stored: the
scheduler's ``housekeeping`` makes such runs due (``wake_deliverable``), and the worker that
claims one looks again.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConcurrentUpdateError,
    InvalidArgumentError,
    InvalidTypeError,
    RunFinishedError,
    RunLeasedError,
    RunNotFoundError,
    RunNotWaitingError,
    WaitKeyMismatchError,
)
from . import idempotency, machine
from .crashpoints import crash_point
from .kernel import WAIT_KEY_LIMIT
from .models import RunState, RunStatus, StepRecord, WaitReason
from .ports import Delivery, EventStore, RunHandle
from .serde import decode, encode

if TYPE_CHECKING:
    from .memory import StoredRun
    from .runtime import Runtime
    from .spec import WorkflowSpec

#: Losing a race for a run is not an error for emit_event: someone else resumed it.
LOST_RACE = (RunNotWaitingError, WaitKeyMismatchError, RunLeasedError, ConcurrentUpdateError)
#: Waits that a key resumes (``wait_event``, ``ask_user``).
_KEYED = (WaitReason.EVENT, WaitReason.USER)
#: Waiting runs ``emit_event`` reads at a time.
_PAGE = 500
#: Buffered events the scheduler deletes per cycle once expired.
EXPIRED_BATCH = 500


def waiting_key(state: RunState) -> str | None:
    """The key a run waits on, when an event or a message can resume it."""
    waiting = state.waiting
    if state.status is RunStatus.WAITING and waiting is not None and waiting.reason in _KEYED:
        return waiting.wait_key or None
    return None


def event_store(store: Any) -> EventStore | None:
    return store if isinstance(store, EventStore) else None


def _require(store: Any, what: str) -> EventStore:
    found = event_store(store)
    if found is None:
        raise InvalidArgumentError(
            f"{what} needs a store that keeps events and messages (MemoryStore, SqlStore); "
            f"{type(store).__name__} does not"
        )
    return found


def _check(key: object, payload: object, max_bytes: int | None) -> str:
    """The payload's JSON, once the key and the payload are known to be storable."""
    if not isinstance(key, str) or not key or "\x00" in key or len(key) > WAIT_KEY_LIMIT:
        raise InvalidArgumentError(
            f"an event key must be a non-empty string of at most {WAIT_KEY_LIMIT} characters "
            f"without NUL, got {key!r:.80}"
        )
    if not isinstance(payload, Mapping):  # a TypeError, as for resume's payload
        raise InvalidTypeError(
            f"an event or message payload must be a dict, got {type(payload).__name__}"
        )
    machine.check_payload(dict(payload), "event payload", max_bytes)
    return encode(dict(payload), root="payload")


# -- the runtime's side --------------------------------------------------------------------------


async def _deliver(
    rt: Runtime, workflow: WorkflowSpec, run_id: str, key: str, delivery: Delivery
) -> RunHandle:
    """Claim the run and commit its resume with ``delivery``; returns the claimed handle (the
    caller drives on). ``RunNotWaitingError`` when it no longer waits on ``key``, and the
    races of ``LOST_RACE``."""
    store = _require(rt.store, "a delivery")
    handle = await rt._claim(run_id)
    try:
        if waiting_key(handle.state) != key:
            raise RunNotWaitingError(f"run {run_id!r} does not wait on {key!r} any more")
        now = rt.config.clock()
        transition = machine.resume(handle.state, workflow, dict(delivery.payload), now)
        state = transition.state
        committed = await store.commit_delivery(
            handle,
            state,
            rt.encode(state),
            [transition.record],
            delivery=delivery,
            now=now,
            lease_until=rt.leases.until(now),
            max_record_bytes=rt.config.max_record_bytes,
        )
    except BaseException:
        await rt._release(handle)
        raise
    return rt.leases.track(committed)


async def _drive_on(rt: Runtime, workflow: WorkflowSpec, handle: RunHandle) -> RunState:
    try:
        return (await rt._drive(workflow, handle, None)).state
    except (ConcurrentUpdateError, RunLeasedError):
        # The delivery is committed; another worker, a cancel or a restore took the run over.
        return await rt.get_state(handle.state.run_id)


async def deliver_pending(rt: Runtime, workflow: WorkflowSpec, state: RunState) -> RunHandle | None:
    """A run has just committed a wait on a key (or was found waiting): when a message or a
    buffered event is there for it, resume it with that at once; returns the claimed handle to
    drive on, or None (nothing there, or another worker delivers it)."""
    key = waiting_key(state)
    store = event_store(rt.store)
    if key is None or store is None:
        return None
    for _ in range(3):  # a lost race means someone delivered: look again, a few times
        found = await store.find_delivery(state.run_id, key, rt.config.clock())
        if found is None:
            return None
        try:
            return await _deliver(rt, workflow, state.run_id, key, found)
        except ConcurrentUpdateError:
            continue
        except (RunLeasedError, RunNotWaitingError, WaitKeyMismatchError):
            return None  # its holder looks when it commits its wait, or it waits on no key
    return None


async def emit(
    rt: Runtime,
    key: str,
    payload: Mapping[str, Any] | None,
    buffer_s: float | None,
    idempotency_key: str | None = None,
) -> list[RunState]:
    """``Runtime.emit_event`` (see there). Without a buffer, exactly the original's: the key
    is only looked up, and each run's ``resume`` checks the payload."""
    buffer = rt.config.event_buffer_s if buffer_s is None else buffer_s
    if not isinstance(buffer, (int, float)) or buffer < 0:
        raise InvalidArgumentError(f"buffer_s must be a number of seconds >= 0, got {buffer!r}")
    once = idempotency.check_key(idempotency_key)
    if once is not None:
        done = await _require(rt.store, "emit_event(idempotency_key=...)").emit_result(once)
        if done is not None:  # a call with the key finished: its runs, as they are now
            return [await rt.get_state(run_id) for run_id in done]
    event_id: int | None = None
    payload_json = ""
    if buffer > 0:
        payload_json = _check(key, {} if payload is None else payload, rt.config.max_payload_bytes)
        # Stored before we look for waiting runs: see the module docstring.
        store = _require(rt.store, "emit_event(buffer_s=...)")
        now = rt.config.clock()
        expires = now + timedelta(seconds=buffer)
        event_id = await store.buffer_event(
            key, payload_json, now=now, expires_at=expires, idempotency_key=once
        )
        crash_point("after_event_stored")
    resumed: list[RunState] = []
    tried: set[str] = set()
    unknown: list[str] = []
    while True:
        waiting = await rt.store.list_runs(status=RunStatus.WAITING, wait_key=key, limit=_PAGE)
        fresh = [state for state in waiting if state.run_id not in tried]
        if not fresh:
            break
        for state in fresh:
            tried.add(state.run_id)
            workflow = rt.workflow_registry.for_run(state)
            if workflow is None:
                unknown.append(state.run_id)
                continue
            try:
                if event_id is None:
                    resumed.append(
                        await rt.resume(
                            workflow=workflow,
                            run_id=state.run_id,
                            wait_key=key,
                            payload=payload,
                            # A run resumed by a first call that crashed, and waiting on the
                            # key again, must not get the same event twice.
                            idempotency_key=once,
                        )
                    )
                else:
                    delivery = Delivery(decode(payload_json), event_id=event_id)
                    handle = await _deliver(rt, workflow, state.run_id, key, delivery)
                    resumed.append(await _drive_on(rt, workflow, handle))
            except LOST_RACE:
                continue
    if event_id is not None and unknown:
        # Runs of workflows this runtime does not know: a worker that knows them delivers.
        await _require(rt.store, "emit_event").wake_waiting(unknown, rt.config.clock())
    if once is not None:
        ids = [state.run_id for state in resumed]
        await _require(rt.store, "emit_event").record_emit(once, ids, now=rt.config.clock())
    return resumed


async def send(rt: Runtime, run_id: str, key: str, payload: Mapping[str, Any] | None) -> RunState:
    """``Runtime.send`` (see there)."""
    payload_json = _check(key, {} if payload is None else payload, rt.config.max_payload_bytes)
    store = _require(rt.store, "send")
    state = await rt.get_state(run_id)  # RunNotFoundError
    if state.status.is_terminal:
        raise RunFinishedError(
            f"run {run_id!r} is {state.status.value}: it never waits again, so a message to it "
            "would never be received"
        )
    await store.send_message(run_id, key, payload_json, now=rt.config.clock())
    # Read after the message is stored: see the module docstring.
    state = await rt.get_state(run_id)
    if waiting_key(state) != key:
        return state
    workflow = rt.workflow_registry.for_run(state)
    if workflow is None:
        await store.wake_waiting([run_id], rt.config.clock())
        return state
    handle = await deliver_pending(rt, workflow, state)
    if handle is None:
        return await rt.get_state(run_id)
    return await _drive_on(rt, workflow, handle)


async def housekeeping(store: Any, now: datetime, limit: int = EXPIRED_BATCH) -> None:
    """The scheduler's share, once per cycle: delete up to ``limit`` expired buffered events,
    and make due the runs left waiting with a delivery there (``wake_deliverable``)."""
    await clean_expired(store, now, limit)
    found = event_store(store)
    if found is not None:
        await found.wake_deliverable(now, limit)


async def clean_expired(store: Any, now: datetime, limit: int = EXPIRED_BATCH) -> int:
    """Delete up to ``limit`` expired buffered events, and up to ``limit`` emit idempotency
    keys older than ``idempotency.KEY_TTL``; how many events."""
    found = event_store(store)
    if found is None:
        return 0
    await found.delete_old_emit_keys(now - idempotency.KEY_TTL, limit)
    return await found.delete_expired_events(now, limit)


# -- stores that keep them in this process (MemoryStore, PairedStore) ---------------------------


@dataclass
class _Event:
    key: str
    payload_json: str
    expires_at: datetime


@dataclass
class _Message:
    run_id: str
    key: str
    payload_json: str


class Mailbox:
    """Buffered events and messages kept in this process's memory, with the rules of the SQL
    tables: ids increase, a message is deleted when delivered, a run receives an event once."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.events: dict[int, _Event] = {}
        self.messages: dict[int, _Message] = {}
        #: (event id, run id) of every buffered event a run received.
        self.received: set[tuple[int, str]] = set()
        #: emit_event's idempotency keys: key -> [event id, resumed run ids, created at].
        self.emits: dict[str, list[Any]] = {}

    def buffer(self, key: str, payload_json: str, expires_at: datetime) -> int:
        event_id = next(self._ids)
        self.events[event_id] = _Event(key, payload_json, expires_at)
        return event_id

    def send(self, run_id: str, key: str, payload_json: str) -> int:
        message_id = next(self._ids)
        self.messages[message_id] = _Message(run_id, key, payload_json)
        return message_id

    def find(self, run_id: str, key: str, now: datetime) -> Delivery | None:
        for message_id, message in self.messages.items():  # in the order sent
            if message.run_id == run_id and message.key == key:
                return Delivery(decode(message.payload_json), message_id=message_id)
        for event_id, event in self.events.items():
            if (
                event.key == key
                and event.expires_at > now
                and (event_id, run_id) not in self.received
            ):
                return Delivery(decode(event.payload_json), event_id=event_id)
        return None

    def check(self, delivery: Delivery, run_id: str) -> None:
        """``ConcurrentUpdateError`` when ``delivery`` was delivered already."""
        if delivery.message_id is not None:
            message = self.messages.get(delivery.message_id)
            if message is None or message.run_id != run_id:
                raise ConcurrentUpdateError(run_id, -1)
        if delivery.event_id is not None and (
            delivery.event_id not in self.events or (delivery.event_id, run_id) in self.received
        ):
            raise ConcurrentUpdateError(run_id, -1)

    def consume(self, delivery: Delivery, run_id: str) -> None:
        if delivery.message_id is not None:
            self.messages.pop(delivery.message_id, None)
        if delivery.event_id is not None:
            self.received.add((delivery.event_id, run_id))

    def expire(self, now: datetime, limit: int) -> int:
        expired = [i for i, event in self.events.items() if event.expires_at <= now][:limit]
        for event_id in expired:
            del self.events[event_id]
        self.received = {(e, r) for e, r in self.received if e in self.events}
        return len(expired)


class MemoryEvents:
    """The ``EventStore`` methods of a store that keeps runs in this process (a mixin of
    ``MemoryStore`` and ``PairedStore``: they give ``mailbox``, ``_stored`` and
    ``commit_step``)."""

    mailbox: Mailbox

    if TYPE_CHECKING:

        async def _stored(self, run_id: str) -> StoredRun: ...

        def _all_stored(self) -> Iterable[StoredRun]: ...

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
        ) -> RunHandle: ...

    async def buffer_event(
        self,
        key: str,
        payload_json: str,
        *,
        now: datetime,
        expires_at: datetime,
        idempotency_key: str | None = None,
    ) -> int:
        emits = self.mailbox.emits
        if idempotency_key is not None:
            known = emits.setdefault(idempotency_key, [None, None, now])
            if known[0] is not None:
                return int(known[0])
        event_id = self.mailbox.buffer(key, payload_json, expires_at)
        if idempotency_key is not None:
            emits[idempotency_key][0] = event_id
        return event_id

    async def emit_result(self, idempotency_key: str) -> list[str] | None:
        known = self.mailbox.emits.get(idempotency_key)
        return None if known is None or known[1] is None else list(known[1])

    async def record_emit(self, idempotency_key: str, resumed: list[str], *, now: datetime) -> None:
        self.mailbox.emits.setdefault(idempotency_key, [None, None, now])[1] = list(resumed)

    async def delete_old_emit_keys(self, before: datetime, limit: int) -> int:
        old = [k for k, (_, _, created) in self.mailbox.emits.items() if created < before]
        for key in old[:limit]:
            del self.mailbox.emits[key]
        return len(old[:limit])

    async def send_message(self, run_id: str, key: str, payload_json: str, *, now: datetime) -> int:
        await self._stored(run_id)  # RunNotFoundError
        return self.mailbox.send(run_id, key, payload_json)

    async def find_delivery(self, run_id: str, key: str, now: datetime) -> Delivery | None:
        return self.mailbox.find(run_id, key, now)

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
        run_id = state.run_id
        self.mailbox.check(delivery, run_id)
        committed = await self.commit_step(
            handle,
            state,
            state_json,
            records,
            now=now,
            lease_until=lease_until,
            max_record_bytes=max_record_bytes,
        )
        # A store that awaits I/O in its commit may have let a second delivery of the same
        # message past the check meanwhile: the run's version check let only one commit.
        self.mailbox.consume(delivery, run_id)
        return committed

    async def wake_waiting(self, run_ids: Sequence[str], now: datetime) -> None:
        for run_id in run_ids:
            with contextlib.suppress(RunNotFoundError):  # deleted meanwhile: nothing to wake
                (await self._stored(run_id)).wake(now)

    async def delete_expired_events(self, now: datetime, limit: int) -> int:
        return self.mailbox.expire(now, limit)

    async def wake_deliverable(self, now: datetime, limit: int) -> int:
        woken = 0
        for stored in self._all_stored():
            if woken >= limit:
                break
            key = waiting_key(stored.state)
            if key is None or stored.due_at is not None or stored.leased(now):
                continue
            if self.mailbox.find(stored.state.run_id, key, now) is not None:
                stored.wake(now)
                woken += 1
        return woken
