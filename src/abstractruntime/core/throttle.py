"""Concurrency and rate limits shared by every worker of one store (``Limit``), pure logic.

A ``Limit`` names a budget: at most ``max_concurrent`` effects at once, or at most ``rate``
effects in any window of ``per_s`` seconds, optionally one budget per value of a payload or
vars field (``key``). ``WorkflowSpec(max_concurrent_runs=N)`` is a budget of the same kind whose
slot a run holds from its first step until it ends. (Not to be confused with ``core.limits``:
the original's per-run iteration and token limits in ``vars["_limits"]``.)

The budgets live in the store, so that every process on one database shares them (the
``LimitStore`` methods below; ``storage/sql/limits.py`` for SQL, ``MemoryLimits`` here for the
stores that keep runs in this process). This module decides, and does no I/O:

- **slots** (``max_concurrent``, ``max_concurrent_runs``): a slot is a row naming its run. An
  effect's slot is *live* while its run's claim is the one that took it (same run version) and
  that claim's lease has not expired: a crashed worker's slots come back with its lease. A run's
  slot is live until the run ends. A request is granted when the live slots plus the live
  waiters that arrived before it leave room (order of arrival).
- **rates**: the grant times of the last ``per_s`` seconds, one row per budget (a sliding
  window: at most ``rate`` grants in any ``per_s`` window, exactly, across processes).

A run that is refused waits durably (``machine.limit_wait``: a retry-like ``until`` wait that
does not count as an attempt) and leaves memory; a slot that frees wakes the oldest waiters of
its budget in the same transaction; a rate waiter comes back when its token will be there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..errors import InvalidArgumentError
from .models import EffectType, RunState, RunStatus, StepRecord, WaitReason, WaitState

if TYPE_CHECKING:
    from .memory import StoredRun
    from .ports import RunHandle

#: Key of ``WaitState.details`` that marks a wait for a limit (next to ``details["retry"]``).
LIMIT = "limit"
#: The prefix of a limit wait's key (``limit:<run_id>:<node>``).
WAIT_KEY_KIND = "limit"
#: A refused run re-checks at the latest after this long, even if no release wakes it (a slot
#: freed by a crash, or by a process that does not know the budget's capacity).
RECHECK_S = 30.0
#: The longest budget name and key value a store keeps (longer key values are hashed).
NAME_LIMIT = 255

Kind = Literal["concurrent", "rate"]
Scope = Literal["effect", "run"]


@dataclass(frozen=True)
class Limit:
    """A concurrency or rate budget shared by every worker on one store.

    Declare it in ``RuntimeConfig(limits=[...])``; ``workflow_id`` makes it apply to the runs of
    one workflow only. Exactly one of ``max_concurrent`` and ``rate`` is given:

    - ``Limit(effect_type=EffectType.LLM_CALL, max_concurrent=8)``: at most 8 ``llm_call``
      effects being performed at once, across all processes;
    - ``Limit(effect_type=EffectType.LLM_CALL, rate=60, per_s=60.0)``: at most 60 started in any
      60 seconds.

    A run that would go over waits durably (it leaves memory, its lease is released) and is
    taken up again, in order of arrival, when the budget has room; runs that do not need the
    budget are never held back, and waiting does not count as a failed attempt.

    Attributes:
        effect_type: the effects it counts (None: every effect).
        max_concurrent: slots: effects of the budget performed at once.
        rate: effects started in any window of ``per_s`` seconds.
        per_s: the window of ``rate``, in seconds (default 1).
        key: one budget per value of this field, looked up in the effect's payload first, then
            in the run's vars (``key="tenant"``: one budget per tenant). A run where the field
            is missing (or None) shares one budget with the others that miss it.
        workflow_id: only runs of this workflow count against it and are held by it.
        name: identifies the budget in the store; two processes declaring the same limit share
            one budget because they derive the same name (``concurrent:llm_call``,
            ``rate:llm_call/tenant@wf``...). Give one to share a budget across different
            declarations, or to keep two otherwise equal ones apart.
    """

    effect_type: EffectType | None = None
    max_concurrent: int | None = None
    rate: int | None = None
    per_s: float = 1.0
    key: str | None = None
    workflow_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.effect_type is not None and not isinstance(self.effect_type, EffectType):
            try:
                object.__setattr__(self, "effect_type", EffectType(self.effect_type))
            except ValueError:
                known = ", ".join(t.value for t in EffectType)
                raise InvalidArgumentError(
                    f"Limit(effect_type={self.effect_type!r}): not an effect type; use an "
                    f"EffectType ({known}) or None for every effect"
                ) from None
        if (self.max_concurrent is None) == (self.rate is None):
            raise InvalidArgumentError(
                "Limit needs exactly one of max_concurrent=N (effects at once) and rate=N "
                "(effects per per_s seconds)"
            )
        for field_name in ("max_concurrent", "rate"):
            value = getattr(self, field_name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidArgumentError(
                    f"Limit({field_name}={value!r}): must be a positive whole number"
                )
        if (
            isinstance(self.per_s, bool)
            or not isinstance(self.per_s, int | float)
            or not self.per_s > 0
            or self.per_s == float("inf")
        ):
            raise InvalidArgumentError(
                f"Limit(per_s={self.per_s!r}): must be a positive number of seconds"
            )
        if self.max_concurrent is not None and self.per_s != 1.0:
            raise InvalidArgumentError(
                "Limit(per_s=...) goes with rate=N; a max_concurrent limit has no window"
            )
        for field_name in ("key", "workflow_id", "name"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidArgumentError(
                    f"Limit({field_name}={value!r}): must be a non-empty string or None"
                )
        if self.name is None:
            object.__setattr__(self, "name", self._derived_name())
        assert self.name is not None
        if len(self.name) > NAME_LIMIT:
            raise InvalidArgumentError(
                f"Limit(name=...): at most {NAME_LIMIT} characters, got {len(self.name)}"
            )

    def _derived_name(self) -> str:
        kind = "concurrent" if self.max_concurrent is not None else "rate"
        name = f"{kind}:{self.effect_type.value if self.effect_type else '*'}"
        if self.key:
            name += f"/{self.key}"
        if self.workflow_id:
            name += f"@{self.workflow_id}"
        return name

    @property
    def kind(self) -> Kind:
        return "concurrent" if self.max_concurrent is not None else "rate"

    def applies(self, effect_type: EffectType, workflow_id: str) -> bool:
        """Whether an effect of ``effect_type`` in a run of ``workflow_id`` counts."""
        return (self.effect_type is None or self.effect_type is effect_type) and (
            self.workflow_id is None or self.workflow_id == workflow_id
        )

    def request(self, payload: Mapping[str, Any], vars: Mapping[str, Any]) -> Request:
        """The budget an effect with ``payload`` in a run with ``vars`` asks for."""
        assert self.name is not None
        capacity = self.max_concurrent if self.max_concurrent is not None else self.rate
        assert capacity is not None
        return Request(
            self.name,
            budget_key(self.key, payload, vars),
            self.kind,
            "effect",
            capacity,
            float(self.per_s),
        )


def check_limits(limits: Iterable[Any]) -> tuple[Limit, ...]:
    """``RuntimeConfig.limits`` checked: ``Limit``s, no two with one name."""
    if isinstance(limits, str | bytes | Mapping) or not isinstance(limits, Iterable):
        raise InvalidArgumentError(
            f"RuntimeConfig(limits=...) takes a list of Limit, got {type(limits).__name__}"
        )
    found: dict[str, Limit] = {}
    for limit in limits:
        if not isinstance(limit, Limit):
            raise InvalidArgumentError(
                f"RuntimeConfig(limits=...) takes Limit objects, got {type(limit).__name__}"
            )
        assert limit.name is not None
        if limit.name in found and found[limit.name] != limit:
            raise InvalidArgumentError(
                f"two different limits are named {limit.name!r}; give one a name= of its own"
            )
        found[limit.name] = limit
    return tuple(found.values())


def check_max_concurrent_runs(workflow_id: str, value: Any) -> None:
    """``WorkflowSpec(max_concurrent_runs=...)``: None or a positive whole number."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidArgumentError(
            f"workflow {workflow_id!r}: max_concurrent_runs must be a positive whole number "
            f"or None, got {value!r}"
        )


