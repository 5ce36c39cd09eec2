"""``ScheduledRuntime``: a ``Runtime`` plus its ``Scheduler``, with the contract's event API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from ..core.config import RuntimeConfig
from ..core.effects import EffectHandler
from ..core.models import EffectType, RunState, WaitReason
from ..core.ports import Store
from ..core.registry import WorkflowRegistry
from ..core.runtime import Runtime
from ..core.schedules import CatchUp, Schedule, ScheduleStore, check_definition
from ..core.spec import WorkflowSpec
from ..errors import (
    InvalidArgumentError,
    SchemaOutOfDateError,
    StoreError,
)
from .scheduler import Scheduler, SchedulerStats, Wait

logger = logging.getLogger(__name__)


class ScheduledRuntime:
    """Starts, resumes and inspects runs, while its scheduler wakes the ones whose time came."""

    #: The runtime that starts, drives and resumes the runs (the original's field).
    runtime: Runtime
    #: The scheduler that wakes due runs (the original's field).
    scheduler: Scheduler

    def __init__(
        self,
        runtime: Runtime,
        scheduler: Scheduler,
        registry: WorkflowRegistry | None = None,
        *,
        owns_store: bool = False,
    ) -> None:
        if registry is not None and registry is not runtime.workflow_registry:
            runtime.set_workflow_registry(registry)
        self.runtime = runtime
        self.scheduler = scheduler
        #: Whether ``stop`` closes the runtime's store (``create_scheduled_runtime`` made it).
        self._owns_store = owns_store

    @property
    def registry(self) -> WorkflowRegistry:
        return self.runtime.workflow_registry

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def stats(self) -> SchedulerStats:
        return self.scheduler.stats

    def _workflow(self, state: RunState) -> WorkflowSpec:
        """The spec of the run's own workflow version."""
        return self.registry.get_or_raise(state.workflow_id, state.workflow_version)

    def _register(self, workflow: WorkflowSpec) -> WorkflowSpec:
        if self.registry.get(workflow.workflow_id, workflow.version) is None:
            self.registry.register(workflow)
        return workflow

    # -- runs ---------------------------------------------------------------------------------

    async def run(
        self,
        workflow: WorkflowSpec,
        vars: dict[str, Any] | None = None,
        *,
        actor_id: str | None = None,
        session_id: str | None = None,
        max_steps: int | None = None,
    ) -> tuple[str, RunState]:
        """Start a run and drive it here until it waits or ends (registers the workflow)."""
        return await self.runtime.run(
            self._register(workflow),
            vars,
            actor_id=actor_id,
            session_id=session_id,
            max_steps=max_steps,
        )

    async def start(
        self,
        *,
        workflow: WorkflowSpec,
        vars: dict[str, Any] | None = None,
        actor_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Create a run and leave it to the scheduler (here or in any worker process); other
        keywords as ``Runtime.start``."""
        return await self.runtime.start(
            workflow=self._register(workflow), vars=vars, actor_id=actor_id, **kwargs
        )

    async def tick(self, run_id: str, max_steps: int | None = None) -> RunState:
        state = await self.runtime.get_state(run_id)
        workflow = self._workflow(state)
        return await self.runtime.tick(workflow=workflow, run_id=run_id, max_steps=max_steps)

    async def get_state(self, run_id: str) -> RunState:
        return await self.runtime.get_state(run_id)

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        return await self.runtime.get_ledger(run_id)

    async def cancel_run(self, run_id: str, reason: str | None = None) -> RunState:
        return await self.runtime.cancel_run(run_id, reason)

    async def cancel_with_children(self, run_id: str, reason: str | None = None) -> list[RunState]:
        """Cancel the run and every unfinished run below it; returns the cancelled states."""
        return await self.scheduler.cancel_with_children(run_id, reason=reason)

    async def resume_subworkflow_parent(
        self, *, child_run_id: str, child_output: Mapping[str, Any] | None = None
    ) -> RunState | None:
        """See ``Scheduler.resume_subworkflow_parent`` (idempotent; parents resume by
        themselves)."""
        return await self.scheduler.resume_subworkflow_parent(
            child_run_id=child_run_id, child_output=child_output
        )

    # -- events -------------------------------------------------------------------------------

    async def resume_event(
        self, *, run_id: str, wait_key: str | None, payload: Mapping[str, Any] | None = None
    ) -> RunState:
        """Resume one run waiting on ``wait_key`` (errors as ``Runtime.resume``)."""
        return await self.scheduler.resume_event(run_id=run_id, wait_key=wait_key, payload=payload)

    async def respond(
        self, run_id: str, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> RunState:
        """Answer a run that waits for a person (``ask_user``) or an event, without knowing
        its wait key; returns its state after the answer.

        Raises ``RunNotWaitingError`` when it does not wait (answered, ended or cancelled:
        retrying cannot help), ``NotAnswerableError`` when it waits until a time (a timer, a
        retry) or for a child run, ``RunLeasedError`` while another answer or a worker holds
        it (``retryable``), ``RunNotFoundError`` for an unknown run.

        ``idempotency_key``: a retry with the key of an answer already committed (after a
        crash or a timeout, from any process) returns the run's state and changes nothing.
        """
        return await self.runtime._respond(run_id, payload, idempotency_key=idempotency_key)

    async def emit_event(
        self,
        wait_key: str,
        payload: Mapping[str, Any] | None = None,
        *,
        buffer_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[RunState]:
        """Resume every run waiting on ``wait_key``, each in its own transaction; with
        ``buffer_s`` keep the event for the runs that wait on it later; with
        ``idempotency_key`` happen once (see ``Runtime.emit_event``).

        Returns the states of the runs this call resumed; runs another caller resumed first
        are skipped.
        """
        return await self.runtime.emit_event(
            wait_key, payload, buffer_s=buffer_s, idempotency_key=idempotency_key
        )

    async def send(
        self, run_id: str, key: str, payload: Mapping[str, Any] | None = None
    ) -> RunState:
        """A durable message to one run, delivered when it waits on ``key`` (see
        ``Runtime.send``)."""
        return await self.runtime.send(run_id, key, payload)

    async def find_waiting_runs(
        self,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
        order_by: str = "updated",
        *,
        after: tuple[datetime, str] | None = None,
    ) -> list[RunState]:
        """Waiting runs (e.g. pending ``ask_user`` prompts), most recently updated first;
        ``order_by="deadline"``: earliest deadline first, the runs without one last.
        ``after``: the next page, after the ``(updated_at, run_id)`` of the last run of this
        one (``core.pages.key_of``; most recently updated order only)."""
        return await self.scheduler.find_waiting_runs(
            wait_reason=wait_reason,
            workflow_id=workflow_id,
            limit=limit,
            order_by=order_by,
            after=after,
        )

    # -- cron schedules -----------------------------------------------------------------------

    def _schedules(self) -> ScheduleStore:
        schedules: ScheduleStore | None = getattr(self.store, "schedules", None)
        if schedules is None:
            raise InvalidArgumentError(
                f"{type(self.store).__name__} keeps no schedules (it has no `schedules`); "
                "use a MemoryStore, a SqlStore or the original's store pairs"
            )
        return schedules

    async def schedule(
        self,
        name: str,
        workflow: WorkflowSpec | str,
        cron: str,
        vars: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        catch_up: CatchUp = "latest",
    ) -> Schedule:
        """Declare a cron schedule: a run of ``workflow`` at each time ``cron`` names in
        ``timezone``, with ``vars`` plus ``{"scheduled_at": <ISO fire time>}``.

        Declaring the same definition again is a no-op (declare your schedules at startup in
        every process); a new definition under the same name replaces it and recomputes the
        next fire time. The schedule lives in the store (it survives restarts on SQL stores),
        and any scheduler whose registry has the workflow fires it, one run per fire time.
        ``catch_up`` after a downtime: ``"latest"`` one run for the newest missed fire time,
        ``"all"`` one per missed time (at most ``core.schedules.MAX_CATCH_UP_RUNS`` per poll
        cycle), ``"none"`` none (a fire time less than a minute late is not missed).
        ``cron``: five fields, or six with seconds first (``"*/5 * * * * *"``).

        Every argument is checked before any I/O: ``InvalidArgumentError`` names a bad cron
        expression, time zone or ``catch_up``. Returns the schedule as stored.
        """
        workflow_id = workflow if isinstance(workflow, str) else workflow.workflow_id
        schedule = check_definition(
            name,
            workflow_id,
            cron,
            tz=timezone,
            catch_up=catch_up,
            vars=vars,
            now=self.runtime.config.clock(),
        )
        if not isinstance(workflow, str):
            self._register(workflow)
        stored, written = await self._schedules().put(schedule)
        if written:
            self.scheduler.schedules_changed()
        return stored

    async def unschedule(self, name: str) -> bool:
        """Delete the schedule; whether it existed (runs it started are untouched)."""
        return await self._schedules().delete(name)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule (any workflow's), by name: definition, next fire time, last run."""
        return await self._schedules().list()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Whether the scheduler's poll loop runs."""
        return self.scheduler.is_running

    async def start_scheduler(self) -> None:
        """Start the scheduler unless it runs already."""
        if not self.scheduler.is_running:
            await self.scheduler.start()

    async def stop(self, timeout: float = 5.0, *, grace_s: float | None = None) -> None:
        """Stop the scheduler (in-flight runs get ``timeout`` seconds, or ``grace_s``, to
        finish) and close what we own."""
        await self.scheduler.stop(timeout, grace_s=grace_s)
        await self.runtime.aclose()
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> ScheduledRuntime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def create_scheduled_runtime(
    database_url: str | None = None,
    store: Store | None = None,
    workflows: WorkflowRegistry | Iterable[WorkflowSpec] | None = None,
    effect_handlers: Mapping[EffectType, EffectHandler] | None = None,
    effect_policy: Any = None,
    poll_interval_s: float = 1.0,
    auto_start: bool = True,
    lease_s: float = 30.0,
    max_concurrency: int = 100,
    *,
    run_store: Any = None,
    ledger_store: Any = None,
    artifact_store: Any = None,
    on_run_resumed: Callable[[RunState], None] | None = None,
    on_run_failed: Callable[[str, Exception], None] | None = None,
    config: RuntimeConfig | None = None,
    context: Any = None,
    listen: bool = True,
    wait: Wait | None = None,
) -> ScheduledRuntime:
    """A ``ScheduledRuntime`` on ``store``, on a ``SqlStore(database_url)``, on the original's
    pair ``run_store=`` / ``ledger_store=``, or in memory.

    ``on_run_resumed`` / ``on_run_failed``: see ``Scheduler``. With ``auto_start`` the
    scheduler task starts at once; ``await sr.stop()`` (or ``async with sr:``) stops it.
    ``listen=False``: no Postgres ``NOTIFY`` wakes the scheduler (it polls); ``wait``: how it
    sleeps between cycles (see ``Scheduler``; tests pass one on virtual time,
    ``tests/helpers/clock.py``). ``run_store=`` / ``ledger_store=``: the original's pair of
    stores (e.g. ``JsonFileRunStore(d)`` and ``JsonlLedgerStore(d)``), driven as
    ``Runtime(run_store=..., ledger_store=...)`` drives them; ``stop()`` closes the store made
    for them.

    A SQL store's schema is checked first: ``SchemaOutOfDateError`` for a database that needs
    ``abstractruntime db upgrade`` (a SQLite file this store creates is migrated by itself),
    before anything starts. A database that cannot be reached yet is logged, and the
    scheduler retries it with backoff (it may be restarting with the deploy).
    """
    from ..storage.sql import SqlStore

    pair = run_store if run_store is not None else ledger_store
    if sum(given is not None for given in (database_url, store, pair)) > 1:
        raise InvalidArgumentError("pass one of database_url=, store= or run_store=/ledger_store=")
    # The SqlStore made here is ours to close; a store made for a pair (or memory) belongs
    # to the runtime, whose aclose closes it.
    owns_store = database_url is not None
    if database_url is not None:
        store = SqlStore(database_url)
    if isinstance(store, SqlStore):
        try:
            await store.check()  # refuse now rather than fail every poll cycle
        except SchemaOutOfDateError:
            if owns_store:
                await store.close()
            raise
        except StoreError as exc:
            logger.warning("%s; the scheduler will retry", exc)
    if config is None:
        config = RuntimeConfig(lease_s=lease_s)
    runtime = Runtime(
        run_store,
        ledger_store,
        store=store,
        artifact_store=artifact_store,
        effect_handlers=effect_handlers,
        workflow_registry=workflows if isinstance(workflows, WorkflowRegistry) else None,
        effect_policy=effect_policy,
        config=config,
        context=context,
    )
    if workflows is not None and not isinstance(workflows, WorkflowRegistry):
        for workflow in workflows:
            runtime.workflow_registry.register(workflow)
    scheduler = Scheduler(
        runtime,
        poll_interval_s=poll_interval_s,
        on_run_resumed=on_run_resumed,
        on_run_failed=on_run_failed,
        max_concurrency=max_concurrency,
        listen=listen,
        wait=wait,
    )
    scheduled = ScheduledRuntime(runtime, scheduler, owns_store=owns_store)
    if auto_start:
        await scheduler.start()
    return scheduled
