"""The runtime's side of shared limits (``core.throttle``): the hooks of the step driver.

``Runtime`` calls four hooks, each a no-op costing a dict lookup when nothing is limited:

- ``admit`` before a run's first step, for ``WorkflowSpec(max_concurrent_runs=N)``;
- ``before_effect`` before an effect is performed: the limits that match it (found in memory,
  no query when none does) are acquired in one transaction of the store;
- ``commit`` for every commit of a step: a step that holds slots frees them in the same
  transaction (``LimitStore.commit_limited``); a refused step registers as a waiter there; a
  run that ends frees its ``max_concurrent_runs`` slot;
- ``ready`` tells the driver that a limit wait claimed before its re-check time was woken by a
  release: it goes on at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConcurrentUpdateError, InvalidArgumentError
from . import machine, throttle
from .machine import Transition
from .models import Effect, RunState, StepRecord, WaitState
from .serde import iso
from .throttle import Limit, LimitStore, Request, Verdict

if TYPE_CHECKING:
    from .ports import RunHandle, Store
    from .spec import WorkflowSpec


class Limiter:
    """The limits of one runtime and the slots its steps hold until their commit."""

    def __init__(
        self, limits: Sequence[Limit], find_workflow: Callable[[str], WorkflowSpec | None]
    ) -> None:
        self.limits = tuple(limits)
        self._find_workflow = find_workflow
        #: run id -> the slots its next commit frees / the budget it waits for.
        self._release: dict[str, list[Request]] = {}
        self._wait: dict[str, Request] = {}

    # -- deciding -------------------------------------------------------------------------------

    def matching(self, effect: Effect, state: RunState) -> list[Request]:
        """The budgets an effect of ``state`` needs (pure, in memory)."""
        if not self.limits:
            return []
        return [
            limit.request(effect.payload, state.vars)
            for limit in self.limits
            if limit.applies(effect.type, state.workflow_id)
        ]

    def run_request(self, workflow_id: str, workflow: WorkflowSpec | None = None) -> Request | None:
        spec = workflow if workflow is not None else self._find_workflow(workflow_id)
        cap = getattr(spec, "max_concurrent_runs", None)
        return throttle.run_request(workflow_id, cap) if cap else None

    async def _acquire(
        self, store: Store, handle: RunHandle, requests: list[Request], now: datetime
    ) -> Verdict:
        if not isinstance(store, LimitStore):
            raise InvalidArgumentError(
                f"{type(store).__name__} does not keep limits; use SqlStore or MemoryStore, or "
                "remove RuntimeConfig(limits=...) and max_concurrent_runs"
            )
        verdict = await store.acquire_limits(handle.state.run_id, handle.version, requests, now)
        if verdict.granted:
            slots = [r for r in requests if r.kind == "concurrent" and r.scope == "effect"]
            if slots:
                self._release.setdefault(handle.state.run_id, []).extend(slots)
        else:
            assert verdict.blocked is not None
            if verdict.blocked.kind == "concurrent":  # a rate waiter has its time reserved
                self._wait[handle.state.run_id] = verdict.blocked
        return verdict

    async def admit(
        self,
        store: Store,
        workflow: WorkflowSpec,
        handle: RunHandle,
        has_pending: bool,
        retry: dict[str, Any] | None,
        now: datetime,
    ) -> Verdict | None:
        """A refusal when the run may not start yet (``max_concurrent_runs``), else None.

        A run asks once: at its first step (an empty ledger) or when its admission wait ends.
        A run forked from a snapshot has a ledger already and is not counted."""
        request = self.run_request(workflow.workflow_id, workflow)
        if request is None:
            return None
        first = retry is None and handle.seq == 0 and not has_pending
        if not first and not (retry is not None and retry.get("admission")):
            return None
        verdict = await self._acquire(store, handle, [request], now)
        return None if verdict.granted else verdict

    async def before_effect(
        self, store: Store, handle: RunHandle, effect: Effect, now: datetime
    ) -> Verdict | None:
        """A refusal when an effect's limits have no room, else None (slots now held)."""
        requests = self.matching(effect, handle.state)
        if not requests:
            return None
        verdict = await self._acquire(store, handle, requests, now)
        return None if verdict.granted else verdict

    @staticmethod
    def wait(
        committed: RunState,
        record: StepRecord,
        verdict: Verdict,
        now: datetime,
        *,
        admission: bool = False,
    ) -> Transition:
        """The durable wait of a refused step (``machine.limit_wait``)."""
        blocked = verdict.blocked
        assert blocked is not None and verdict.retry_at is not None
        retry: dict[str, Any] = {
            "attempt": record.attempt - 1,
            "idempotency_key": record.idempotency_key,
            "effect_type": (record.effect or {}).get("type"),
            "error": None,
        }
        if admission:
            retry = {"attempt": 0, "idempotency_key": None, "admission": True, "error": None}
        limit = {"name": blocked.name, "key": blocked.key, "kind": blocked.kind}
        return machine.limit_wait(
            committed,
            record,
            until=verdict.retry_at,
            limit=limit,
            retry=retry,
            wait_key=throttle.wait_key(committed.run_id, record.node_id),
            now=now,
        )

    @staticmethod
    def ready(waiting: WaitState | None, claimed: bool, now: datetime) -> dict[str, Any] | None:
        """The timer payload of a limit wait that a worker claimed before its re-check time (a
        release made it due): it goes on now. None for any other wait, or one this call just
        committed (not claimed: it waits to be woken)."""
        if claimed and throttle.is_limit_wait(waiting):
            assert waiting is not None and waiting.until is not None
            return {"until": iso(min(waiting.until, now))}
        return None

    # -- committing -----------------------------------------------------------------------------

    async def commit(
        self,
        store: Store,
        handle: RunHandle,
        state: RunState,
        state_json: str,
        records: Sequence[StepRecord],
        *,
        now: datetime,
        lease_until: datetime | None,
        max_record_bytes: int | None,
    ) -> RunHandle:
        """``store.commit_step``, or ``commit_limited`` when the step frees slots or waits."""
        run_id = state.run_id
        release = self._release.get(run_id)
        wait = self._wait.get(run_id)
        limited = isinstance(store, LimitStore)
        ending = limited and state.status.is_terminal and self.run_request(state.workflow_id)
        if not limited or (not release and wait is None and not ending):
            return await store.commit_step(
                handle,
                state,
                state_json,
                records,
                now=now,
                lease_until=lease_until,
                max_record_bytes=max_record_bytes,
            )
        frees = list(release or ())
        if isinstance(ending, Request):
            frees.append(ending)
        if not throttle.is_limit_wait(state.waiting):
            wait = None  # the wait could not be stored: the run failed instead
        assert isinstance(store, LimitStore)
        try:
            committed = await store.commit_limited(
                handle,
                state,
                state_json,
                records,
                release=frees,
                wait=wait,
                now=now,
                lease_until=lease_until,
                max_record_bytes=max_record_bytes,
            )
        except ConcurrentUpdateError:
            # Another claim took the run over: our slots died with our claim.
            self.forget(run_id)
            raise
        self.forget(run_id)
        return committed

    def forget(self, run_id: str) -> None:
        """Drop what this runtime noted for the run (its claim is over)."""
        self._release.pop(run_id, None)
        self._wait.pop(run_id, None)
