"""Cron schedules: their definition, their fire times, and where they are kept (no I/O here).

A schedule starts a run of a workflow at each time its cron expression names, in its time zone.
What decides lives here, so every store and the scheduler share it: checking a definition before
any I/O (``check_definition``), the fire times (``next_fire_after``, ``plan_fires``, computed as
aware datetimes in the schedule's zone and kept in UTC), and the run id of a fire
(``fire_run_id``: derived from the name and the fire time, so that two schedulers racing over one
fire time create the same run id, and the second one hits the runs' primary key).

Cron expressions are parsed by `cronsim <https://github.com/cuu508/cronsim>`_ (the library of
healthchecks.io): five fields, or six with seconds first. Across daylight-saving changes it
follows Debian cron: a job at a fixed wall-clock time (``30 2 * * *``) fires once on the day the
clocks go back, and on the day they go forward, when 02:30 does not exist, at 03:00; a job with
``*`` in its minute or hour field fires by elapsed time (``0 * * * *``: every real hour, 23 on
the short day and 25 on the long one, each once).

``ScheduleStore`` is the port (``store.schedules``); ``InMemoryScheduleStore`` keeps schedules in
this process (``MemoryStore``, and ``PairedStore``, whose schedules do not outlive the process).
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import InvalidArgumentError
from .kernel import COLUMN_LIMITS
from .serde import canonical_json, decode, encode

CatchUp = Literal["latest", "all", "none"]
CATCH_UP: tuple[str, ...] = get_args(CatchUp)

#: At most this many runs per schedule and poll cycle when ``catch_up="all"`` starts the runs of
#: the fire times missed during a downtime; the rest follow in the next cycles, oldest first.
MAX_CATCH_UP_RUNS = 100

#: A fire time at most this late is not "missed": ``catch_up="none"`` still starts its run (a
#: busy worker or a poll interval makes every fire a little late).
ON_TIME_S = 60.0

NAME_LIMIT = 200
CRON_LIMIT = 255
TIMEZONE_LIMIT = 64
_WORKFLOW_ID_LIMIT = next(limit for name, limit, _ in COLUMN_LIMITS if name == "workflow_id")


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored: its definition and where its firing stands."""

    name: str
    workflow_id: str
    cron: str
    #: An IANA zone name (``zoneinfo``): the cron expression reads wall-clock time there.
    timezone: str
    catch_up: CatchUp
    #: The vars of every run it starts (``scheduled_at`` is added).
    vars: Mapping[str, Any]
    #: The next fire time not yet handled, in UTC.
    next_fire_at: datetime
    #: The run of the newest fire time handled (None before the first).
    last_run_id: str | None = None
    last_fired_at: datetime | None = None
    #: Bumped by every change of the row (a new definition, a fire handled): the fence of
    #: ``ScheduleStore.advance``.
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def same_definition(self, other: Schedule) -> bool:
        """Whether ``other`` declares what this one declares (the fire state aside)."""
        return self.definition() == other.definition()

    def definition(self) -> tuple[str, str, str, str, str]:
        return (self.workflow_id, self.cron, self.timezone, self.catch_up, self.vars_json)

    @property
    def vars_json(self) -> str:
        return canonical_json(dict(self.vars))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO strings), for the CLI and logs."""
        return {
            "name": self.name,
            "workflow_id": self.workflow_id,
            "cron": self.cron,
            "timezone": self.timezone,
            "catch_up": self.catch_up,
            "vars": dict(self.vars),
            "next_fire_at": self.next_fire_at.isoformat(),
            "last_run_id": self.last_run_id,
            "last_fired_at": None if self.last_fired_at is None else self.last_fired_at.isoformat(),
        }


def zone(name: str) -> tzinfo:
    """The ``tzinfo`` of an IANA zone name; ``InvalidArgumentError`` for an unknown one."""
    if not isinstance(name, str) or not name or len(name) > TIMEZONE_LIMIT:
        raise InvalidArgumentError(f"timezone must be an IANA zone name, got {name!r}")
    if name == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(
            f"unknown timezone {name!r}: give an IANA zone name such as 'Europe/Paris' or 'UTC'"
        ) from None


def _cron(cron: str, start: datetime, *, reverse: bool = False) -> CronSim:
    try:
        return CronSim(cron, start, reverse=reverse)
    except CronSimError as exc:
        raise InvalidArgumentError(f"invalid cron expression {cron!r}: {exc}") from None


def next_fire_after(cron: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (UTC); ``InvalidArgumentError`` for a cron
    expression that never fires (in the next 50 years)."""
    try:
        fire = next(_cron(cron, after.astimezone(zone(tz))))
    except StopIteration:
        raise InvalidArgumentError(f"cron expression {cron!r} never fires") from None
    return fire.astimezone(timezone.utc)