def budget_key(field_name: str | None, payload: Mapping[str, Any], vars: Mapping[str, Any]) -> str:
    """The key value of a budget: the field in the payload, else in vars; '' when missing (one
    shared budget). Non-strings are their JSON-ish text; a value too long is hashed."""
    if field_name is None:
        return ""
    value = payload.get(field_name) if isinstance(payload, Mapping) else None
    if value is None and isinstance(vars, Mapping):
        value = vars.get(field_name)
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > NAME_LIMIT:
        text = "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return text


def run_request(workflow_id: str, max_concurrent_runs: int) -> Request:
    """The budget of ``WorkflowSpec(max_concurrent_runs=N)``: a slot per started run."""
    return Request(f"runs@{workflow_id}"[:NAME_LIMIT], "", "concurrent", "run", max_concurrent_runs)


@dataclass(frozen=True)
class Request:
    """What a run asks a store for: one unit of the budget ``(name, key)``."""

    name: str
    key: str
    kind: Kind
    scope: Scope
    #: ``max_concurrent`` (slots) or ``rate`` (grants per ``per_s``).
    capacity: int
    per_s: float = 1.0

    @property
    def budget(self) -> tuple[str, str]:
        return (self.name, self.key)


@dataclass(frozen=True)
class Verdict:
    """The answer to ``acquire_limits``: granted, or which request blocked and until when the
    run should wait at most (``retry_at``: the next token, or a re-check time)."""

    granted: bool
    blocked: Request | None = None
    retry_at: datetime | None = None


