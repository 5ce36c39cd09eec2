"""The ``Runtime``: the public API, and the driver that moves runs through the step machine.

The life of a step: claim the run (a lease, ``leases.py``) → run the node's handler → perform
the effect its plan asks for → apply the outcome (``machine.py``, no I/O) → commit the new state
with the step's ledger record in one transaction (``Store.commit_step``) → release the run when
it waits or ends. The runtime loads a run once per call and then keeps the state, its version
and the ledger head in hand; the store's optimistic version check makes sure two runtimes never
both commit a step of one run.

A little over 600 lines: the public API's docstrings are its reference documentation, and the
driver's steps read best next to each other.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any

from ..errors import (
    ConcurrentUpdateError,
    InvalidArgumentError,
    InvalidTypeError,
    RunExistsError,
    RunLeasedError,
    RunNotWaitingError,
    SerializationError,
    SnapshotNotFoundError,
    StoreError,
    WaitKeyMismatchError,
    WorkflowNotFoundError,
)
from . import events, idempotency, kernel, limits, machine, subworkflows, timeouts, versions
from .config import RuntimeConfig
from .context import StepContext
from .crashpoints import crash_point
from .due import DueListeners
from .effects import EffectHandler, EffectOutcome, accepting_next_node, builtin_handlers
from .kernel import check_plan, due_at, encode_state
from .leases import Leases
from .limiter import Limiter
from .machine import Failure, Transition
from .models import (
    EffectType,
    LimitWarning,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
)
from .paired import store_for_pair
from .policy import DefaultEffectPolicy, EffectPolicy
from .ports import RunHandle, Store
from .registry import WorkflowRegistry
from .serde import decode, iso, utc_now
from .snapshot import Snapshot
from .spec import WorkflowSpec
from .telemetry import Telemetry
from .telemetry import current as current_telemetry
from .versions import MigrationReport, VarsFn
from .views import StoreLedgerView, StoreRunView

__all__ = ["DefaultRunContext", "EffectOutcome", "Runtime"]


class DefaultRunContext:
    """The original's default ``Runtime(context=...)``: tells the time (node handlers here get a
    ``StepContext``, which has ``now_iso`` too)."""

    def now_iso(self) -> str:
        return iso(utc_now())


@dataclass
class _Held:
    """A claimed run as the driver holds it between steps.

    ``handle`` has the version, ledger position and head of the run's last commit, and the
    state the run is in now; they differ while pure transitions are ``pending``: those are
    committed together with the next step (or when the batch is full or old).
    """

    handle: RunHandle
    pending: list[StepRecord] = field(default_factory=list)

    @property
    def state(self) -> RunState:
        return self.handle.state


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


#: How often cancel_run / restore_snapshot retry when steps keep landing meanwhile.
_OVERRIDE_ATTEMPTS = 20


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Runtime:
    """Starts, advances, resumes and cancels runs; every step is durable in its store."""

    def __init__(
        self,
        run_store: Any = None,
        ledger_store: Any = None,
        *,
        store: Store | None = None,
        effect_handlers: Mapping[EffectType, EffectHandler] | None = None,
        workflow_registry: WorkflowRegistry | Iterable[WorkflowSpec] | None = None,
        artifact_store: Any = None,
        effect_policy: EffectPolicy | None = None,
        config: RuntimeConfig | None = None,
        context: Any = None,
    ) -> None:
        if store is not None and (run_store is not None or ledger_store is not None):
            raise InvalidArgumentError("pass either store= or run_store=/ledger_store=, not both")
        owned: list[Callable[[], Awaitable[None]]] = []
        if store is None:
            store = store_for_pair(run_store, ledger_store, artifact_store=artifact_store)
            if run_store is not None or ledger_store is not None:
                owned.append(store.close)  # a file store holds its directory's lock until then
        self.store: Store = store
        self._config = config or RuntimeConfig()
        self.context = context
        self._artifact_store = artifact_store
        self.set_workflow_registry(workflow_registry)
        self.set_effect_policy(effect_policy)
        self._handlers: dict[EffectType, EffectHandler] = builtin_handlers(self._config.clock)
        for effect_type, handler in (effect_handlers or {}).items():
            self._handlers[EffectType(effect_type)] = accepting_next_node(handler)
        #: The runs this runtime holds a lease on, and their heartbeat.
        self.leases = Leases(store, self._config)
        #: Shared concurrency and rate limits (``RuntimeConfig.limits``, ``max_concurrent_runs``).
        self.limiter = Limiter(self._config.limits, lambda wid: self.workflow_registry.get(wid))
        self._due = DueListeners()
        #: Closed by ``aclose``: what a factory (``create_remote_runtime``...) made for this
        #: runtime alone, such as its store or its HTTP client.
        self.owned_resources: list[Callable[[], Awaitable[None]]] = owned

    # -- what the runtime is made of (the original's accessors) -------------------------------

    @property
    def config(self) -> RuntimeConfig:
        """The runtime's configuration."""
        return self._config

    @property
    def run_store(self) -> Any:
        """The runs, with the original's ``RunStore`` / ``QueryableRunStore`` methods: the
        ``run_store`` given to the constructor, else a view of ``store``."""
        return getattr(self.store, "run_store", None) or StoreRunView(self.store)

    @property
    def ledger_store(self) -> Any:
        """The ledgers, with the original's ``LedgerStore`` methods (see ``run_store``)."""
        return getattr(self.store, "ledger_store", None) or StoreLedgerView(self.store)

    @property
    def artifact_store(self) -> Any:
        """The artifact store given to the constructor or set, else None (as in the original;
        ``store.artifacts`` is always there)."""
        return self._artifact_store

    def set_artifact_store(self, store: Any) -> None:
        """Use ``store`` for artifacts from now on (``artifact_store``)."""
        self._artifact_store = store

    @property
    def workflow_registry(self) -> WorkflowRegistry:
        """Workflows this runtime can find by id (subworkflows, runs claimed by a scheduler)."""
        return self._workflow_registry

    def set_workflow_registry(
        self, registry: WorkflowRegistry | Iterable[WorkflowSpec] | None
    ) -> None:
        """Find workflows in ``registry`` from now on (a list of specs is made a registry)."""
        if not isinstance(registry, WorkflowRegistry):
            registry = WorkflowRegistry(registry or ())
        self._workflow_registry = registry

    @property
    def effect_policy(self) -> EffectPolicy:
        """Attempts, backoff and idempotency keys of effects (default: one attempt each)."""
        return self._effect_policy

    def set_effect_policy(self, policy: EffectPolicy | None) -> None:
        """Use ``policy`` for the effects performed from now on (None: the default)."""
        if policy is None:
            policy = DefaultEffectPolicy()
        elif not isinstance(policy, EffectPolicy):
            raise InvalidTypeError(
                f"effect_policy must have max_attempts, backoff_seconds and idempotency_key "
                f"(e.g. RetryPolicy()), got {type(policy).__name__}"
            )
        self._effect_policy: EffectPolicy = policy

    @property
    def telemetry(self) -> Telemetry:
        """The hooks this runtime reports its steps to: the process's (``core/telemetry.py``;
        ``abstractruntime.observability.instrument()`` installs OpenTelemetry's)."""
        return current_telemetry()

    # -- public API ---------------------------------------------------------------------------

    async def start(
        self,
        *,
        workflow: WorkflowSpec,
        vars: dict[str, Any] | None = None,
        actor_id: str | None = None,
        session_id: str | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Create a run at the workflow's entry node (status ``running``); returns its id.

        The run is committed unclaimed, so a worker (``abstractruntime worker``) may pick it up
        at once; ``tick`` drives it in this process instead. ``RunExistsError`` when ``run_id``
        is taken.

        ``idempotency_key``: a second start of the workflow with the same key, in any process,
        creates nothing and returns the first one's run id (the id is derived from the key:
        pass ``run_id`` or the key, not both).
        """
        key = idempotency.check_key(idempotency_key)
        if key is not None:
            if run_id is not None:
                raise InvalidArgumentError("pass run_id or idempotency_key to start(), not both")
            run_id = idempotency.run_id_for(workflow.workflow_id, key)
        state = machine.new_run(
            workflow,
            vars,
            now=self.config.clock(),
            run_id=run_id,
            actor_id=actor_id,
            session_id=session_id,
            parent_run_id=parent_run_id,
            limits=self.config.to_limits_dict(),
        )
        state.trace_context = self.telemetry.run_created(state)
        try:
            await self.store.create_run(state, self.encode(state))
        except RunExistsError:
            if key is None:
                raise
            return state.run_id  # started by an earlier call with the key
        self._due.announce()
        return state.run_id

    async def tick(
        self, *, workflow: WorkflowSpec, run_id: str, max_steps: int | None = None
    ) -> RunState:
        """Advance the run until it waits, completes, fails or ``max_steps`` steps ran.

        The run is claimed for the duration (``RunLeasedError`` if another worker drives it).
        """
        handle = await self._claim(run_id)
        return (await self._drive(workflow, handle, max_steps)).state

    async def resume(
        self,
        *,
        workflow: WorkflowSpec,
        run_id: str,
        wait_key: str | None,
        payload: Mapping[str, Any] | None = None,
        max_steps: int | None = None,
        idempotency_key: str | None = None,
    ) -> RunState:
        """Deliver ``payload`` to a waiting run and continue it at its ``resume_to_node``.

        ``idempotency_key``: the answer's ledger record keeps it, in the commit of the answer;
        a call with a key whose answer is committed already (a retry after a crash or a
        timeout, in any process) changes nothing and returns the run's current state.

        Raises ``WaitKeyMismatchError`` (a ``ValueError``) when ``wait_key`` is not the key the
        run waits on (``wait_key=None`` skips that check, as in the original),
        ``RunNotWaitingError`` when it does not wait (e.g. another caller resumed it first, or
        its wait timed out: an answer at or after the wait's ``timeout_at`` loses, and this call
        then times the run out itself if no scheduler has yet) and ``RunLeasedError`` while
        another worker holds it.
        """
        answer = self._answer(payload)
        key = idempotency.check_key(idempotency_key)
        if key is not None and await self._answered(run_id, key):
            return await self.get_state(run_id)
        return await self._resume(workflow, run_id, wait_key, answer, max_steps, key)

    def _answer(self, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """A copy of a resume payload; a payload that cannot be stored is the caller's error,
        raised before anything changes."""
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise InvalidTypeError(f"resume payload must be a dict, got {type(payload).__name__}")
        payload = dict(payload)
        machine.check_payload(payload, "resume payload", self.config.max_payload_bytes)
        return payload

    async def _resume(
        self,
        workflow: WorkflowSpec,
        run_id: str,
        wait_key: str | None,
        payload: dict[str, Any],
        max_steps: int | None,
        key: str | None,
    ) -> RunState:
        """``resume`` once its arguments are checked (and ``key`` found not yet answered)."""
        handle = await self._claim(run_id)
        try:
            self._check_workflow(workflow, handle.state)
            state, waiting = handle.state, handle.state.waiting
            if state.status is not RunStatus.WAITING or waiting is None:
                raise kernel.not_waiting(state)
            if wait_key is not None and waiting.wait_key != wait_key:
                raise WaitKeyMismatchError(
                    f"wait_key mismatch: run {run_id!r} waits on {waiting.wait_key!r}, "
                    f"not {wait_key!r}"
                )
            late = timeouts.payload(waiting, self.config.clock()) is not None
            if not late:
                held = _Held(handle)
                now = self.config.clock()
                transition = machine.resume(state, workflow, payload, now)
                if key is not None:
                    transition.record.idempotency_key = idempotency.answer_key(key)
                await self._commit(held, transition)
        except BaseException:
            await self._release(handle)
            raise
        if late:  # the deadline came first: the timeout wins, whoever commits it
            with contextlib.suppress(ConcurrentUpdateError, RunLeasedError):
                await self._drive(workflow, handle, max_steps)
            deadline = iso(waiting.timeout_at) if waiting.timeout_at else "?"
            raise RunNotWaitingError(
                f"run {run_id!r} timed out waiting on {waiting.wait_key!r} at {deadline}; "
                "the answer came too late"
            )
        try:
            return (await self._drive(workflow, held.handle, max_steps)).state
        except (ConcurrentUpdateError, RunLeasedError):
            # The resume itself is committed; a cancel, a restore or another worker took the
            # run over before its next step did. Report where the run is, not a lost resume.
            return await self.get_state(run_id)

    async def _answered(self, run_id: str, key: str) -> bool:
        """Whether an answer with idempotency ``key`` is committed to the run."""
        return await self.store.find_effect(run_id, idempotency.answer_key(key)) is not None

    async def _respond(
        self,
        run_id: str,
        payload: Mapping[str, Any],
        workflow: WorkflowSpec | None = None,
        idempotency_key: str | None = None,
    ) -> RunState:
        """Answer the wait of a run that waits for a person or an event, whatever its key
        (``ScheduledRuntime.respond``, ``runs respond``, the HTTP API); ``workflow``: the
        run's spec (default: from the registry, at the run's version).

        Every loser of a race gets ``RunNotWaitingError`` in the same words, but for
        ``RunLeasedError`` while the winner still holds the run (``retryable``).
        """
        answer = self._answer(payload)
        key = idempotency.check_key(idempotency_key)
        if key is not None and await self._answered(run_id, key):
            return await self.get_state(run_id)  # answered by an earlier call with the key
        state = await self.get_state(run_id)
        kernel.check_answerable(state)
        assert state.waiting is not None
        if workflow is None:
            workflow = self.workflow_registry.get_or_raise(
                state.workflow_id, state.workflow_version
            )
        try:
            return await self._resume(workflow, run_id, state.waiting.wait_key, answer, None, key)
        except WaitKeyMismatchError:  # the wait we read was answered first
            raise kernel.not_waiting(await self.get_state(run_id)) from None

    async def emit_event(
        self,
        key: str,
        payload: Mapping[str, Any] | None = None,
        *,
        buffer_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[RunState]:
        """Resume every run waiting on ``key`` (``wait_event``, or ``ask_user`` with that
        ``wait_key``) with ``payload``, each in its own transaction; returns the states of the
        runs this call resumed (runs another caller resumed first are skipped).

        ``buffer_s`` (default ``RuntimeConfig.event_buffer_s``; 0: off): the event is also kept
        that long, and a run that starts waiting on ``key`` before it expires resumes with it
        at once; each run receives it once. Runs whose workflow this runtime does not know are
        left to a worker that knows it (with a buffer, they are made due for one). See
        docs/scheduler.md for the semantics of each race.

        ``idempotency_key``: a second call with the key, in any process, buffers nothing and
        resumes nothing; it returns the current states of the runs the first one resumed (a
        first call that crashed half-way is finished by the second, each run resumed once).
        """
        return await events.emit(self, key, payload, buffer_s, idempotency_key)

    async def send(
        self, run_id: str, key: str, payload: Mapping[str, Any] | None = None
    ) -> RunState:
        """Send a durable message to one run: it is kept until the run waits on ``key`` and then
        delivered as that wait's payload, one message per wait, in the order sent, once.

        A run waiting on ``key`` already receives it now (and is driven on here when this
        runtime knows its workflow, else made due for a worker). Returns the run's state after
        the call. ``RunNotFoundError`` for an unknown run, ``RunFinishedError`` for one that has
        ended.
        """
        return await events.send(self, run_id, key, payload)

    async def run(
        self,
        workflow: WorkflowSpec,
        vars: dict[str, Any] | None = None,
        *,
        actor_id: str | None = None,
        session_id: str | None = None,
        max_steps: int | None = None,
    ) -> tuple[str, RunState]:
        """``start`` then ``tick`` in this process: returns the run id and where it stopped."""
        now = self.config.clock()
        state = machine.new_run(
            workflow,
            vars,
            now=now,
            actor_id=actor_id,
            session_id=session_id,
            limits=self.config.to_limits_dict(),
        )
        state.trace_context = self.telemetry.run_created(state)
        # Created already claimed by us, so no worker can snatch it between start and tick.
        handle = self.leases.track(
            await self.store.create_run(
                state, self.encode(state), lease=(self.config.owner, self.leases.until(now))
            )
        )
        return state.run_id, (await self._drive(workflow, handle, max_steps)).state

    async def cancel_run(self, run_id: str, reason: str | None = None) -> RunState:
        """Cancel a run that is not finished; a finished run is returned unchanged.

        Cancelling wins over a worker that is driving the run: its next commit fails and it
        drops the run.
        """
        handle = await self._override(
            run_id, lambda current, now: machine.cancel(current.state, reason, now)
        )
        return handle.state

    async def get_state(self, run_id: str) -> RunState:
        """The run's committed state; ``RunNotFoundError`` (a ``KeyError``) when unknown."""
        return (await self.store.load_run(run_id)).state

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        """The run's ledger records as dicts, oldest first."""
        return await self.store.get_ledger(run_id)

    async def get_limit_status(self, run_id: str) -> dict[str, Any]:
        """Iterations, tokens and history of the run against its ``vars["_limits"]``:
        ``{"iterations": {"current", "max", "pct", "warning"}, "tokens": {"estimated_used",
        "max", "pct", "warning"}, "history": {"max_messages"}}``."""
        return limits.status(await self.get_state(run_id))

    def check_limits(self, run: RunState) -> list[LimitWarning]:
        """A ``LimitWarning`` per limit of ``run`` at its warning threshold or over it. The
        runtime warns; the workflow decides what to do."""
        return limits.warnings(run)

    async def update_limits(self, run_id: str, updates: Mapping[str, Any]) -> None:
        """Change the run's limits (``max_tokens``, ``max_iterations``, ``current_iteration``,
        ... ; other keys are ignored, as in the original).

        Committed with a ledger record noting the change. ``RunLeasedError`` while a worker
        drives the run (try again once it waits), ``RunNotFoundError`` for an unknown run.
        """
        if not isinstance(updates, Mapping):
            raise InvalidArgumentError(
                f"limit updates must be a dict, got {type(updates).__name__}"
            )
        note = {"limits_updated": {k: v for k, v in updates.items() if k in limits.UPDATABLE}}
        held = _Held(await self._claim(run_id))
        try:
            state = held.state
            vars = limits.updated(state, updates)
            await self._commit_as_is(held, machine.set_vars(state, vars, note, self.config.clock()))
        finally:
            await self._release(held.handle)

    async def migrate_runs(
        self,
        workflow_id: str,
        from_version: str,
        to_version: str,
        node_map: Mapping[str, str] | None = None,
        vars_fn: VarsFn | None = None,
        dry_run: bool = False,
    ) -> MigrationReport:
        """Move the runs of ``workflow_id`` at ``from_version`` to ``to_version`` (which must
        be in ``workflow_registry``), each in one transaction with a ``migrated`` ledger record.

        The runs moved are those not finished (waiting, or running between two steps); a run a
        worker drives right now is skipped (run the migration again later). ``node_map`` renames
        nodes (``{"old": "new"}``; a node it does not name keeps its id), for the run's current
        node and the nodes its wait continues at; a run with a node the target version lacks is
        reported in ``skipped`` with the reason, never moved. ``vars_fn(vars) -> vars`` (plain or
        async) rewrites each run's vars; a run for which it raises is skipped. ``dry_run``:
        report what would move, change nothing.

        Raises ``InvalidArgumentError`` for bad arguments and ``WorkflowVersionNotFoundError``
        when ``to_version`` is not registered, before anything changes.
        """
        return await versions.migrate_runs(
            self, workflow_id, from_version, to_version, node_map, vars_fn, dry_run
        )

    async def restore_snapshot(self, snapshot_id: str) -> RunState:
        """Make a snapshot's state the current state of its run (``snapshot.run_id``).

        The state and a ledger record whose ``result`` holds ``{"restored": snapshot_id}`` are
        committed in one transaction. Like ``cancel_run``, restoring wins over a worker that is
        driving the run: the worker's next commit fails and it drops the run; a restored
        ``running`` run is then due for any worker, a waiting one waits again.

        Raises ``SnapshotNotFoundError`` or ``RunNotFoundError`` (both ``KeyError``).
        """
        snapshot = await self._load_snapshot(snapshot_id)
        handle = await self._override(
            snapshot.run_id, lambda current, now: machine.restore(current.state, snapshot, now)
        )
        return handle.state

    async def fork_snapshot(self, snapshot_id: str) -> str:
        """Start a new run from a snapshot's state; returns the new run's id.

        The new run has the snapshot's status, node and vars (a waiting snapshot forks a waiting
        run), ``parent_run_id`` = the snapshot's run, and a first ledger record whose ``result``
        is ``{"forked_from": {"snapshot_id", "run_id", "step_id"}}``. The original run is not
        touched. A wait key that names the original run (``user:<run_id>:<node>``, the
        ``ask_user`` default) is renamed to the new run, so answering one does not answer both.
        """
        snapshot = await self._load_snapshot(snapshot_id)
        now = self.config.clock()
        transition = machine.fork(snapshot, now)
        state = transition.state
        # Created claimed by us, so no worker drives it before its first record is in; the
        # commit of that record lets go of it (a running fork is then due for any worker).
        handle = await self.store.create_run(
            state, self.encode(state), lease=(self.config.owner, self.leases.until(now))
        )
        await self._commit_as_is(_Held(replace(handle, owner=None)), transition)
        return state.run_id

    def add_due_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever this runtime leaves a run that will become due by itself
        (a new run, a timer, a released run), so a scheduler in this process can re-plan its
        sleep at once; returns a function that removes the listener."""
        return self._due.add(callback)

    @property
    def held_runs(self) -> frozenset[str]:
        """Ids of the runs this runtime holds a lease on right now."""
        return self.leases.held

    async def drive_claimed(self, handle: RunHandle, max_steps: int | None = None) -> RunHandle:
        """Drive a run claimed by ``claim_due`` (the scheduler's entry point)."""
        handle = self.leases.track(handle)
        crash_point("after_claim")
        workflow = self.workflow_registry.for_run(handle.state)
        if workflow is None:
            await self._release(handle)
            state = handle.state
            raise WorkflowNotFoundError(
                f"workflow {state.workflow_id!r} version {state.workflow_version!r} is not "
                "registered"
            )
        return await self._drive(workflow, handle, max_steps)

    async def aclose(self) -> None:
        """Stop the lease heartbeat (leases still held are left to expire) and close what
        this runtime owns (``owned_resources``, newest first)."""
        await self.leases.aclose()
        while self.owned_resources:
            await self.owned_resources.pop()()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- helpers shared with subworkflows.py ----------------------------------------------------

    def encode(self, state: RunState) -> str:
        """The state's JSON as stored (``SerializationError`` / ``SizeLimitError``)."""
        return encode_state(state, self.config.max_state_bytes)

    async def _claim(self, run_id: str) -> RunHandle:
        handle = await self.leases.claim(run_id)
        crash_point("after_claim")
        return handle

    async def _release(self, handle: RunHandle) -> None:
        self.limiter.forget(handle.state.run_id)
        if handle.owner is not None:
            now = self.config.clock()
            await self.leases.release(handle, now)
            if due_at(handle.state, now) is not None:
                self._due.announce()

    async def _load_snapshot(self, snapshot_id: str) -> Snapshot:
        snapshot = await self.store.snapshots.load(snapshot_id)
        if snapshot is None:
            raise SnapshotNotFoundError(snapshot_id)
        return snapshot

    async def _override(
        self, run_id: str, transition: Callable[[RunHandle, datetime], Transition | None]
    ) -> RunHandle:
        """Commit an operator's transition (cancel, restore) over whatever the run's newest
        state is, winning over a worker that drives it: a step that lands meanwhile makes us
        decide again on the newer state."""
        for _ in range(_OVERRIDE_ATTEMPTS):
            handle = await self.store.load_run(run_id)
            now = self.config.clock()
            decided = transition(handle, now)
            if decided is None:
                return handle
            try:
                return await self._commit_as_is(_Held(handle), decided)
            except ConcurrentUpdateError:
                continue
        raise ConcurrentUpdateError(run_id, -1)

    @staticmethod
    def _check_workflow(workflow: WorkflowSpec, state: RunState) -> None:
        if workflow.workflow_id != state.workflow_id:
            raise InvalidArgumentError(
                f"run {state.run_id!r} belongs to workflow {state.workflow_id!r}, "
                f"not {workflow.workflow_id!r}"
            )
        if workflow.version != state.workflow_version:
            raise InvalidArgumentError(
                f"run {state.run_id!r} started on version {state.workflow_version!r} of "
                f"workflow {state.workflow_id!r} and is driven by that version only, not "
                f"{workflow.version!r}: pass that version's spec, or move the run with "
                "migrate_runs()"
            )

    # -- the driver ---------------------------------------------------------------------------

    async def _drive(
        self, workflow: WorkflowSpec, handle: RunHandle, max_steps: int | None
    ) -> RunHandle:
        """Step a claimed run until it waits, ends or ``max_steps`` ran; always lets go of it.

        A run that stops to wait on a key for which a message or a buffered event is there
        already resumes with it at once (``events.py``)."""
        handle = await self._drive_once(workflow, handle, max_steps)
        while (found := await events.deliver_pending(self, workflow, handle.state)) is not None:
            handle = await self._drive_once(workflow, found, max_steps)
        return handle

    async def _drive_once(
        self, workflow: WorkflowSpec, handle: RunHandle, max_steps: int | None
    ) -> RunHandle:
        held = _Held(handle)
        try:
            self._check_workflow(workflow, handle.state)
            await self._steps(workflow, held, max_steps)
            if held.pending:  # the run stopped after pure transitions (max_steps): commit them
                await self._store(held, held.state, held.handle.state_json, [])
        except BaseException:
            with contextlib.suppress(Exception):
                await self._release(held.handle)
            raise
        await self._release(held.handle)
        state = held.state
        if state.status.is_terminal and state.parent_run_id:
            await subworkflows.wake_parent(self, state)
        return held.handle

    async def _steps(self, workflow: WorkflowSpec, held: _Held, max_steps: int | None) -> None:
        limit = self.config.max_steps if max_steps is None else max_steps
        steps = 0
        while steps < limit:
            state = held.state
            if state.status is RunStatus.RUNNING:
                if held.handle.owner is None:
                    return
                with self.telemetry.step(held):
                    await self._step(workflow, held)
                steps += 1
                continue
            waiting = state.waiting
            if state.status is not RunStatus.WAITING or waiting is None:
                return
            if waiting.reason is WaitReason.SUBWORKFLOW:
                payload = await subworkflows.child_result(self, waiting)
            else:
                payload = machine.timer_payload(waiting, self.config.clock())
                if payload is None:  # a limit wait woken by a release goes on at once
                    claimed = held.handle.owner is not None
                    payload = self.limiter.ready(waiting, claimed, self.config.clock())
            now = self.config.clock()
            # A child's output wins over the timeout; a child that failed or was cancelled after
            # the deadline (a timed-out parent cancels it first) does not.
            timed_out = not isinstance(payload, dict) and timeouts.payload(waiting, now) is not None
            if payload is None and not timed_out:
                return
            if held.handle.owner is None:  # we just committed the wait; claim it back to go on
                try:
                    held.handle = await self._claim(state.run_id)
                except RunLeasedError:
                    return  # somebody else is on it already
                if held.state.waiting != waiting:
                    continue
            now = self.config.clock()
            if timed_out:
                if waiting.reason is WaitReason.SUBWORKFLOW:
                    fresh = await subworkflows.cancel_for_timeout(self, held.handle, waiting)
                    if fresh is None:
                        return  # the parent changed meanwhile: decide again on a later claim
                    held.handle = fresh
                transition = machine.time_out(held.state, workflow, now)
                if transition is None:
                    return
                await self._commit(held, transition)
            elif isinstance(payload, str):
                record = machine.new_record(held.state, now, StepStatus.FAILED)
                await self._commit_failure(held, record, payload)
            elif machine.retry_of(held.state.waiting) is not None:
                retry = machine.start_retry(held.state)
                with self.telemetry.step(held):
                    await self._step(workflow, held, retry)
                steps += 1
            else:
                assert payload is not None
                await self._commit(held, machine.resume(held.state, workflow, payload, now))

    async def _step(
        self, workflow: WorkflowSpec, held: _Held, retry: dict[str, Any] | None = None
    ) -> None:
        """Run the current node and perform its plan; ``retry`` continues a failed effect."""
        state = held.state
        node_id = state.current_node or ""
        record = machine.new_record(state, self.config.clock(), StepStatus.COMPLETED)
        refused = await self.limiter.admit(
            self.store, workflow, held.handle, bool(held.pending), retry, record.started_at
        )
        if refused is not None:  # max_concurrent_runs: wait durably for a run of it to end
            wait = self.limiter.wait(
                self._committed_state(held), record, refused, record.started_at, admission=True
            )
            await self._commit(held, wait)
            return
        handler = workflow.nodes.get(node_id)
        if handler is None:
            missing = f"workflow {workflow.workflow_id!r} has no node {node_id!r}"
            await self._commit_failure(held, record, missing)
            return
        ctx = StepContext(
            run_id=state.run_id,
            node_id=node_id,
            step_id=record.step_id,
            workflow_id=workflow.workflow_id,
            context=self.context,
            _clock=self.config.clock,
        )
        try:
            plan = await _maybe_await(handler(state, ctx))
        except Exception as exc:
            await self._commit_failure(held, record, f"node {node_id!r} raised {_describe(exc)}")
            return
        crash_point("after_handler")
        problem = check_plan(workflow, node_id, plan)
        if problem:
            await self._commit_failure(held, record, problem)
            return
        assert isinstance(plan, StepPlan)
        if plan.effect is not None:
            done = await self._perform(held, plan, record, retry)
            if not isinstance(done, Failure):
                await self._commit(held, done)
            elif done.retryable:
                await self._commit_attempt_failure(held, plan, record, done.error)
            else:
                await self._commit_failure(held, record, done.error)
            return
        now = self.config.clock()
        if plan.complete_output is not None:
            await self._commit(held, machine.complete(state, record, plan.complete_output, now))
        else:
            assert plan.next_node is not None
            await self._hold(held, machine.goto(state, record, plan.next_node, now))

    async def _perform(
        self,
        held: _Held,
        plan: StepPlan,
        record: StepRecord,
        retry: dict[str, Any] | None,
    ) -> Transition | Failure:
        """Perform the plan's effect and apply its outcome to the state."""
        state = held.state
        effect = plan.effect
        assert effect is not None
        name = effect.type.value
        timeouts.normalise(effect)  # a timeout_at datetime, recorded as its ISO text
        record.effect = effect.to_dict()
        try:  # an effect that could not be recorded is not performed at all
            machine.check_payload(
                effect.payload, f"the payload of effect {name!r}", self.config.max_payload_bytes
            )
        except SerializationError as exc:
            return Failure(f"node {record.node_id!r}: {exc}")
        if retry is not None:  # the same effect again: same key, next attempt number
            record.attempt = int(retry.get("attempt", 0)) + 1
            record.idempotency_key = retry.get("idempotency_key")
        if record.idempotency_key is None:
            record.idempotency_key = self.effect_policy.idempotency_key(
                run=state, node_id=record.node_id, effect=effect
            )
        handler = self._handlers.get(effect.type)
        if handler is None and effect.type is not EffectType.START_SUBWORKFLOW:
            return Failure(
                f"no handler for effect {name!r}; pass effect_handlers={{EffectType...: ...}}"
            )
        now = self.config.clock()
        refused = await self.limiter.before_effect(self.store, held.handle, effect, now)
        if refused is not None:  # a limit has no room: wait durably, not in memory
            return self.limiter.wait(self._committed_state(held), record, refused, now)
        try:
            with self.telemetry.effect(state, effect, record.attempt):
                if handler is None:
                    outcome = await subworkflows.start(self, held.handle, effect)
                else:
                    outcome = await _maybe_await(handler(state, effect, plan.next_node))
        except (ConcurrentUpdateError, StoreError):
            raise
        except Exception as exc:  # unexpected, so maybe transient: the policy may retry it
            return Failure(
                f"effect {name!r} of node {plan.node_id!r} raised {_describe(exc)}", True
            )
        crash_point("in_effect")
        return machine.apply_outcome(
            state,
            record,
            plan,
            outcome,
            self.config.clock(),
            max_payload_bytes=self.config.max_payload_bytes,
        )

    # -- commits ------------------------------------------------------------------------------

    async def _hold(self, held: _Held, transition: Transition) -> None:
        """A pure transition: hold it for the next commit, unless the batch is full or old."""
        state, record = transition.state, transition.record
        try:
            state_json = self.encode(state)
        except SerializationError as exc:
            await self._commit_failure(held, record, f"node {record.node_id!r}: {exc}")
            return
        pending = [*held.pending, record]
        age_s = (self.config.clock() - pending[0].started_at).total_seconds()
        if len(pending) >= self.config.max_batched_steps or age_s >= self.config.max_batch_s:
            await self._store(held, state, state_json, [record])
            return
        held.pending = pending
        held.handle = replace(held.handle, state=state, state_json=state_json)

    async def _commit(self, held: _Held, transition: Transition) -> RunHandle:
        """Commit a step; a state or record that cannot be stored fails the step instead."""
        state, record = transition.state, transition.record
        try:
            return await self._store(held, state, self.encode(state), [record])
        except SerializationError as exc:
            return await self._commit_failure(held, record, f"node {record.node_id!r}: {exc}")

    async def _commit_as_is(self, held: _Held, transition: Transition) -> RunHandle:
        """Commit an operator's transition; a state it cannot store is the caller's error."""
        state = transition.state
        return await self._store(held, state, self.encode(state), [transition.record])

    async def _commit_claimed(self, handle: RunHandle, transition: Transition) -> RunHandle:
        """``_commit_as_is`` on a run claimed with ``_claim`` (for operators' modules)."""
        return await self._commit_as_is(_Held(handle), transition)

    async def _commit_attempt_failure(
        self, held: _Held, plan: StepPlan, record: StepRecord, error: str
    ) -> RunHandle:
        """A retryable failure: park the run for the backoff, or fail it after the last try."""
        effect = plan.effect
        assert effect is not None
        transition = machine.after_failed_attempt(
            self._committed_state(held),
            record,
            effect,
            error,
            self.config.clock(),
            max_attempts=self.effect_policy.max_attempts(effect),
            backoff_s=self.effect_policy.backoff_seconds(effect=effect, attempt=record.attempt),
        )
        try:
            state = transition.state
            return await self._store(held, state, self.encode(state), [record])
        except SerializationError:  # the effect itself cannot be stored: no use retrying it
            return await self._commit_failure(held, record, error)

    async def _commit_failure(self, held: _Held, record: StepRecord, error: str) -> RunHandle:
        """A failed step: the run keeps its last committed state, marked failed."""
        state = machine.fail(self._committed_state(held), record, error, self.config.clock()).state
        try:
            return await self._store(held, state, self.encode(state), [record])
        except SerializationError:
            record.effect = None  # the effect payload itself cannot be stored
            return await self._store(held, state, self.encode(state), [record])

    @staticmethod
    def _committed_state(held: _Held) -> RunState:
        """A fresh copy of the state as of the last commit (and the pure transitions held)."""
        return RunState.from_dict(decode(held.handle.state_json))

    async def _store(
        self, held: _Held, state: RunState, state_json: str, records: list[StepRecord]
    ) -> RunHandle:
        """Commit the held pure transitions and ``records`` in one transaction, keeping our
        lease while the run goes on running."""
        handle = held.handle
        now = self.config.clock()
        lease_until = self.leases.until(now) if handle.owner else None
        with self.telemetry.commit(self.store, handle, state, held.pending, records):
            committed = await self.limiter.commit(
                self.store,
                handle,
                state,
                state_json,
                [*held.pending, *records],
                now=now,
                lease_until=lease_until,
                max_record_bytes=self.config.max_record_bytes,
            )
        handle = self.leases.track(committed)
        held.handle, held.pending = handle, []
        crash_point("after_commit")
        if handle.owner is None and due_at(state, now) is not None:
            self._due.announce()
        return handle
