"""The ``Scheduler``: an asyncio task that claims due runs and drives them concurrently.

Each poll cycle claims up to as many due runs as it has free slots (``max_concurrency``) with one
indexed query (``Store.claim_due``), and drives each in its own task, so a slow node of one run
never holds up the others. Between cycles it sleeps until the earliest due time, the poll
interval, or a wake-up: a local ``start``/``resume`` or, on Postgres, a ``NOTIFY`` from any
process. Errors of the database are logged and retried with backoff; they never end the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..core.models import RunStatus
from ..core.ports import RunHandle
from ..core.runtime import Runtime
from ..errors import ConcurrentUpdateError, RunLeasedError

logger = logging.getLogger("abstractruntime.scheduler")

_MIN_SLEEP_S = 0.005
_MAX_BACKOFF_S = 30.0

#: How the loop sleeps between cycles: ``await wait(event, timeout)`` returns once ``event`` is
#: set or ``timeout`` seconds have passed, whichever comes first, without raising.
Wait = Callable[[asyncio.Event, float], Awaitable[None]]


async def _wait_on_the_loop(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


@dataclass
class SchedulerStats:
    """Counters of a scheduler since it started."""

    #: Runs the scheduler claimed and drove (due timers, new runs, orphans, woken parents).
    runs_resumed: int = 0
    #: Runs that ended ``failed`` while the scheduler drove them, or whose driving crashed.
    runs_failed: int = 0
    #: Poll cycles run (each is one ``claim_due`` query).
    poll_cycles: int = 0
    #: Claims lost to another writer (a run cancelled or taken over meanwhile).
    conflicts: int = 0
    #: Database errors the loop survived (it backs off and retries).
    errors: int = 0


class Scheduler:
    """Claims due runs of the runtime's registered workflows and drives them.

    Args:
        runtime: the ``Runtime`` whose store, registry and lease settings are used.
        poll_interval_s: longest sleep between two claims when nothing wakes it up.
        max_concurrency: how many runs are driven at once by this scheduler.
        listen: on Postgres, also wake up on ``NOTIFY`` (default True); polling stays on.
        wait: how the loop sleeps until the next due time, the next poll or a backoff's end
            (see ``Wait``); the default sleeps on the event loop's clock. With a ``wait`` on
            virtual time, the one the runtime's ``RuntimeConfig.clock`` reads, a test makes
            timers, polls and backoffs come due without sleeping.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        poll_interval_s: float = 1.0,
        max_concurrency: int = 100,
        listen: bool = True,
        wait: Wait = _wait_on_the_loop,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.runtime = runtime
        self.poll_interval_s = poll_interval_s
        self.max_concurrency = max_concurrency
        self.listen = listen
        self._wait = wait
        self.stats = SchedulerStats()
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], Awaitable[None]] | None = None
        self._unhook: Callable[[], None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def wake(self, *_: Any) -> None:
        """Run a poll cycle now (called on local changes and on Postgres NOTIFY)."""
        self._wake.set()

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        # Runs this process leaves due (a new timer, say) re-plan our sleep at once; other
        # processes' changes reach us by NOTIFY on Postgres, or at the next poll.
        self._unhook = self.runtime.add_due_listener(self.wake)
        if self.listen:
            self._unlisten = await self.runtime.store.listen(self.wake)
        self._loop_task = asyncio.create_task(self._loop(), name="abstractruntime-scheduler")

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Stop claiming; let runs being driven finish for ``grace_s``, then cancel them.

        A cancelled run releases its lease (or, if the process dies first, the lease expires);
        its last committed step stays, and another worker continues from there.
        """
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._unlisten is not None:
            await self._unlisten()
            self._unlisten = None
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def run_once(self) -> int:
        """One poll cycle: claim due runs and start driving them; returns how many."""
        free = self.max_concurrency - len(self._inflight)
        if free <= 0:
            return 0
        runtime = self.runtime
        now = runtime.config.clock()
        handles = await runtime.store.claim_due(
            runtime.config.owner,
            now,
            runtime.leases.until(now),
            free,
            runtime.workflow_registry.ids(),
        )
        self.stats.poll_cycles += 1
        for handle in handles:
            run_id = handle.state.run_id
            self._inflight[run_id] = asyncio.create_task(
                self._drive(handle), name=f"abstractruntime-run-{run_id}"
            )
        return len(handles)

    async def _loop(self) -> None:
        backoff = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.run_once()
                timeout = await self._sleep_time(claimed)
                backoff = 0.0
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.errors += 1
                backoff = min(max(backoff * 2, 0.1), _MAX_BACKOFF_S)
                logger.warning("poll cycle failed; retrying in %.1fs", backoff, exc_info=True)
                timeout = backoff
            if timeout > 0:
                await self._wait(self._wake, timeout)

    async def _sleep_time(self, claimed: int) -> float:
        if self.max_concurrency - len(self._inflight) <= 0:
            return self.poll_interval_s  # no free slot: a finishing run wakes us
        if claimed and claimed >= self.max_concurrency - len(self._inflight):
            return 0.0  # there may be more due runs than we took
        runtime = self.runtime
        next_due = await runtime.store.next_due_at(runtime.workflow_registry.ids())
        if next_due is None:
            return self.poll_interval_s
        until = (next_due - runtime.config.clock()).total_seconds()
        # Due but not claimable (a lease still live): don't spin, look again shortly.
        floor = _MIN_SLEEP_S if claimed else min(0.05, self.poll_interval_s)
        return min(self.poll_interval_s, max(until, floor))

    async def _drive(self, handle: RunHandle) -> None:
        run_id = handle.state.run_id
        try:
            handle = await self.runtime.drive_claimed(handle)
            self.stats.runs_resumed += 1
            if handle.state.status is RunStatus.FAILED:
                self.stats.runs_failed += 1
        except (ConcurrentUpdateError, RunLeasedError) as exc:
            self.stats.conflicts += 1
            logger.info("run %s: %s", run_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.runs_failed += 1
            logger.exception("run %s: driving it failed; it will be retried", run_id)
        finally:
            self._inflight.pop(run_id, None)
            self._wake.set()  # a slot is free