# -- decisions (every store makes them the same way) --------------------------------------------


def slots_free(live_held: int, waiters_ahead: int, capacity: int) -> bool:
    """A slot request is granted when the live slots and the live waiters that arrived first
    leave room."""
    return live_held + waiters_ahead < capacity


def window(grants: Sequence[float], now_ts: float, per_s: float) -> list[float]:
    """The grant times (epoch seconds) still inside the window ending at ``now_ts``."""
    return sorted(t for t in grants if t > now_ts - per_s)


def granted_in_window(grants: Sequence[float], now_ts: float, per_s: float) -> int:
    """Grants of the window ending now (reservations for later left out)."""
    return sum(1 for t in window(grants, now_ts, per_s) if t <= now_ts)


def next_slot(grants: Sequence[float], now_ts: float, rate: int, per_s: float) -> float:
    """The earliest time from ``now_ts`` at which one more grant keeps every window of
    ``per_s`` at ``rate`` grants or fewer (``grants``: sorted, reservations included).

    While the window has room and nobody has reserved, that is now (a burst of up to
    ``rate``); a time that has to be reserved is also at least ``per_s / rate`` after the
    last one, so that the schedule is even rather than a burst per window."""
    if not grants or (len(grants) < rate and grants[-1] <= now_ts):
        return now_ts
    at = max(now_ts, grants[-1] + per_s / rate)
    if len(grants) >= rate:
        at = max(at, grants[-rate] + per_s)
    return round(at, 6)


@dataclass(frozen=True)
class RateTake:
    """A rate request's outcome: ``granted`` now, else reserved (or already reserved) for
    ``at``; ``grants``: the budget's log to store (its window, with the new grant or
    reservation), None when it does not change."""

    granted: bool
    at: float
    grants: list[float] | None


