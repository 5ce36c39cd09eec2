"""Following a run's ledger as Server-Sent Events.

Each record is sent once, oldest first, as it commits (``id:`` its index, so a client that
reconnects with ``Last-Event-ID`` gets only what it missed), then an ``end`` event with the
run's final status once it has finished. Whoever commits, this process or another: the follower
reads the run's row (one primary-key read, ``seq``: how many records it has) every
``poll_s`` and reads the ledger only when ``seq`` grew. On Postgres a ``LISTEN`` on the store's
channel wakes every follower at once when a run becomes due, which covers the commits that
leave a run for a worker; the others (a step, an answer) are found by the poll, so the poll
stays. Never a blocking call: every read is the store's coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..core.ports import Store

#: A comment line every so often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


class Wakeups:
    """One ``store.listen`` shared by every follower of this app, held while any follows.

    A mounted app gets no lifespan events from its parent, so the listener starts with the
    first follower and stops with the last one.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._events: set[asyncio.Event] = set()
        self._stop: Callable[[], Awaitable[None]] | None = None
        self._lock = asyncio.Lock()

    def _wake(self) -> None:
        for event in list(self._events):
            event.set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        async with self._lock:
            self._events.add(event)
            if self._stop is None:
                loop = asyncio.get_running_loop()

                def wake() -> None:
                    # asyncpg calls listeners on the loop; call_soon_threadsafe also covers a
                    # backend that calls from a thread.
                    loop.call_soon_threadsafe(self._wake)

                self._stop = await self._store.listen(wake)
        try:
            yield event
        finally:
            async with self._lock:
                self._events.discard(event)
                if not self._events and self._stop is not None:
                    stop, self._stop = self._stop, None
                    await stop()


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One Server-Sent Event; ``data`` is JSON on one line (so it holds no raw newline)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def follow(
    store: Store, wakeups: Wakeups, run_id: str, *, sent: int = 0, poll_s: float = 0.5
) -> AsyncIterator[bytes]:
    """The events of the run's ledger from record ``sent`` on, then ``end``.

    The run must exist (the caller checked, so that an unknown run is a 404, not a stream).
    """
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    async with wakeups.subscribe() as woken:
        while True:
            woken.clear()
            handle = await store.load_run(run_id)
            if handle.seq > sent:
                index = 0
                async with contextlib.aclosing(store.iter_ledger(run_id)) as records:
                    async for record in records:
                        if index >= sent:
                            yield sse("record", record, index)
                            sent = index + 1
                        index += 1
                last_write = loop.time()
            if handle.state.status.is_terminal and sent >= handle.seq:
                yield sse("end", {"run_id": run_id, "status": handle.state.status.value})
                return
            if loop.time() - last_write >= KEEPALIVE_S:
                yield b": keepalive\n\n"
                last_write = loop.time()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), poll_s)
