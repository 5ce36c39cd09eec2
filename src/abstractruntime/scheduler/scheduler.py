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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..core import events, subworkflows, workers
from ..core.models import RunState, RunStatus, WaitReason
from ..core.ports import RunHandle
from ..core.registry import WorkflowRegistry
from ..core.runtime import Runtime
from ..errors import ConcurrentUpdateError, InvalidArgumentError, RunLeasedError, RunNotFoundError
from . import cron
from .retention import RetentionKeeper

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

    #: Runs the scheduler claimed and drove (due timers, new runs, orphans, woken parents):
    #: a run that waits twice is driven, and counted, three times.
    runs_resumed: int = 0
    #: Drives that raised (the database failed, a bug), as the original counted them: the run
    #: is left to be claimed again, and may well complete then.
    runs_failed: int = 0
    #: Poll cycles run (each is one ``claim_due`` query).
    poll_cycles: int = 0
    #: When the last poll cycle ran (None before the first).
    last_poll_at: datetime | None = None
    #: The newest errors the loop survived, as "<time>: <message>" (at most
    #: ``Scheduler(max_errors_kept=...)``): database errors it retried with backoff, runs
    #: whose driving crashed.
    errors: list[str] = field(default_factory=list)
    #: Claims lost to another writer (a run cancelled or taken over meanwhile).
    conflicts: int = 0
    #: Runs this scheduler started for cron schedules (fire times others fired not counted).
    scheduled_runs: int = 0
    #: Outcomes, as committed: drives that left their run ``completed`` / ``failed`` (a failed
    #: attempt that is retried is neither; the worker's closing line reports these).
    ended_completed: int = 0
    ended_failed: int = 0