def latest_fire_at_or_before(cron: str, tz: str, now: datetime) -> datetime | None:
    """The newest fire time at or before ``now`` (UTC), None when there is none."""
    # cronsim's reverse iteration yields times strictly before its start (whole seconds).
    start = now.replace(microsecond=0) + timedelta(seconds=1)
    try:
        fire = next(_cron(cron, start.astimezone(zone(tz)), reverse=True))
    except StopIteration:
        return None
    return fire.astimezone(timezone.utc)


def fire_times(cron: str, tz: str, first: datetime) -> Iterator[datetime]:
    """``first`` (a fire time) and every fire time after it, in UTC."""
    fire = first
    while True:
        yield fire
        fire = next_fire_after(cron, tz, fire)


def check_definition(
    name: str,
    workflow_id: str,
    cron: str,
    *,
    tz: str,
    catch_up: str,
    vars: Mapping[str, Any] | None,
    now: datetime,
) -> Schedule:
    """A new schedule from a caller's arguments, each checked (``InvalidArgumentError`` naming
    the problem, ``SerializationError`` for vars no column can hold), its next fire time the
    first after ``now``."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LIMIT:
        raise InvalidArgumentError(
            f"schedule name must be a non-empty string of at most {NAME_LIMIT} characters, "
            f"got {name!r}"
        )
    if not name.isprintable():
        raise InvalidArgumentError(f"schedule name {name!r} holds control characters")
    if not isinstance(workflow_id, str) or not workflow_id or len(workflow_id) > _WORKFLOW_ID_LIMIT:
        raise InvalidArgumentError(f"invalid workflow id {workflow_id!r}")
    if not isinstance(cron, str) or not cron.strip() or len(cron) > CRON_LIMIT:
        raise InvalidArgumentError(f"invalid cron expression {cron!r}")
    if catch_up not in CATCH_UP:
        raise InvalidArgumentError(
            f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}"
        )
    zone(tz)
    if vars is None:
        vars = {}
    if not isinstance(vars, Mapping):
        raise InvalidArgumentError(f"vars must be a dict, got {type(vars).__name__}")
    # What a database would store, read back: a copy, and proof that it can be stored.
    copy = decode(encode(dict(vars), root="vars"))
    cron = " ".join(cron.split())
    return Schedule(
        name=name,
        workflow_id=workflow_id,
        cron=cron,
        timezone=tz,
        catch_up=catch_up,  # type: ignore[arg-type]  # checked above
        vars=copy,
        next_fire_at=next_fire_after(cron, tz, now),
        created_at=now,
        updated_at=now,
    )


def fire_run_id(name: str, fire_at: datetime) -> str:
    """The run id of a schedule's fire time: the same in every process, so a fire time can
    start one run only (the second ``create_run`` meets the runs' primary key)."""
    utc = fire_at.astimezone(timezone.utc)
    digest = hashlib.sha256(f"{name}\x00{utc.isoformat()}".encode()).hexdigest()[:24]
    return f"sched-{digest}-{utc.strftime('%Y%m%dT%H%M%SZ')}"


def fire_vars(schedule: Schedule, fire_at: datetime) -> dict[str, Any]:
    """The vars of the run of a fire time: the schedule's, with ``scheduled_at``."""
    return {**decode(schedule.vars_json), "scheduled_at": fire_at.isoformat()}


def plan_fires(schedule: Schedule, now: datetime) -> tuple[list[datetime], datetime]:
    """The fire times to start runs for now, oldest first, and the next fire time to store.

    ``schedule.next_fire_at`` is due (at or before ``now``). ``latest``: the newest fire time
    at or before ``now``; ``all``: every fire time since ``next_fire_at``, at most
    ``MAX_CATCH_UP_RUNS`` (the next one stored may then be due still); ``none``: the newest
    only if it is at most ``ON_TIME_S`` late, else nothing.
    """
    cron, tz = schedule.cron, schedule.timezone
    if schedule.catch_up == "all":
        times: list[datetime] = []
        for fire in fire_times(cron, tz, schedule.next_fire_at):
            if fire > now or len(times) == MAX_CATCH_UP_RUNS:
                return times, fire
            times.append(fire)
    latest = latest_fire_at_or_before(cron, tz, now)
    if latest is None or latest < schedule.next_fire_at:
        latest = schedule.next_fire_at  # its definition's first time, maybe off the cron now
    following = next_fire_after(cron, tz, max(latest, now))
    if schedule.catch_up == "none" and (now - latest).total_seconds() > ON_TIME_S:
        return [], following
    return [latest], following


class ScheduleStore(Protocol):
    """Where a store keeps its schedules (``store.schedules``).

    Firing is made race-free by two things the store guarantees: ``advance`` is a conditional
    update fenced by ``Schedule.version``, and runs have their id as primary key (the run of a
    fire time has a derived id, ``fire_run_id``).
    """

    async def put(self, schedule: Schedule) -> tuple[Schedule, bool]:
        """Insert the schedule, or replace the one of that name when its definition differs
        (``next_fire_at`` too; ``version`` bumped; ``created_at`` and the last fire kept), or
        leave a same definition as it is. Returns the stored schedule and whether anything
        was written."""
        ...

    async def get(self, name: str) -> Schedule | None: ...

    async def delete(self, name: str) -> bool:
        """Delete it; whether it existed."""
        ...

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        ...

    async def due(
        self, now: datetime, limit: int, workflow_ids: Sequence[str] | None = None
    ) -> builtins.list[Schedule]:
        """Up to ``limit`` schedules whose ``next_fire_at`` is at or before ``now``, of
        ``workflow_ids`` (None: any), earliest first (an index range scan)."""
        ...

    async def next_fire_at(self, workflow_ids: Sequence[str] | None = None) -> datetime | None:
        """The earliest ``next_fire_at`` of the schedules of ``workflow_ids`` (None: any)."""
        ...

    async def advance(
        self,
        name: str,
        version: int,
        next_fire_at: datetime,
        *,
        last_run_id: str | None,
        last_fired_at: datetime | None,
    ) -> bool:
        """Move the schedule on, only if its version is still ``version``; whether it did."""
        ...


def _copy(schedule: Schedule) -> Schedule:
    """A copy whose vars the caller may change without changing what is stored."""
    return replace(schedule, vars=decode(schedule.vars_json))


@dataclass
class InMemoryScheduleStore:
    """Schedules kept in this process's memory (no method awaits between check and write);
    what is read back is a copy, as from a database."""

    _schedules: dict[str, Schedule] = field(default_factory=dict)

    async def put(self, schedule: Schedule) -> tuple[Schedule, bool]:
        stored = self._schedules.get(schedule.name)
        if stored is None:
            self._schedules[schedule.name] = _copy(replace(schedule, version=0))
            return _copy(self._schedules[schedule.name]), True
        if stored.same_definition(schedule):
            return _copy(stored), False
        self._schedules[schedule.name] = _copy(
            replace(
                schedule,
                version=stored.version + 1,
                created_at=stored.created_at,
                last_run_id=stored.last_run_id,
                last_fired_at=stored.last_fired_at,
            )
        )
        return _copy(self._schedules[schedule.name]), True

    async def get(self, name: str) -> Schedule | None:
        stored = self._schedules.get(name)
        return None if stored is None else _copy(stored)

    async def delete(self, name: str) -> bool:
        return self._schedules.pop(name, None) is not None

    async def list(self) -> builtins.list[Schedule]:
        return [_copy(self._schedules[name]) for name in sorted(self._schedules)]

    async def due(
        self, now: datetime, limit: int, workflow_ids: Sequence[str] | None = None
    ) -> builtins.list[Schedule]:
        found = [
            s
            for s in self._schedules.values()
            if s.next_fire_at <= now and (workflow_ids is None or s.workflow_id in workflow_ids)
        ]
        found.sort(key=lambda s: (s.next_fire_at, s.name))
        return [_copy(s) for s in found[: max(limit, 0)]]

    async def next_fire_at(self, workflow_ids: Sequence[str] | None = None) -> datetime | None:
        times = [
            s.next_fire_at
            for s in self._schedules.values()
            if workflow_ids is None or s.workflow_id in workflow_ids
        ]
        return min(times) if times else None

    async def advance(
        self,
        name: str,
        version: int,
        next_fire_at: datetime,
        *,
        last_run_id: str | None,
        last_fired_at: datetime | None,
    ) -> bool:
        stored = self._schedules.get(name)
        if stored is None or stored.version != version:
            return False
        self._schedules[name] = replace(
            stored,
            next_fire_at=next_fire_at,
            last_run_id=last_run_id,
            last_fired_at=last_fired_at,
            version=version + 1,
        )
        return True
