"""Retention: which finished runs a purge deletes, and in what order (no I/O).

``store.purge(older_than=..., statuses=..., batch=...)`` deletes the runs that ended (their
``updated_at``) before ``now - older_than`` with a status in ``statuses``, together with their
ledgers, snapshots and artifacts. Runs go by *tree* (a run, its parent, its children, theirs...):
a tree is deleted together, and only once every member of it qualifies, so that a waiting parent
never loses a child it will read, nor a child the parent that would resume.

The algorithm lives here, once, and talks to a backend through ``PurgeOps``; the SQL store and
the memory store implement those few operations (the same split as the kernel and its stores):

1. **select**: candidate runs, a page at a time (keyset on ``(updated_at, run_id)`` per status,
   an index range on SQL), or the given ``run_ids``;
2. **close over trees**: parents and children of the candidates, until the trees are whole;
   a tree with a member that does not qualify is left alone;
3. **claim**: the trees' runs (``RUNS_PER_WRITE`` at most per transaction) are leased to
   the purge in one statement that checks again that each is finished and old enough, and
   bumps its version: from then on no worker can claim a run or commit a step of it
   (``ConcurrentUpdateError``). A tree not claimed whole is released;
4. **delete** the claimed runs' ledgers in chunks of at most ``LEDGER_CHUNK`` rows, one short
   transaction each (a run with a million records does not hold the SQLite writer for seconds),
   then their snapshots, artifacts and rows in one transaction that checks the claim again.

On SQLite the writes go through the store's one writer thread, queued with the workers'
steps. ``pause_ratio`` paces a purge (a pause after each transaction, that many times as long
as it took), for a purge that runs beside busy workers (the scheduler's retention does).

A purge that dies between 3 and 4 leaves runs leased to a purge until the lease expires
(``CLAIM_S``); the next purge takes them over and finishes the job (their ledgers may be
partly deleted meanwhile: they were being deleted).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidArgumentError
from .models import RunStatus

#: The statuses a purge deletes by default: every finished one.
FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
#: Ledger rows deleted per transaction at most: on SQLite a step waits for the purge's
#: transaction (one writer), so each is kept to a few milliseconds (benchmarks/purge.py).
LEDGER_CHUNK = 500
#: Runs claimed or deleted per transaction at most (fewer than ``batch`` when it is larger; a
#: tree larger than this goes in one transaction, alone).
RUNS_PER_WRITE = 100
#: How long a purge's claim on a run holds (a dead purge's runs are taken over after it).
CLAIM_S = 600.0
#: The lease owner of a purge's claims starts with this.
PURGE_OWNER_PREFIX = "abstractruntime-purge:"


@dataclass(frozen=True)
class PurgeResult:
    """What a purge deleted."""

    runs: int = 0
    ledger_records: int = 0
    snapshots: int = 0
    artifacts: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(
            self.runs + other.runs,
            self.ledger_records + other.ledger_records,
            self.snapshots + other.snapshots,
            self.artifacts + other.artifacts,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "ledger_records": self.ledger_records,
            "snapshots": self.snapshots,
            "artifacts": self.artifacts,
        }


@dataclass(frozen=True)
class PurgeSpec:
    """A purge's arguments, checked (``purge_spec``)."""

    cutoff: datetime
    statuses: tuple[RunStatus, ...]
    batch: int

    def qualifies(self, info: RunInfo) -> bool:
        return info.status in self.statuses and info.updated_at < self.cutoff

    @property
    def status_values(self) -> list[str]:
        return [status.value for status in self.statuses]


@dataclass(frozen=True)
class RunInfo:
    """What the purge needs to know of a run."""

    run_id: str
    parent_run_id: str | None
    status: RunStatus
    updated_at: datetime


def purge_spec(
    older_than: timedelta,
    statuses: Iterable[RunStatus | str],
    batch: int,
    now: datetime,
) -> PurgeSpec:
    """Check a purge's arguments (before any I/O); ``InvalidArgumentError`` naming what is wrong."""
    if not isinstance(older_than, timedelta):
        raise InvalidArgumentError(
            f"older_than must be a datetime.timedelta (e.g. timedelta(days=30)), not "
            f"{type(older_than).__name__}"
        )
    if older_than < timedelta(0):
        raise InvalidArgumentError(f"older_than cannot be negative (got {older_than})")
    if isinstance(statuses, (str, RunStatus)):
        statuses = [statuses]
    checked: list[RunStatus] = []
    for status in statuses:
        try:
            value = RunStatus(status)
        except ValueError:
            raise InvalidArgumentError(
                f"unknown run status {status!r}: a purge takes "
                f"{', '.join(s.value for s in FINISHED)}"
            ) from None
        if not value.is_terminal:
            raise InvalidArgumentError(
                f"a purge deletes finished runs only, not {value.value!r} ones: pass some of "
                f"{', '.join(s.value for s in FINISHED)}"
            )
        if value not in checked:
            checked.append(value)
    if not checked:
        raise InvalidArgumentError("statuses is empty: name at least one finished status")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidArgumentError(f"batch must be a positive integer (got {batch!r})")
    return PurgeSpec(now - older_than, tuple(checked), batch)