class Scheduler:
    """Claims due runs of the runtime's registered workflows and drives them.

    Args:
        runtime: the ``Runtime`` whose store, registry and lease settings are used.
        registry: the workflows to drive (default: the runtime's ``workflow_registry``; a
            registry given here becomes the runtime's, as subworkflows are looked up there).
        poll_interval_s: longest sleep between two claims when nothing wakes it up.
        max_errors_kept: how many of the newest errors ``stats.errors`` keeps.
        on_run_resumed: called with the run's state each time the scheduler drove a run until
            it waited or ended.
        on_run_failed: called with the run id and the exception when driving a run raised
            (the run is retried later). Exceptions of both callbacks are logged and ignored.
        max_concurrency: how many runs are driven at once by this scheduler.
        listen: on Postgres, also wake up on ``NOTIFY`` (default True); polling stays on.
        wait: how the loop sleeps until the next due time, the next poll or a backoff's end
            (see ``Wait``); the default sleeps on the event loop's clock. With a ``wait`` on
            virtual time, the one the runtime's ``RuntimeConfig.clock`` reads, a test makes
            timers, polls and backoffs come due without sleeping.
    """

    #: Counters since the scheduler was made (the original's ``stats``).
    stats: SchedulerStats

    def __init__(
        self,
        runtime: Runtime,
        registry: WorkflowRegistry | None = None,
        *,
        poll_interval_s: float = 1.0,
        max_errors_kept: int = 100,
        on_run_resumed: Callable[[RunState], None] | None = None,
        on_run_failed: Callable[[str, Exception], None] | None = None,
        max_concurrency: int = 100,
        listen: bool = True,
        wait: Wait | None = None,
    ) -> None:
        if poll_interval_s <= 0:
            raise InvalidArgumentError("poll_interval_s must be positive")
        if max_concurrency < 1:
            raise InvalidArgumentError("max_concurrency must be at least 1")
        if registry is not None and registry is not runtime.workflow_registry:
            runtime.set_workflow_registry(registry)
        self.runtime = runtime
        self.max_errors_kept = max_errors_kept
        self.on_run_resumed = on_run_resumed
        self.on_run_failed = on_run_failed
        self.poll_interval_s = poll_interval_s
        self.max_concurrency = max_concurrency
        self.listen = listen
        #: How the loop sleeps between cycles (see ``Wait``).
        self.wait: Wait = wait or _wait_on_the_loop
        self.stats = SchedulerStats()
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], Awaitable[None]] | None = None
        self._unhook: Callable[[], None] | None = None
        self._stopping = False
        #: When to look at the schedules again (None: at the next cycle); at most a poll
        #: interval ahead, as another process may declare a schedule meanwhile.
        self._fire_check_at: datetime | None = None
        #: The earliest fire time of our schedules when we last looked (for the sleep).
        self._next_fire: datetime | None = None
        #: When the loop next tells the store it is alive (None: not running).
        self._announce_at: datetime | None = None
        #: Purges old finished runs when ``RuntimeConfig.retention`` is set (retention.py).
        self.retention = RetentionKeeper(runtime)

    @property
    def is_running(self) -> bool:
        """Whether the poll loop runs (started and not stopped)."""
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def registry(self) -> WorkflowRegistry:
        """The workflows this scheduler drives (the runtime's ``workflow_registry``)."""
        return self.runtime.workflow_registry

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def wake(self, *_: Any) -> None:
        """Run a poll cycle now (called on local changes and on Postgres NOTIFY)."""
        self._wake.set()

    def schedules_changed(self) -> None:
        """Look at the schedules at the next cycle, and run it now (a schedule was declared)."""
        self._fire_check_at = None
        self._wake.set()

    async def start(self) -> None:
        """Start the poll loop as a task of the running event loop.

        Raises ``RuntimeError`` when it is already running (as the original did).
        """
        if self.is_running:
            raise RuntimeError("Scheduler is already running")
        self._stopping = False
        # Runs this process leaves due (a new timer, say) re-plan our sleep at once; other
        # processes' changes reach us by NOTIFY on Postgres, or at the next poll.
        self._unhook = self.runtime.add_due_listener(self.wake)
        if self.listen:
            self._unlisten = await self.runtime.store.listen(self.wake)
        self._announce_at = self.runtime.config.clock()  # at the first poll cycle
        self._loop_task = asyncio.create_task(self._loop(), name="abstractruntime-scheduler")

    async def stop(self, timeout: float = 5.0, *, grace_s: float | None = None) -> None:
        """Stop claiming; let runs being driven finish for ``timeout`` seconds (``grace_s``
        is another name for it), then cancel them. Stopping a stopped scheduler does nothing.

        A cancelled run releases its lease (or, if the process dies first, the lease expires);
        its last committed step stays, and another worker continues from there.
        """
        if grace_s is None:
            grace_s = timeout
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
        if self._announce_at is not None:
            self._announce_at = None
            with contextlib.suppress(Exception):  # else its row expires by itself
                await self.runtime.store.forget_worker(self.runtime.config.owner)
        await self.retention.aclose()
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def poll_once(self) -> int:
        """One poll cycle, awaited: claim the due runs (timers over, new runs, runs whose
        worker died, woken parents) and drive each until it waits or ends; returns how many.
        Meant for tests and manual control; it works with the loop stopped or running."""
        started = set(self._inflight)
        claimed = await self.run_once()
        mine = [task for run_id, task in self._inflight.items() if run_id not in started]
        if mine:
            await asyncio.wait(mine)
        return claimed

    async def run_once(self) -> int:
        """One poll cycle: start the runs of due cron schedules, claim due runs and start
        driving them; returns how many runs it claimed."""
        free = self.max_concurrency - len(self._inflight)
        runtime = self.runtime
        now = runtime.config.clock()
        self.stats.last_poll_at = now
        if self._fire_check_at is None or self._fire_check_at <= now:
            await self._fire_schedules(now)
        if self._announce_at is not None and self._announce_at <= now:
            await self._announce(now)
        if free <= 0:
            return 0
        # Telemetry: the runs' tasks start inside the poll's scope, so their steps link to it.
        with runtime.telemetry.poll() as poll:
            handles = await runtime.store.claim_due(
                runtime.config.owner,
                now,
                runtime.leases.until(now),
                free,
                runtime.workflow_registry.served(),
            )
            poll.claimed(len(handles))
            self.stats.poll_cycles += 1
            # Expired buffered events, and runs left waiting with a delivery (core/events.py).
            await events.housekeeping(runtime.store, now)
            self.retention.tick(now)  # a background pass, at most once per retention interval
            for handle in handles:
                run_id = handle.state.run_id
                self._inflight[run_id] = asyncio.create_task(
                    self._drive(handle), name=f"abstractruntime-run-{run_id}"
                )
        return len(handles)

    async def _announce(self, now: datetime) -> None:
        """Tell the store this worker is alive and which workflow versions it serves
        (``core/workers.py``), every third of a lease while it runs."""
        interval = self.runtime.config.lease_s / 3
        await self.runtime.store.announce_worker(
            self.runtime.config.owner,
            self.registry.served(),
            now=now,
            expires_at=workers.expiry(now, interval),
        )
        self._announce_at = now + timedelta(seconds=interval)

    async def _fire_schedules(self, now: datetime) -> None:
        created, next_fire, failed = await cron.fire_due(self.runtime, now, self._record_error)
        self.stats.scheduled_runs += created
        horizon = now + timedelta(seconds=self.poll_interval_s)
        if failed and next_fire is not None and next_fire <= now:
            next_fire = horizon  # a schedule that failed to fire is tried at the next poll
        self._fire_check_at = horizon if next_fire is None else min(next_fire, horizon)
        self._next_fire = next_fire

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
            except Exception as exc:
                self._record_error(f"poll cycle failed: {exc}")
                backoff = min(max(backoff * 2, 0.1), _MAX_BACKOFF_S)
                logger.warning("poll cycle failed; retrying in %.1fs", backoff, exc_info=True)
                timeout = backoff
            if timeout > 0:
                await self.wait(self._wake, timeout)

    async def _sleep_time(self, claimed: int) -> float:
        if self.max_concurrency - len(self._inflight) <= 0:
            return self.poll_interval_s  # no free slot: a finishing run wakes us
        if claimed and claimed >= self.max_concurrency - len(self._inflight):
            return 0.0  # there may be more due runs than we took
        runtime = self.runtime
        next_due = await runtime.store.next_due_at(runtime.workflow_registry.served())
        fire = self._next_fire
        if fire is not None and (next_due is None or fire < next_due):
            next_due = fire  # a cron schedule fires first
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
                self.stats.ended_failed += 1
            elif handle.state.status is RunStatus.COMPLETED:
                self.stats.ended_completed += 1
            self._callback(self.on_run_resumed, handle.state)
        except (ConcurrentUpdateError, RunLeasedError) as exc:
            self.stats.conflicts += 1
            logger.info("run %s: %s", run_id, exc, extra={"run_id": run_id})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.runs_failed += 1
            self._record_error(f"run {run_id}: {exc}")
            logger.exception(
                "run %s: driving it failed; it will be retried", run_id, extra={"run_id": run_id}
            )
            self._callback(self.on_run_failed, run_id, exc)
        finally:
            self._inflight.pop(run_id, None)
            self._wake.set()  # a slot is free

    def _callback(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("scheduler callback %r raised", callback)

    def _record_error(self, message: str) -> None:
        errors = self.stats.errors
        errors.append(f"{self.runtime.config.clock().isoformat()}: {message}")
        del errors[: max(len(errors) - self.max_errors_kept, 0)]

    # -- resuming runs by hand (the original's Scheduler API) ---------------------------------

    async def resume_event(
        self, *, run_id: str, wait_key: str | None, payload: Mapping[str, Any] | None = None
    ) -> RunState:
        """Resume one run waiting on ``wait_key`` (an event, an ``ask_user`` answer) with
        ``payload``; errors as ``Runtime.resume``, and ``KeyError`` for a run whose workflow
        is not registered."""
        state = await self.runtime.get_state(run_id)
        return await self.runtime.resume(
            workflow=self.registry.get_or_raise(state.workflow_id, state.workflow_version),
            run_id=run_id,
            wait_key=wait_key,
            payload=payload,
        )

    async def find_waiting_runs(
        self,
        *,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
        order_by: str = "updated",
        after: tuple[datetime, str] | None = None,
    ) -> list[RunState]:
        """Waiting runs (e.g. pending ``ask_user`` prompts), most recently updated first;
        ``order_by="deadline"``: earliest deadline first (``timeout_at``, or a ``wait_until``'s
        time), the runs without one last. ``after``: a keyset cursor for the next page (see
        ``Store.list_runs``)."""
        # The default order is asked for as before, so a store of the user's own keeps working.
        ordered: dict[str, Any] = {} if order_by == "updated" else {"order": order_by}
        if after is not None:
            ordered["after"] = after
        return await self.runtime.store.list_runs(
            status=RunStatus.WAITING,
            wait_reason=wait_reason,
            workflow_id=workflow_id,
            limit=limit,
            **ordered,
        )

    async def cancel_with_children(
        self, run_id: str, *, reason: str | None = None
    ) -> list[RunState]:
        """Cancel the run and every unfinished run below it (children, grandchildren...);
        returns the states of the runs this call cancelled, the root first."""
        return await subworkflows.cancel_tree(self.runtime, run_id, reason=reason)

    async def resume_subworkflow_parent(
        self, *, child_run_id: str, child_output: Mapping[str, Any] | None = None
    ) -> RunState | None:
        """Continue the parent of a finished child run, if it waits on that child; returns
        the parent's state (None when the child has no parent).

        Parents resume by themselves when their child ends, so this is rarely needed; it is
        idempotent: when the parent already moved on, it returns the parent's state as it is.
        ``child_output`` is ignored: the parent reads the child's committed output.
        """
        child = await self.runtime.get_state(child_run_id)
        if child.parent_run_id is None:
            return None
        if child.status.is_terminal:
            await subworkflows.wake_parent(self.runtime, child)
        try:
            return await self.runtime.get_state(child.parent_run_id)
        except RunNotFoundError:
            return None