def rate_take(
    grants: Sequence[float],
    reserved_at: float | None,
    now_ts: float,
    rate: int,
    per_s: float,
) -> RateTake:
    """A rate request, scheduled: granted now if the window has room, else the next free
    time is *reserved* for the run (the log counts it from then), and the run comes back at
    that time to find its grant waiting. Reservation order is arrival order, and the
    schedule keeps ``rate`` grants per ``per_s`` without a herd of retries.

    A run that comes back later than ``late_s(rate, per_s)`` after its reserved time (its
    worker was busy, or dead) gives it up and reserves the next free time, behind the others:
    so real grants stay within that much of the schedule: a window of ``per_s`` holds at most
    ``rate`` plus the grants of ``late_s``."""
    now_ts = round(now_ts, 6)  # the log's times are kept to the microsecond, as a row's are
    live = window(grants, now_ts, per_s)
    mine = None
    if reserved_at is not None:
        mine = next((t for t in live if abs(t - reserved_at) < 2e-6), None)
    if mine is not None:
        if mine > now_ts:
            return RateTake(False, mine, None)
        if now_ts - mine <= late_s(rate, per_s):
            return RateTake(True, mine, None)
        live.remove(mine)
    at = next_slot(live, now_ts, rate, per_s)
    return RateTake(at <= now_ts, at, [*live, at])


def late_s(rate: int, per_s: float) -> float:
    """How late a run may take up its reserved grant: a tenth of the window (or the spacing of
    the schedule, when that is longer), so real grants stay within 10% of the rate."""
    return per_s


def slot_retry_at(now: datetime, lease_expiries: Iterable[datetime | None]) -> datetime:
    """When a refused slot request re-checks at the latest: when the first live effect slot's
    lease would expire (a crashed holder), else after ``RECHECK_S``."""
    latest = now + timedelta(seconds=RECHECK_S)
    times = [t for t in lease_expiries if t is not None and t > now]
    return min([*times, latest])


def is_terminal(status: RunStatus | str) -> bool:
    return RunStatus(status).is_terminal


def waiter_live(status: RunStatus | str, wait_key: str | None) -> bool:
    """A waiter counts while its run is running (about to try again, or waiting to be committed
    as waiting) or waits on a limit; a run that ended or waits for something else does not."""
    status = RunStatus(status)
    return status is RunStatus.RUNNING or (
        status is RunStatus.WAITING
        and wait_key is not None
        and wait_key.startswith(WAIT_KEY_KIND + ":")
    )


def wait_key(run_id: str, node_id: str) -> str:
    """The key of a run's wait for a limit."""
    return f"{WAIT_KEY_KIND}:{run_id}:{node_id}"


def is_limit_wait(waiting: WaitState | None) -> bool:
    """Whether ``waiting`` is a wait for a limit (a slot or a token)."""
    return (
        waiting is not None
        and waiting.reason is WaitReason.UNTIL
        and isinstance(waiting.details, dict)
        and LIMIT in waiting.details
    )


def arrival(
    request: Request, state: RunState, now: datetime, last: datetime | None = None
) -> datetime:
    """A waiter's place in its budget's queue: a run waiting to be admitted
    (``max_concurrent_runs``) arrived when it was started; an effect when its wait is committed,
    after every waiter already there (``last``: the latest arrival in the queue; ``now`` was
    read before the budget's lock was taken, and may be older)."""
    if request.scope == "run":
        return state.created_at
    return now if last is None or now > last else last + timedelta(microseconds=1)


def ts(value: datetime) -> float:
    return value.timestamp()


def usage_row(request: Request, *, held: int, waiting: int, in_window: int) -> dict[str, Any]:
    """One line of ``abstractruntime limits``: a budget, its capacity and its use now
    (``used``: live slots, or grants in the current window)."""
    return {
        "name": request.name,
        "key": request.key,
        "kind": request.kind,
        "scope": request.scope,
        "capacity": request.capacity,
        "per_s": request.per_s if request.kind == "rate" else None,
        "used": held if request.kind == "concurrent" else in_window,
        "waiting": waiting,
    }


# -- the store's side ----------------------------------------------------------------------------