def new_purge_owner() -> str:
    return f"{PURGE_OWNER_PREFIX}{uuid.uuid4().hex[:12]}"


class PurgeOps(Protocol):
    """What a backend does for a purge (see the module docstring)."""

    async def candidates(
        self,
        status: RunStatus,
        cutoff: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[RunInfo]:
        """Runs of ``status`` updated before ``cutoff``, by ``(updated_at, run_id)``, after
        ``after``, at most ``limit``."""
        ...

    async def runs(self, run_ids: Collection[str]) -> list[RunInfo]:
        """Those of ``run_ids`` that exist."""
        ...

    async def children(self, run_ids: Collection[str]) -> list[RunInfo]:
        """The runs whose parent is one of ``run_ids``."""
        ...

    async def claim(
        self, run_ids: Sequence[str], spec: PurgeSpec, owner: str, now: datetime
    ) -> dict[str, int]:
        """Lease to ``owner`` (until ``now + CLAIM_S``) those of ``run_ids`` that still qualify
        and that no one else holds (a dead purge's claims may be taken), bumping their version;
        returns the claimed runs' ledger lengths."""
        ...

    async def release(self, run_ids: Sequence[str], owner: str) -> None:
        """Give up ``owner``'s claims on ``run_ids``."""
        ...

    async def delete_ledger(self, run_id: str, start: int, stop: int, owner: str) -> int:
        """Delete the run's ledger records ``start <= seq < stop`` if ``owner`` holds it."""
        ...

    async def delete_ledgers(self, run_ids: Sequence[str], owner: str) -> int:
        """Delete the whole ledgers of ``run_ids`` (small ones) that ``owner`` holds."""
        ...

    async def delete_runs(self, run_ids: Sequence[str], spec: PurgeSpec, owner: str) -> PurgeResult:
        """Delete the snapshots, artifacts and rows of those of ``run_ids`` that ``owner`` still
        holds and that still qualify, in one transaction (``ledger_records``: what remained)."""
        ...


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def close_trees(ops: PurgeOps, seeds: Iterable[RunInfo]) -> dict[str, RunInfo]:
    """The seeds with every run of their trees (parents up to the root, and all descendants)."""
    known: dict[str, RunInfo] = {info.run_id: info for info in seeds}
    expanded: set[str] = set()
    looked_up: set[str] = set(known)
    while True:
        missing = {
            info.parent_run_id
            for info in known.values()
            if info.parent_run_id and info.parent_run_id not in looked_up
        }
        if missing:
            looked_up |= missing
            for info in await ops.runs(sorted(missing)):
                known.setdefault(info.run_id, info)
            continue
        todo = sorted(set(known) - expanded)
        if not todo:
            return known
        expanded |= set(todo)
        for chunk in _chunks(todo, 500):
            for info in await ops.children(chunk):
                known.setdefault(info.run_id, info)
                looked_up.add(info.run_id)


def trees(runs: dict[str, RunInfo]) -> list[list[str]]:
    """``runs`` (closed over trees) split into trees, each a list of run ids, roots first and
    trees in the order of their first run in ``runs``."""

    def root(run_id: str) -> str:
        seen = set()
        while True:
            parent = runs[run_id].parent_run_id
            if parent is None or parent not in runs or parent in seen:
                return run_id
            seen.add(run_id)
            run_id = parent

    def depth(run_id: str) -> int:
        parent = runs[run_id].parent_run_id
        return (
            0
            if parent is None or parent not in runs or run_id == root(run_id)
            else 1 + depth(parent)
        )

    groups: dict[str, list[str]] = {}
    for run_id in runs:
        groups.setdefault(root(run_id), []).append(run_id)
    return [sorted(group, key=depth) for group in groups.values()]


def deletable(
    group: Sequence[str], runs: dict[str, RunInfo], spec: PurgeSpec, only: Collection[str] | None
) -> bool:
    return all(
        spec.qualifies(runs[run_id]) and (only is None or run_id in only) for run_id in group
    )


async def select_trees(
    ops: PurgeOps, spec: PurgeSpec, run_ids: Collection[str] | None = None
) -> AsyncIterator[list[list[str]]]:
    """The trees a purge would delete now, a page (of about ``spec.batch`` runs) at a time.

    With ``run_ids``: only the trees made of those runs."""
    done: set[str] = set()
    pages: AsyncIterator[list[RunInfo]]
    if run_ids is not None:
        only: Collection[str] | None = (
            run_ids if isinstance(run_ids, (set, frozenset)) else set(run_ids)
        )
        pages = _given(ops, sorted(run_ids), spec.batch)
    else:
        only = None
        pages = _pages(ops, spec)
    async for page in pages:
        fresh = [info for info in page if info.run_id not in done]  # seen in a tree before
        if not fresh:
            continue
        closed = await close_trees(ops, fresh)
        found = []
        for group in trees(closed):
            if any(run_id in done for run_id in group):
                continue
            if len(group) > 1:
                # A run alone never comes again (the pages move on past it); a tree's other
                # runs may, in later pages: remembered, so memory grows with trees only.
                done.update(group)
            if deletable(group, closed, spec, only):
                found.append(group)
        if found:
            yield found


async def _given(ops: PurgeOps, run_ids: Sequence[str], size: int) -> AsyncIterator[list[RunInfo]]:
    for chunk in _chunks(run_ids, size):
        yield await ops.runs(chunk)


async def _pages(ops: PurgeOps, spec: PurgeSpec) -> AsyncIterator[list[RunInfo]]:
    for status in spec.statuses:
        after: tuple[datetime, str] | None = None
        while True:
            page = await ops.candidates(status, spec.cutoff, after, spec.batch)
            if not page:
                break
            yield page
            last = page[-1]
            after = (last.updated_at, last.run_id)
            if len(page) < spec.batch:
                break


async def purge(
    ops: PurgeOps,
    spec: PurgeSpec,
    now: datetime,
    *,
    run_ids: Collection[str] | None = None,
    max_runs: int | None = None,
    on_batch: Callable[[PurgeResult], Any] | None = None,
    pause_ratio: float = 0.0,
) -> PurgeResult:
    """Delete the trees ``select_trees`` finds, ``min(spec.batch, RUNS_PER_WRITE)`` runs per
    claim at most (a tree larger than that goes alone); stop after about ``max_runs`` runs
    (None: all)."""
    owner = new_purge_owner()
    total = PurgeResult()
    per_write = min(spec.batch, RUNS_PER_WRITE)
    ops = _Paced(ops, pause_ratio) if pause_ratio > 0 else ops
    async for found in select_trees(ops, spec, run_ids):
        batch: list[list[str]] = []
        for group in found:
            if batch and sum(map(len, batch)) + len(group) > per_write:
                total += await _delete(ops, batch, spec, owner, now)
                batch = []
            batch.append(group)
        if batch:
            total += await _delete(ops, batch, spec, owner, now)
        if on_batch is not None:
            on_batch(total)
        if max_runs is not None and total.runs >= max_runs:
            break
    return total


class _Paced:
    """``ops`` whose writes are each followed by a pause of ``ratio`` times their duration: a
    purge that leaves the database to the workers most of the time."""

    def __init__(self, ops: PurgeOps, ratio: float) -> None:
        self._ops = ops
        self._ratio = ratio

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._ops, name)
        if name not in _WRITES:
            return found

        async def paced(*args: Any) -> Any:
            started = time.perf_counter()
            result = await found(*args)
            await asyncio.sleep((time.perf_counter() - started) * self._ratio)
            return result

        return paced


