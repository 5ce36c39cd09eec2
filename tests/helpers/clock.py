"""Virtual time: a clock the test moves by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


class FakeClock:
    """A clock the test moves by hand: timers and leases are exact and nothing sleeps.

    ``clock()`` is the time (aware UTC), for ``RuntimeConfig(clock=...)``; ``advance(seconds)``
    (or setting ``now``) moves it.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
