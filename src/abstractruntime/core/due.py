"""Due listeners: telling a scheduler in this process that a run will need a worker.

When the runtime leaves a run that becomes due by itself (a new run, a timer, a released run),
a scheduler in the same process should re-plan its sleep at once instead of finding out at its
next poll. Other processes hear of it from the store (Postgres ``NOTIFY``), or at their next poll.
"""

from __future__ import annotations

from collections.abc import Callable


class DueListeners:
    """Callbacks called whenever this process leaves a run that will become due by itself."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def announce(self) -> None:
        for callback in list(self._callbacks):
            callback()