_WRITES = frozenset({"claim", "release", "delete_ledger", "delete_ledgers", "delete_runs"})


async def _delete(
    ops: PurgeOps, groups: list[list[str]], spec: PurgeSpec, owner: str, now: datetime
) -> PurgeResult:
    ids = [run_id for group in groups for run_id in group]
    lengths = await ops.claim(ids, spec, owner, now)
    whole = [group for group in groups if all(run_id in lengths for run_id in group)]
    partial = [run_id for group in groups if group not in whole for run_id in group]
    if partial:  # a tree not claimed whole is not deleted
        await ops.release([run_id for run_id in partial if run_id in lengths], owner)
    claimed = [run_id for group in whole for run_id in group]
    if not claimed:
        return PurgeResult()
    records = 0
    small: list[str] = []
    small_rows = 0
    for run_id in claimed:
        length = lengths[run_id]
        if length > LEDGER_CHUNK:
            # From the end: what is left meanwhile is still a chain from its start.
            for stop in range(length, 0, -LEDGER_CHUNK):
                records += await ops.delete_ledger(run_id, max(stop - LEDGER_CHUNK, 0), stop, owner)
                await asyncio.sleep(0)
            continue
        if small_rows + length > LEDGER_CHUNK:
            records += await ops.delete_ledgers(small, owner)
            small, small_rows = [], 0
        small.append(run_id)
        small_rows += length
    if small:
        records += await ops.delete_ledgers(small, owner)
    deleted = await ops.delete_runs(claimed, spec, owner)
    return PurgeResult(
        deleted.runs, records + deleted.ledger_records, deleted.snapshots, deleted.artifacts
    )


