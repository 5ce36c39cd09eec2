"""Leases: which runs this runtime drives, and the heartbeat that keeps them ours.

A claim gives the runtime a lease on a run for ``RuntimeConfig.lease_s``; commits extend it. A
step may take longer than the lease (an LLM call), so while the runtime holds runs a heartbeat
task renews their leases every third of ``lease_s``: another worker takes a run over only when
its holder is dead (or stuck for a whole lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from .config import RuntimeConfig
from .ports import RunHandle, Store

logger = logging.getLogger("abstractruntime")


class Leases:
    """The runs one runtime holds a lease on, and their heartbeat."""

    def __init__(self, store: Store, config: RuntimeConfig) -> None:
        self._store = store
        self._config = config
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def until(self, now: datetime | None = None) -> datetime:
        """When a lease taken or renewed ``now`` (default: the clock's now) runs out."""
        now = self._config.clock() if now is None else now
        return now + timedelta(seconds=self._config.lease_s)

    async def claim(self, run_id: str) -> RunHandle:
        """Claim ``run_id`` for this runtime (``RunLeasedError`` while another holds it)."""
        now = self._config.clock()
        handle = await self._store.claim_run(run_id, self._config.owner, now, self.until(now))
        return self.track(handle)

    def track(self, handle: RunHandle) -> RunHandle:
        """Note whether we hold ``handle``'s run now, and keep the heartbeat going while we
        hold any."""
        run_id = handle.state.run_id
        if handle.owner is None:
            self._held.discard(run_id)
            return handle
        self._held.add(run_id)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(
                self._renew(), name=f"abstractruntime-leases-{self._config.owner}"
            )
        return handle

    async def release(self, handle: RunHandle, now: datetime) -> None:
        """Give the run's lease up without a step."""
        self._held.discard(handle.state.run_id)
        await self._store.release(handle, now=now)

    async def _renew(self) -> None:
        interval = self._config.lease_s / 3
        while self._held:
            await asyncio.sleep(interval)
            held = list(self._held)
            if not held:
                break
            try:
                renewed = await self._store.renew(self._config.owner, held, self.until())
            except Exception:  # the next commit or beat retries; the lease may lapse meanwhile
                logger.warning("could not renew the leases of %d runs", len(held), exc_info=True)
                continue
            if renewed is None:  # a store of the original's protocol: no ids to compare
                continue
            missed = sorted(set(held) - set(renewed) & self._held)
            if missed:  # a row locked by a commit in flight (renewed next beat), or taken over
                logger.info(
                    "did not renew the leases of runs %s (locked right now, or taken over)",
                    ", ".join(missed),
                )

    async def aclose(self) -> None:
        """Stop the heartbeat; leases still held are left to expire."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
