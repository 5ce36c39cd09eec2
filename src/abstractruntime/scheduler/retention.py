"""The scheduler's retention: ``RuntimeConfig(retention=timedelta(days=30))`` purges old
finished runs in small bites, in the background of the poll loop.

At most once per ``RuntimeConfig.retention_interval_s`` (by the runtime's clock), a poll cycle
starts one pass as a task of its own: ``store.purge(older_than=retention,
batch=RETENTION_BATCH, max_runs=RETENTION_MAX_RUNS, pause_ratio=RETENTION_PAUSE_RATIO)``. The
poll loop never waits for it; a pass still going when the next is due is not doubled. A pass
that stopped at ``max_runs`` (more is left) is followed by the next one at the next cycle, so a
backlog drains a bite at a time. Several workers may run it at once: a run claimed by one's
purge is skipped by the others' (``core.retention``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from ..core.retention import Purgeable, PurgeResult
from ..core.runtime import Runtime

logger = logging.getLogger("abstractruntime.scheduler")

#: Runs per claim and delete transaction of the scheduler's purge.
RETENTION_BATCH = 100
#: Runs one pass deletes at most before it gives the database back for an interval.
RETENTION_MAX_RUNS = 1000
#: The pass pauses after each transaction as long as it took (``store.purge(pause_ratio=)``):
#: the workers' steps keep their latency (benchmarks/purge.py, docs/operations.md).
RETENTION_PAUSE_RATIO = 1.0


class RetentionKeeper:
    """Runs the retention passes of one scheduler (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        #: What the passes deleted so far.
        self.purged = PurgeResult()
        #: The error of the last pass that failed (None: it did not).
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_at: datetime | None = None
        self._warned = False

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def tick(self, now: datetime) -> None:
        """Start a pass if retention is on, one is due and none is going."""
        config = self.runtime.config
        if config.retention is None or self.busy:
            return
        if self._next_at is not None and now < self._next_at:
            return
        store = self.runtime.store
        if not isinstance(store, Purgeable):
            if not self._warned:
                self._warned = True
                logger.warning(
                    "RuntimeConfig.retention is set but %s cannot purge runs; ignored",
                    type(store).__name__,
                )
            return
        self._next_at = now + timedelta(seconds=config.retention_interval_s)
        self._task = asyncio.create_task(
            self._pass(store, config.retention, now), name="abstractruntime-retention"
        )

    async def _pass(self, store: Purgeable, retention: timedelta, now: datetime) -> None:
        try:
            result = await store.purge(
                older_than=retention,
                batch=RETENTION_BATCH,
                now=now,
                max_runs=RETENTION_MAX_RUNS,
                pause_ratio=RETENTION_PAUSE_RATIO,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = str(exc)
            logger.warning("retention pass failed; retried in an interval", exc_info=True)
            return
        self.last_error = None
        self.purged += result
        if result.runs:
            logger.info(
                "retention: deleted %d runs, %d ledger records", result.runs, result.ledger_records
            )
        if result.runs >= RETENTION_MAX_RUNS:
            self._next_at = None  # more is left: the next cycle goes on

    async def wait(self) -> None:
        """Wait for the pass going on, if any (tests)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def aclose(self) -> None:
        """Cancel the pass going on (what it deleted stays deleted; the rest waits)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