@runtime_checkable
class LimitStore(Protocol):
    """What a ``Store`` offers for shared limits (``SqlStore``, ``MemoryStore``,
    ``PairedStore``). A store without it enforces limits in this process only."""

    async def acquire_limits(
        self, run_id: str, version: int, requests: Sequence[Request], now: datetime
    ) -> Verdict:
        """Take every one of ``requests`` for the run (claimed at ``version``), or none: all
        in one transaction, budgets locked in name order. Granted: the run's slots are held
        and its rate grants noted, its waiter rows gone."""
        ...

    async def commit_limited(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        release: Sequence[Request],
        wait: Request | None,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        """``commit_step``, and in the same transaction: free the run's slots of ``release``
        and wake the oldest waiters that now fit; with ``wait``, note the run as a waiter of
        that budget (keeping its arrival time) and make it due at once if the budget has room
        for it by now (so that no release between the refusal and this commit is lost)."""
        ...

    async def limit_usage(self, now: datetime) -> list[dict[str, Any]]:
        """Each budget's use, by name and key (``usage_row``)."""
        ...


@dataclass
class _Budget:
    request: Request
    grants: list[float] = field(default_factory=list)
    #: run id -> (kind "held"/"waiting", scope, version, since, arrival order)
    rows: dict[str, tuple[str, str, int, datetime, int]] = field(default_factory=dict)


class MemoryLimits:
    """The ``LimitStore`` methods of a store that keeps runs in this process (a mixin of
    ``MemoryStore`` and ``PairedStore``): the same rules as SQL, over ``StoredRun``s. No method
    awaits between its checks and its writes except in the commit it wraps."""

    if TYPE_CHECKING:

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

    _budgets: dict[tuple[str, str], _Budget]
    _arrivals: int

    def _budget(self, request: Request) -> _Budget:
        if not hasattr(self, "_budgets"):
            self._budgets, self._arrivals = {}, 0
        budget = self._budgets.setdefault(request.budget, _Budget(request))
        budget.request = request  # the newest declaration's capacity, as in SQL
        return budget

    def _limit_runs(self) -> dict[str, StoredRun]:
        return {stored.state.run_id: stored for stored in self._all_stored()}

    @staticmethod
    def _live(
        row: tuple[str, str, int, datetime, int], run: StoredRun | None, now: datetime
    ) -> bool:
        kind, scope, version, _since, _order = row
        if run is None:
            return False
        if kind == "waiting":
            waiting = run.state.waiting
            return waiter_live(run.state.status, waiting.wait_key if waiting else None)
        if scope == "run" or kind == "reserved":
            return not run.state.status.is_terminal
        return run.version == version and run.leased(now)

    def _census(
        self, budget: _Budget, run_id: str, now: datetime
    ) -> tuple[int, int, list[datetime | None]]:
        """Live slots held by others, live waiters ahead of ``run_id``, held leases' expiries."""
        runs = self._limit_runs()
        mine = budget.rows.get(run_id)
        held = ahead = 0
        expiries: list[datetime | None] = []
        for other, row in list(budget.rows.items()):
            run = runs.get(other)
            if not self._live(row, run, now):
                del budget.rows[other]
                continue
            if other == run_id:
                continue
            if row[0] == "held":
                held += 1
                if row[1] == "effect" and run is not None:
                    expiries.append(run.lease_expires_at)
            elif row[0] == "waiting" and (
                mine is None or mine[0] != "waiting" or row[3:] < mine[3:]
            ):
                ahead += 1
        return held, ahead, expiries

    def _decide(self, request: Request, run_id: str, now: datetime) -> tuple[bool, datetime | None]:
        """A slot request's decision."""
        budget = self._budget(request)
        held, ahead, expiries = self._census(budget, run_id, now)
        if slots_free(held, ahead, request.capacity):
            return True, None
        return False, slot_retry_at(now, expiries)

    def _take_rate(self, request: Request, run_id: str, now: datetime) -> RateTake:
        budget = self._budget(request)
        self._census(budget, run_id, now)  # drops dead rows
        row = budget.rows.get(run_id)
        reserved = ts(row[3]) if row is not None and row[0] == "reserved" else None
        return rate_take(budget.grants, reserved, ts(now), request.capacity, request.per_s)

    async def acquire_limits(
        self, run_id: str, version: int, requests: Sequence[Request], now: datetime
    ) -> Verdict:
        ordered = sorted(requests, key=lambda r: r.budget)
        for request in ordered:
            self._budget(request)  # known from now on, as a SQL store's row is
        for request in ordered:
            if request.kind == "concurrent":
                granted, retry_at = self._decide(request, run_id, now)
                if not granted:
                    return Verdict(False, request, retry_at)
        takes = {r.budget: self._take_rate(r, run_id, now) for r in ordered if r.kind == "rate"}
        late = [(take.at, budget) for budget, take in takes.items() if not take.granted]
        for request in ordered:
            take = takes.get(request.budget) if request.kind == "rate" else None
            if take is not None and late and take.granted:
                continue  # not taken: the run asks again when its reservation comes
            budget = self._budget(request)
            if take is None:
                if not late:
                    budget.rows[run_id] = ("held", request.scope, version, now, 0)
                continue
            if take.grants is not None:
                budget.grants = take.grants
            if take.granted:
                budget.rows.pop(run_id, None)
            else:
                at = datetime.fromtimestamp(take.at, now.tzinfo)
                budget.rows[run_id] = ("reserved", request.scope, 0, at, 0)
        if late:
            at_ts, blocked = max(late)
            request = next(r for r in ordered if r.budget == blocked)
            return Verdict(False, request, datetime.fromtimestamp(at_ts, now.tzinfo))
        for budget in self._budgets.values():
            row = budget.rows.get(run_id)
            if row is not None and row[0] == "waiting":
                del budget.rows[run_id]
        return Verdict(True)

    async def commit_limited(
        self,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        release: Sequence[Request],
        wait: Request | None,
        now: datetime,
        lease_until: datetime | None = None,
        max_record_bytes: int | None = None,
    ) -> RunHandle:
        run_id = state.run_id
        committed = await self.commit_step(
            handle,
            state,
            state_json,
            records,
            now=now,
            lease_until=lease_until,
            max_record_bytes=max_record_bytes,
        )
        runs = self._limit_runs()
        for request in release:
            budget = self._budget(request)
            if budget.rows.get(run_id, ("",))[0] == "held":
                del budget.rows[run_id]
            self._wake(request, budget, runs, now)
        if wait is not None:
            budget = self._budget(wait)
            for other in self._budgets.values():
                row = other.rows.get(run_id)
                if other is not budget and row is not None and row[0] == "waiting":
                    del other.rows[run_id]
            row = budget.rows.get(run_id)
            if row is None or row[0] != "waiting":
                self._arrivals += 1
                since = arrival(wait, state, now)
                budget.rows[run_id] = ("waiting", wait.scope, 0, since, self._arrivals)
            granted, _ = self._decide(wait, run_id, now)
            stored = runs.get(run_id)
            if granted and stored is not None and not stored.leased(now):
                stored.due_at = now
        return committed

    def _wake(
        self, request: Request, budget: _Budget, runs: dict[str, StoredRun], now: datetime
    ) -> None:
        held = sum(
            1
            for other, row in budget.rows.items()
            if row[0] == "held" and self._live(row, runs.get(other), now)
        )
        waiters = sorted(
            (row[3:], other)
            for other, row in budget.rows.items()
            if row[0] == "waiting" and self._live(row, runs.get(other), now)
        )
        for _order, other in waiters[: max(request.capacity - held, 0)]:
            run = runs[other]
            if run.state.status is RunStatus.WAITING and not run.leased(now):
                run.due_at = now

    async def limit_usage(self, now: datetime) -> list[dict[str, Any]]:
        runs = self._limit_runs()
        usage = []
        for _budget, budget in sorted(getattr(self, "_budgets", {}).items(), key=lambda i: i[0]):
            rows = [(row, runs.get(run_id)) for run_id, row in budget.rows.items()]
            live = [row for row, run in rows if self._live(row, run, now)]
            request = budget.request
            usage.append(
                usage_row(
                    request,
                    held=sum(1 for row in live if row[0] == "held"),
                    waiting=sum(1 for row in live if row[0] in ("waiting", "reserved")),
                    in_window=granted_in_window(budget.grants, ts(now), request.per_s),
                )
            )
        return usage
