"""Virtual time: a clock the test moves by hand, and a scheduler that sleeps on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from abstractruntime import RuntimeConfig, create_scheduled_runtime
from abstractruntime.scheduler import ScheduledRuntime
from tests.helpers.polling import eventually


@dataclass
class _Sleeper:
    until: datetime
    event: asyncio.Event
    due: asyncio.Future[Any]

    @property
    def asleep(self) -> bool:
        return not (self.event.is_set() or self.due.done())


class FakeClock:
    """A clock the test moves by hand: timers, leases and backoffs are exact, nothing sleeps.

    ``clock()`` is the time (aware UTC), for ``RuntimeConfig(clock=...)``; ``advance(seconds)``
    (or setting ``now``) moves it. ``wait`` is a ``Scheduler(wait=...)`` on this clock: it
    returns when its event is set or when the test moves the clock past its timeout, never by
    itself, so a test decides when time passes and can ask how long the scheduler chose to sleep
    (``sleeping()``, and every timeout asked for in ``sleeps``).
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)) -> None:
        self._now = start
        #: The timeout of every ``wait``, in order.
        self.sleeps: list[float] = []
        self._sleepers: list[_Sleeper] = []

    def __call__(self) -> datetime:
        return self._now

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        self._now = value
        for sleeper in self._sleepers:
            if sleeper.until <= value and not sleeper.due.done():
                sleeper.due.set_result(None)

    def advance(self, seconds: float) -> None:
        """Move the clock on; the waits whose timeout has passed return."""
        self.now += timedelta(seconds=seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        """Return once ``event`` is set or the clock has moved ``timeout`` seconds on."""
        self.sleeps.append(timeout)
        due = asyncio.get_running_loop().create_future()
        sleeper = _Sleeper(self._now + timedelta(seconds=timeout), event, due)
        self._sleepers.append(sleeper)
        woken: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([woken, sleeper.due], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleepers.remove(sleeper)
            woken.cancel()

    async def sleeping(self, *, timeout: float = 10.0) -> float:
        """Once a task sleeps in ``wait`` (its event not set), the virtual seconds it has left.

        This waits on real time for the sleeper (the scheduler, say, is still busy with the
        database); wait first for the state the sleep should follow (a run completed...), or it
        may be an earlier sleep the scheduler is about to be woken from.
        """
        await eventually(
            lambda: any(s.asleep for s in self._sleepers),
            "nothing went to sleep on the fake clock",
            timeout=timeout,
        )
        until = min(s.until for s in self._sleepers if s.asleep)
        return (until - self._now).total_seconds()

    async def skip(self, *, timeout: float = 10.0) -> float:
        """Move the clock to the end of the current sleep (see ``sleeping``); return how far."""
        seconds = await self.sleeping(timeout=timeout)
        self.advance(seconds)
        return seconds


async def scheduled_on(clock: FakeClock, **kwargs: Any) -> ScheduledRuntime:
    """``create_scheduled_runtime(**kwargs)`` on virtual time: the runtime reads ``clock`` and
    the scheduler sleeps on it (``listen=False``: no Postgres ``NOTIFY`` wakes it either)."""
    config = RuntimeConfig(clock=clock, lease_s=kwargs.pop("lease_s", 30.0))
    kwargs.setdefault("listen", False)
    return await create_scheduled_runtime(config=config, wait=clock.wait, **kwargs)