class Purging:
    """``purge`` and ``purgeable`` for a store that gives the purge's operations (a mixin of
    ``MemoryStore`` and ``SqlStore``)."""

    def _purge_ops(self) -> PurgeOps:
        raise NotImplementedError

    async def purge(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[RunStatus | str] = FINISHED,
        batch: int = 1000,
        run_ids: Collection[str] | None = None,
        now: datetime | None = None,
        max_runs: int | None = None,
        pause_ratio: float = 0.0,
    ) -> PurgeResult:
        """Delete the finished runs that ended before ``now - older_than``, with their ledgers,
        snapshots and artifacts, tree by tree (see ``core.retention``).

        Args:
            older_than: how long ago a run must have ended (its ``updated_at``).
            statuses: which finished statuses to delete (default: all three).
            batch: runs read per page, and per transaction at most (a bigger tree goes
                alone); transactions also hold ``RUNS_PER_WRITE`` runs and ``LEDGER_CHUNK``
                ledger rows at most, so that none holds a worker's step for long.
            run_ids: delete only trees made of these runs (what an export wrote, say).
            now: the current time (default: the wall clock).
            max_runs: stop after about this many runs (the scheduler's small bites).
            pause_ratio: after each write transaction, pause this many times as long as it
                took (1.0: the purge holds the database half of the time at most), so that
                the workers' steps seldom wait behind it. The scheduler's retention uses 1.0.

        Raises ``InvalidArgumentError`` for a negative ``older_than``, an unknown or
        unfinished status, or ``batch < 1``, before any I/O.
        """
        now = _now(now)
        spec = purge_spec(older_than, statuses, batch, now)
        only = _check_ids(run_ids)
        if max_runs is not None and max_runs < 1:
            raise InvalidArgumentError(f"max_runs must be at least 1 (got {max_runs!r})")
        if not 0 <= pause_ratio < 1000:
            raise InvalidArgumentError(f"pause_ratio must be 0 or more (got {pause_ratio!r})")
        return await purge(
            self._purge_ops(), spec, now, run_ids=only, max_runs=max_runs, pause_ratio=pause_ratio
        )

    def purgeable(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[RunStatus | str] = FINISHED,
        batch: int = 1000,
        now: datetime | None = None,
    ) -> AsyncIterator[list[list[str]]]:
        """The trees ``purge`` would delete now (same arguments), a page at a time: each tree
        is a list of run ids, its root first. Nothing is changed."""
        spec = purge_spec(older_than, statuses, batch, _now(now))
        return select_trees(self._purge_ops(), spec)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise InvalidArgumentError("now must be an aware datetime (UTC)")
    return now


def _check_ids(run_ids: Collection[str] | None) -> Collection[str] | None:
    if run_ids is None:
        return None
    if isinstance(run_ids, str) or not all(isinstance(r, str) for r in run_ids):
        raise InvalidArgumentError("run_ids must be a collection of run id strings")
    return run_ids if isinstance(run_ids, (set, frozenset)) else set(run_ids)


@runtime_checkable
class Purgeable(Protocol):
    """A store with ``purge`` and ``purgeable`` (``MemoryStore``, ``SqlStore``)."""

    async def purge(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[RunStatus | str] = FINISHED,
        batch: int = 1000,
        run_ids: Collection[str] | None = None,
        now: datetime | None = None,
        max_runs: int | None = None,
        pause_ratio: float = 0.0,
    ) -> PurgeResult: ...

    def purgeable(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[RunStatus | str] = FINISHED,
        batch: int = 1000,
        now: datetime | None = None,
    ) -> AsyncIterator[list[list[str]]]: ...
