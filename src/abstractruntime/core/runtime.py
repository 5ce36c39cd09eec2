"""The ``Runtime``: drives runs step by step and commits each step through a ``Store``.

One step = run the current node's handler, perform the effect its ``StepPlan`` asks for, and
commit the new ``RunState`` together with the step's ledger record in one transaction. The
runtime loads a run once per call and then keeps the state, its version and the ledger head in
hand; the store's optimistic version check makes sure two runtimes never both commit a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from ..errors import (
    ConcurrentUpdateError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    RunNotWaitingError,
    SerializationError,
    SnapshotNotFoundError,
    StoreError,
    WaitKeyMismatchError,
)
from .config import RuntimeConfig
from .crashpoints import crash_point
from .effects import EffectHandler, EffectOutcome, builtin_handlers
from .kernel import check_plan, check_size, due_at, encode_state, fail, set_dotted
from .models import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from .policy import DefaultEffectPolicy, EffectPolicy
from .ports import RunHandle, Store
from .registry import WorkflowRegistry
from .serde import decode, encode, iso
from .snapshot import Snapshot
from .spec import WorkflowSpec


@dataclass
class StepContext:
    """The ``ctx`` a node handler receives next to the run."""

    run_id: str
    node_id: str
    step_id: str
    workflow_id: str
    #: Whatever was passed as ``Runtime(context=...)``.
    context: Any
    _clock: Any

    def now(self) -> datetime:
        return self._clock()  # type: ignore[no-any-return]

    def now_iso(self) -> str:
        return iso(self._clock())


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


logger = logging.getLogger("abstractruntime")

#: How often cancel_run retries when steps keep landing while it cancels.
_CANCEL_ATTEMPTS = 20


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
        effect_policy: EffectPolicy | None = None,
        config: RuntimeConfig | None = None,
        context: Any = None,
    ) -> None:
        from ..storage.memory import MemoryStore

        if store is not None and (run_store is not None or ledger_store is not None):
            raise ValueError("pass either store= or run_store=/ledger_store=, not both")
        if store is None:
            store = MemoryStore(run_store, ledger_store)
        self.store: Store = store
        self.config = config or RuntimeConfig()
        self.context = context
        if not isinstance(workflow_registry, WorkflowRegistry):
            workflow_registry = WorkflowRegistry(workflow_registry or ())
        #: Workflows this runtime can find by id (subworkflows, runs claimed by a scheduler).
        self.workflow_registry = workflow_registry
        if effect_policy is None:
            effect_policy = DefaultEffectPolicy()
        elif not isinstance(effect_policy, EffectPolicy):
            raise TypeError(
                f"effect_policy must have max_attempts, backoff_seconds and idempotency_key "
                f"(e.g. RetryPolicy()), got {type(effect_policy).__name__}"
            )
        #: Attempts, backoff and idempotency keys of effects (default: one attempt each).
        self.effect_policy: EffectPolicy = effect_policy
        self._handlers: dict[EffectType, EffectHandler] = builtin_handlers(self.config.clock)
        for effect_type, handler in (effect_handlers or {}).items():
            self._handlers[EffectType(effect_type)] = handler
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._due_listeners: list[Callable[[], None]] = []
        #: Closed by ``aclose``: what a factory (``create_remote_runtime``...) made for this
        #: runtime alone, such as its store or its HTTP client.
        self.owned_resources: list[Callable[[], Awaitable[None]]] = []

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
    ) -> str:
        """Create a run at the workflow's entry node (status ``running``); returns its id.

        The run is committed unclaimed, so a worker (``abstractruntime worker``) may pick it up
        at once; ``tick`` drives it in this process instead.
        """
        state = self._new_state(workflow, vars, actor_id, session_id, parent_run_id, run_id)
        await self.store.create_run(state, self._encode(state))
        self._announce_due()
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
    ) -> RunState:
        """Deliver ``payload`` to a waiting run and continue it at its ``resume_to_node``.

        Raises ``WaitKeyMismatchError`` (a ``ValueError``) when ``wait_key`` is not the key the
        run waits on, ``RunNotWaitingError`` when it does not wait (e.g. another caller resumed
        it first) and ``RunLeasedError`` while another worker holds it.
        """
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise TypeError(f"resume payload must be a dict, got {type(payload).__name__}")
        self._check_payload(dict(payload), "resume payload")  # before anything changes
        handle = await self._claim(run_id)
        try:
            self._check_workflow(workflow, handle.state)
            state, waiting = handle.state, handle.state.waiting
            if state.status is not RunStatus.WAITING or waiting is None:
                raise RunNotWaitingError(
                    f"run {run_id!r} is {state.status.value}, not waiting; nothing to resume"
                )
            if waiting.wait_key != wait_key:
                raise WaitKeyMismatchError(
                    f"run {run_id!r} waits on {waiting.wait_key!r}, not {wait_key!r}"
                )
            handle = await self._continue_after_wait(workflow, handle, dict(payload))
        except BaseException:
            await self._release(handle)
            raise
        try:
            return (await self._drive(workflow, handle, max_steps)).state
        except (ConcurrentUpdateError, RunLeasedError):
            # The resume itself is committed; a cancel, a restore or another worker took the
            # run over before its next step did. Report where the run is, not a lost resume.
            return await self.get_state(run_id)

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
        state = self._new_state(workflow, vars, actor_id, session_id, None, None)
        # Created already claimed by us, so no worker can snatch it between start and tick.
        handle = self._track(
            await self.store.create_run(
                state, self._encode(state), lease=(self.config.owner, self._lease_until())
            )
        )
        return state.run_id, (await self._drive(workflow, handle, max_steps)).state

    async def cancel_run(self, run_id: str, reason: str | None = None) -> RunState:
        """Cancel a run that is not finished; a finished run is returned unchanged.

        Cancelling wins over a worker that is driving the run: its next commit fails and it
        drops the run.
        """
        for _ in range(_CANCEL_ATTEMPTS):
            handle = await self.store.load_run(run_id)
            state = handle.state
            if state.status.is_terminal:
                return state
            now = self.config.clock()
            record = self._record(state, uuid.uuid4().hex, now, StepStatus.FAILED)
            record.error = f"cancelled: {reason}" if reason else "cancelled"
            record.result = {"cancelled": True, "reason": reason}
            state.status = RunStatus.CANCELLED
            state.error = reason or "cancelled"
            state.waiting = None
            state.updated_at = now
            try:
                handle = await self.store.commit_step(
                    handle, state, self._encode(state), [record], now=now
                )
            except ConcurrentUpdateError:
                continue  # a step landed meanwhile: cancel the newer state
            return handle.state
        raise ConcurrentUpdateError(run_id, -1)

    async def get_state(self, run_id: str) -> RunState:
        """The run's committed state; ``RunNotFoundError`` (a ``KeyError``) when unknown."""
        return (await self.store.load_run(run_id)).state

    async def get_ledger(self, run_id: str) -> list[dict[str, Any]]:
        """The run's ledger records as dicts, oldest first."""
        return await self.store.get_ledger(run_id)

    async def restore_snapshot(self, snapshot_id: str) -> RunState:
        """Make a snapshot's state the current state of its run (``snapshot.run_id``).

        The state and a ledger record whose ``result`` holds ``{"restored": snapshot_id}`` are
        committed in one transaction. Like ``cancel_run``, restoring wins over a worker that is
        driving the run: the worker's next commit fails and it drops the run; a restored
        ``running`` run is then due for any worker, a waiting one waits again.

        Raises ``SnapshotNotFoundError`` or ``RunNotFoundError`` (both ``KeyError``).
        """
        snapshot = await self._load_snapshot(snapshot_id)
        for _ in range(_CANCEL_ATTEMPTS):
            handle = await self.store.load_run(snapshot.run_id)
            current = handle.state
            now = self.config.clock()
            state = snapshot.state
            state.created_at = current.created_at  # the run keeps its birth; the rest goes back
            state.updated_at = now
            record = self._record(state, uuid.uuid4().hex, now, StepStatus.COMPLETED)
            record.result = {
                "restored": snapshot.snapshot_id,
                "snapshot_name": snapshot.name,
                "snapshot_step_id": snapshot.step_id,
                "replaced": {"status": current.status.value, "node": current.current_node},
            }
            try:
                handle = await self.store.commit_step(
                    handle, state, self._encode(state), [record], now=now
                )
            except ConcurrentUpdateError:
                continue  # a step landed meanwhile: restore over the newer state
            if due_at(state, now) is not None:
                self._announce_due()
            return handle.state
        raise ConcurrentUpdateError(snapshot.run_id, -1)

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
        state = snapshot.state
        state.run_id = uuid.uuid4().hex
        state.parent_run_id = snapshot.run_id
        state.created_at = state.updated_at = now
        if state.waiting is not None and state.waiting.wait_key is not None:
            state.waiting.wait_key = self._rename_wait_key(
                state.waiting.wait_key, snapshot.run_id, state.run_id
            )
        record = self._record(state, uuid.uuid4().hex, now, StepStatus.COMPLETED)
        record.result = {
            "forked_from": {
                "snapshot_id": snapshot.snapshot_id,
                "run_id": snapshot.run_id,
                "step_id": snapshot.step_id,
            }
        }
        state_json = self._encode(state)
        # Created claimed by us, so no worker drives it before its first record is in; the
        # commit of that record lets go of it (a running fork is then due for any worker).
        handle = await self.store.create_run(
            state, state_json, lease=(self.config.owner, self._lease_until())
        )
        await self.store.commit_step(handle, state, state_json, [record], now=now)
        if due_at(state, now) is not None:
            self._announce_due()
        return state.run_id

    async def _load_snapshot(self, snapshot_id: str) -> Snapshot:
        snapshot = await self.store.snapshots.load(snapshot_id)
        if snapshot is None:
            raise SnapshotNotFoundError(snapshot_id)
        return snapshot

    @staticmethod
    def _rename_wait_key(wait_key: str, old_run_id: str, new_run_id: str) -> str:
        """A fork's wait key: the default keys that name their run name the fork instead."""
        for kind in ("user", "retry"):
            prefix = f"{kind}:{old_run_id}:"
            if wait_key.startswith(prefix):
                return f"{kind}:{new_run_id}:{wait_key[len(prefix) :]}"
        return wait_key

    # -- the step machine ---------------------------------------------------------------------

    def _new_state(
        self,
        workflow: WorkflowSpec,
        vars: Mapping[str, Any] | None,
        actor_id: str | None,
        session_id: str | None,
        parent_run_id: str | None,
        run_id: str | None,
    ) -> RunState:
        if vars is not None and not isinstance(vars, Mapping):
            raise TypeError(f"vars must be a dict, got {type(vars).__name__}")
        now = self.config.clock()
        return RunState(
            run_id=run_id or uuid.uuid4().hex,
            workflow_id=workflow.workflow_id,
            status=RunStatus.RUNNING,
            current_node=workflow.entry_node,
            vars=dict(vars or {}),
            created_at=now,
            updated_at=now,
            actor_id=actor_id,
            session_id=session_id,
            parent_run_id=parent_run_id,
        )

    def _encode(self, state: RunState) -> str:
        return encode_state(state, self.config.max_state_bytes)

    def _check_payload(self, value: Any, what: str) -> None:
        """A ``SizeLimitError`` when ``value`` is over ``max_payload_bytes`` as JSON."""
        text = encode(value, root=what)
        check_size(text, what, "max_payload_bytes", self.config.max_payload_bytes)

    def _lease_until(self) -> datetime:
        return self.config.clock() + timedelta(seconds=self.config.lease_s)

    async def _claim(self, run_id: str) -> RunHandle:
        now = self.config.clock()
        handle = self._track(
            await self.store.claim_run(
                run_id, self.config.owner, now, now + timedelta(seconds=self.config.lease_s)
            )
        )
        crash_point("after_claim")
        return handle

    async def _release(self, handle: RunHandle) -> None:
        if handle.owner is not None:
            self._held.discard(handle.state.run_id)
            now = self.config.clock()
            await self.store.release(handle, now=now)
            if due_at(handle.state, now) is not None:
                self._announce_due()

    def add_due_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever this runtime leaves a run that will become due by itself
        (a new run, a timer, a released run), so a scheduler in this process can re-plan its
        sleep at once; returns a function that removes the listener."""
        self._due_listeners.append(callback)
        return lambda: self._due_listeners.remove(callback)

    def _announce_due(self) -> None:
        for callback in list(self._due_listeners):
            callback()

    def _track(self, handle: RunHandle) -> RunHandle:
        """Keep the set of runs we hold leases on, and a heartbeat renewing them, up to date."""
        if handle.owner is None:
            self._held.discard(handle.state.run_id)
        else:
            self._held.add(handle.state.run_id)
            if self._heartbeat is None or self._heartbeat.done():
                self._heartbeat = asyncio.create_task(
                    self._renew_leases(), name=f"abstractruntime-leases-{self.config.owner}"
                )
        return handle

    async def _renew_leases(self) -> None:
        """While we hold runs, renew their leases every third of ``lease_s``: a step may take
        longer than the lease (an LLM call) without another worker taking the run over."""
        interval = self.config.lease_s / 3
        while self._held:
            await asyncio.sleep(interval)
            held = list(self._held)
            if not held:
                break
            try:
                await self.store.renew(self.config.owner, held, self._lease_until())
            except Exception:  # the next commit or beat retries; the lease may lapse meanwhile
                logger.warning("could not renew the leases of %d runs", len(held), exc_info=True)

    @property
    def held_runs(self) -> frozenset[str]:
        """Ids of the runs this runtime holds a lease on right now."""
        return frozenset(self._held)

    async def aclose(self) -> None:
        """Stop the lease heartbeat (leases still held are left to expire) and close what
        this runtime owns (``owned_resources``, newest first)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
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

    @staticmethod
    def _check_workflow(workflow: WorkflowSpec, state: RunState) -> None:
        if workflow.workflow_id != state.workflow_id:
            raise ValueError(
                f"run {state.run_id!r} belongs to workflow {state.workflow_id!r}, "
                f"not {workflow.workflow_id!r}"
            )

    async def drive_claimed(self, handle: RunHandle, max_steps: int | None = None) -> RunHandle:
        """Drive a run claimed by ``claim_due`` (the scheduler's entry point)."""
        handle = self._track(handle)
        crash_point("after_claim")
        workflow = self.workflow_registry.get(handle.state.workflow_id)
        if workflow is None:
            await self._release(handle)
            raise KeyError(f"workflow {handle.state.workflow_id!r} is not registered")
        return await self._drive(workflow, handle, max_steps)

    async def _drive(
        self, workflow: WorkflowSpec, handle: RunHandle, max_steps: int | None
    ) -> RunHandle:
        """Step a claimed run until it waits, ends or ``max_steps`` ran; always lets go of it."""
        try:
            self._check_workflow(workflow, handle.state)
            handle = await self._steps(workflow, handle, max_steps)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._release(handle)
            raise
        await self._release(handle)
        state = handle.state
        if state.status.is_terminal and state.parent_run_id:
            await self._wake_parent(state)
        return handle

    async def _steps(
        self, workflow: WorkflowSpec, handle: RunHandle, max_steps: int | None
    ) -> RunHandle:
        handle = await self._advance(workflow, handle, max_steps)
        if handle.pending:  # the run stopped after pure transitions (max_steps): commit them
            return await self._store(handle, handle.state, handle.state_json, [])
        return handle

    async def _advance(
        self, workflow: WorkflowSpec, handle: RunHandle, max_steps: int | None
    ) -> RunHandle:
        limit = self.config.max_steps if max_steps is None else max_steps
        steps = 0
        while steps < limit:
            state = handle.state
            if state.status is RunStatus.RUNNING:
                if handle.owner is None:
                    return handle
                handle = await self._step(workflow, handle)
                steps += 1
                continue
            if state.status is not RunStatus.WAITING or state.waiting is None:
                return handle
            payload = await self._wait_is_over(state, state.waiting)
            if payload is None:
                return handle
            if handle.owner is None:  # we just committed the wait; claim it back to go on
                try:
                    handle = await self._claim(state.run_id)
                except RunLeasedError:
                    return handle  # somebody else is on it already
                if handle.state.waiting != state.waiting:
                    continue
            if isinstance(payload, str):
                handle = await self._commit_failure(
                    handle,
                    self._record(
                        handle.state, uuid.uuid4().hex, self.config.clock(), StepStatus.FAILED
                    ),
                    payload,
                )
            elif (retry := _retry_of(handle.state.waiting)) is not None:
                # A retry's time came: run the node again as the next attempt, with no commit
                # in between (the attempt count and key live in the committed wait).
                state = handle.state
                assert state.waiting is not None
                state.current_node = state.waiting.resume_to_node
                state.status, state.waiting = RunStatus.RUNNING, None
                handle = await self._step(workflow, handle, retry)
                steps += 1
            else:
                handle = await self._continue_after_wait(workflow, handle, payload)
        return handle

    async def _wait_is_over(
        self, state: RunState, waiting: WaitState
    ) -> dict[str, Any] | str | None:
        """The resume payload of a wait that ended by itself, an error that ends the run, or
        None while it must go on waiting."""
        if waiting.reason is WaitReason.UNTIL:
            if waiting.until is not None and self.config.clock() >= waiting.until:
                return {"until": iso(waiting.until)}
            return None
        if waiting.reason is WaitReason.SUBWORKFLOW:
            child_id = (waiting.details or {}).get("sub_run_id")
            if not isinstance(child_id, str):
                return None
            try:
                child = (await self.store.load_run(child_id)).state
            except RunNotFoundError:
                return f"subworkflow run {child_id!r} no longer exists"
            return _subworkflow_result(child)
        return None

    async def _wake_parent(self, child: RunState) -> None:
        """A child ended: continue its parent here if it waits on it (else a worker will)."""
        assert child.parent_run_id is not None
        try:
            parent = (await self.store.load_run(child.parent_run_id)).state
        except RunNotFoundError:
            return
        waiting = parent.waiting
        if (
            parent.status is not RunStatus.WAITING
            or waiting is None
            or waiting.reason is not WaitReason.SUBWORKFLOW
            or (waiting.details or {}).get("sub_run_id") != child.run_id
        ):
            return
        workflow = self.workflow_registry.get(parent.workflow_id)
        if workflow is None:
            return
        with contextlib.suppress(RunLeasedError, ConcurrentUpdateError):
            await self._drive(workflow, await self._claim(parent.run_id), None)

    def _record(
        self, state: RunState, step_id: str, started: datetime, status: StepStatus
    ) -> StepRecord:
        return StepRecord(
            run_id=state.run_id,
            step_id=step_id,
            node_id=state.current_node or "",
            status=status,
            started_at=started,
            ended_at=self.config.clock(),
            actor_id=state.actor_id,
            session_id=state.session_id,
        )

    async def _continue_after_wait(
        self, workflow: WorkflowSpec, handle: RunHandle, payload: dict[str, Any]
    ) -> RunHandle:
        state = handle.state
        waiting = state.waiting
        assert waiting is not None
        now = self.config.clock()
        record = self._record(state, uuid.uuid4().hex, now, StepStatus.COMPLETED)
        record.result = payload
        target = waiting.resume_to_node
        if target is not None and target not in workflow.nodes:
            error = (
                f"cannot resume at node {target!r}: workflow {workflow.workflow_id!r} "
                "has no such node"
            )
            return await self._commit_failure(handle, record, error)
        if waiting.result_key:
            set_dotted(state.vars, waiting.result_key, payload)
        state.waiting = None
        state.updated_at = now
        if target is None:
            # The waiting plan named no next node: the wait was the run's last step.
            state.status = RunStatus.COMPLETED
            state.output = payload
        else:
            state.status = RunStatus.RUNNING
            state.current_node = target
        return await self._commit(handle, state, record)

    async def _step(
        self, workflow: WorkflowSpec, handle: RunHandle, retry: dict[str, Any] | None = None
    ) -> RunHandle:
        """Run the current node and perform its plan; ``retry`` continues a failed effect."""
        state = handle.state
        node_id = state.current_node or ""
        step_id = uuid.uuid4().hex
        record = self._record(state, step_id, self.config.clock(), StepStatus.COMPLETED)

        handler = workflow.nodes.get(node_id)
        if handler is None:
            missing = f"workflow {workflow.workflow_id!r} has no node {node_id!r}"
            return await self._commit_failure(handle, record, missing)
        ctx = StepContext(
            run_id=state.run_id,
            node_id=node_id,
            step_id=step_id,
            workflow_id=workflow.workflow_id,
            context=self.context,
            _clock=self.config.clock,
        )
        try:
            plan = await _maybe_await(handler(state, ctx))
        except Exception as exc:
            return await self._commit_failure(
                handle, record, f"node {node_id!r} raised {_describe(exc)}"
            )
        crash_point("after_handler")
        problem = check_plan(workflow, node_id, plan)
        if problem:
            return await self._commit_failure(handle, record, problem)
        assert isinstance(plan, StepPlan)

        if plan.effect is not None:
            failure = await self._perform(handle, plan, record, retry)
            if failure is not None:
                error, retryable = failure
                if retryable:
                    return await self._commit_attempt_failure(handle, plan.effect, record, error)
                return await self._commit_failure(handle, record, error)
        elif plan.complete_output is not None:
            state.status = RunStatus.COMPLETED
            state.output = plan.complete_output
        else:
            state.current_node = plan.next_node
            record.ended_at = state.updated_at = self.config.clock()
            return await self._transition(handle, state, record)
        record.ended_at = self.config.clock()
        state.updated_at = record.ended_at
        return await self._commit(handle, state, record)

    async def _transition(
        self, handle: RunHandle, state: RunState, record: StepRecord
    ) -> RunHandle:
        """A pure transition: hold it for the next commit, unless the batch is full or old."""
        try:
            state_json = self._encode(state)
        except SerializationError as exc:
            return await self._commit_failure(handle, record, f"node {record.node_id!r}: {exc}")
        pending = [*handle.pending, record]
        age_s = (self.config.clock() - pending[0].started_at).total_seconds()
        if len(pending) >= self.config.max_batched_steps or age_s >= self.config.max_batch_s:
            return await self._store(handle, state, state_json, [record])
        return RunHandle(
            state,
            handle.version,
            handle.seq,
            handle.head,
            state_json,
            handle.owner,
            pending,
        )

    async def _perform(
        self,
        handle: RunHandle,
        plan: StepPlan,
        record: StepRecord,
        retry: dict[str, Any] | None,
    ) -> tuple[str, bool] | None:
        """Perform the plan's effect and apply its outcome to the state.

        Returns None, or the error and whether another attempt may succeed.
        """
        state = handle.state
        effect = plan.effect
        assert effect is not None
        record.effect = effect.to_dict()
        name = effect.type.value
        try:  # an effect that could not be recorded is not performed at all
            self._check_payload(effect.payload, f"the payload of effect {name!r}")
        except SerializationError as exc:
            return f"node {record.node_id!r}: {exc}", False
        if retry is not None:  # the same effect again: same key, next attempt number
            record.attempt = int(retry.get("attempt", 0)) + 1
            record.idempotency_key = retry.get("idempotency_key")
        if record.idempotency_key is None:
            record.idempotency_key = self.effect_policy.idempotency_key(
                run=state, node_id=record.node_id, effect=effect
            )
        handler = self._handlers.get(effect.type)
        if handler is None and effect.type is not EffectType.START_SUBWORKFLOW:
            return (
                f"no handler for effect {name!r}; pass effect_handlers={{EffectType...: ...}}",
                False,
            )
        try:
            if handler is None:
                outcome = await self._start_subworkflow(handle, effect)
            else:
                outcome = await _maybe_await(handler(state, effect, plan.next_node))
        except (ConcurrentUpdateError, StoreError):
            raise
        except Exception as exc:  # unexpected, so maybe transient: the policy may retry it
            return f"effect {name!r} of node {plan.node_id!r} raised {_describe(exc)}", True
        crash_point("in_effect")
        if not isinstance(outcome, EffectOutcome):
            return (
                f"effect handler for {name!r} returned {type(outcome).__name__}, "
                "expected an EffectOutcome",
                False,
            )
        if outcome.status == "failed":
            return f"effect {name!r} failed: {outcome.error}", outcome.retryable
        if outcome.status == "waiting":
            wait = outcome.wait
            if wait is None:
                return f"effect {name!r} returned a waiting outcome without a WaitState", False
            if wait.resume_to_node is None:
                wait.resume_to_node = plan.next_node
            if wait.result_key is None:
                wait.result_key = effect.result_key
            record.status = StepStatus.WAITING
            record.result = {"wait": wait.to_dict()}
            state.status = RunStatus.WAITING
            state.waiting = wait
            return None
        try:
            self._check_payload(outcome.result, f"the result of effect {name!r}")
        except SerializationError as exc:
            return f"node {record.node_id!r}: {exc}", False
        record.result = outcome.result
        if effect.result_key:
            set_dotted(state.vars, effect.result_key, outcome.result)
        if plan.next_node is not None:
            state.current_node = plan.next_node
        else:
            state.status = RunStatus.COMPLETED
            state.output = (
                plan.complete_output
                if plan.complete_output is not None
                else {"result": outcome.result}
            )
        return None

    async def _commit(self, handle: RunHandle, state: RunState, record: StepRecord) -> RunHandle:
        """Commit the step; a state or record that cannot be stored fails the step instead."""
        try:
            state_json = self._encode(state)
            return await self._store(handle, state, state_json, [record])
        except SerializationError as exc:
            return await self._commit_failure(handle, record, f"node {record.node_id!r}: {exc}")

    async def _commit_attempt_failure(
        self, handle: RunHandle, effect: Effect, record: StepRecord, error: str
    ) -> RunHandle:
        """A retryable failure: record the attempt and, if the policy allows another, park the
        run until the backoff is over (a persisted due time: nothing sleeps, a restart keeps
        it); after the last attempt the run fails with the last error."""
        max_attempts = self.effect_policy.max_attempts(effect)
        if record.attempt >= max_attempts:
            if max_attempts > 1:
                error = f"{error} (attempt {record.attempt} of {max_attempts}, giving up)"
            return await self._commit_failure(handle, record, error)
        delay = self.effect_policy.backoff_seconds(effect=effect, attempt=record.attempt)
        # Like a failed step, the attempt keeps nothing it changed; only the wait is new.
        state = RunState.from_dict(decode(handle.state_json))
        now = self.config.clock()
        retry_at = now + timedelta(seconds=max(delay, 0.0))
        node_id = record.node_id
        state.status, state.current_node, state.updated_at = RunStatus.WAITING, node_id, now
        state.waiting = WaitState(
            reason=WaitReason.UNTIL,
            until=retry_at,
            wait_key=f"retry:{state.run_id}:{node_id}",
            resume_to_node=node_id,
            details={
                _RETRY: {
                    "attempt": record.attempt,
                    "max_attempts": max_attempts,
                    "idempotency_key": record.idempotency_key,
                    "effect_type": effect.type.value,
                    "error": error,
                }
            },
        )
        record.status = StepStatus.FAILED
        record.error = error
        record.result = {
            "retry_at": iso(retry_at),
            "attempt": record.attempt,
            "max_attempts": max_attempts,
        }
        record.ended_at = now
        try:
            return await self._store(handle, state, self._encode(state), [record])
        except SerializationError:  # the effect itself cannot be stored: no use retrying it
            return await self._commit_failure(handle, record, error)

    async def _commit_failure(self, handle: RunHandle, record: StepRecord, error: str) -> RunHandle:
        """A failed step is atomic: the run keeps its last committed state, marked failed."""
        state = RunState.from_dict(decode(handle.state_json))
        error = fail(state, error)  # as stored: capped, lone surrogates escaped
        record.status = StepStatus.FAILED
        record.error = error
        record.result = None
        record.ended_at = state.updated_at = self.config.clock()
        try:
            return await self._store(handle, state, self._encode(state), [record])
        except SerializationError:
            record.effect = None  # the effect payload itself cannot be stored
            return await self._store(handle, state, self._encode(state), [record])

    async def _store(
        self, handle: RunHandle, state: RunState, state_json: str, records: list[StepRecord]
    ) -> RunHandle:
        """Commit the held pure transitions and ``records`` in one transaction, keeping our
        lease while the run goes on running."""
        now = self.config.clock()
        lease_until = now + timedelta(seconds=self.config.lease_s) if handle.owner else None
        handle = self._track(
            await self.store.commit_step(
                handle,
                state,
                state_json,
                [*handle.pending, *records],
                now=now,
                lease_until=lease_until,
                max_record_bytes=self.config.max_record_bytes,
            )
        )
        crash_point("after_commit")
        if handle.owner is None and due_at(state, now) is not None:
            self._announce_due()
        return handle

    # -- subworkflows -------------------------------------------------------------------------

    async def _start_subworkflow(self, handle: RunHandle, effect: Effect) -> EffectOutcome:
        """Start (or, after a crash, find again) the child run and, in sync mode, drive it.

        The child's id derives from the parent and the ledger position of this step, so a step
        re-executed after a crash finds the child it already started instead of starting twice.
        """
        parent = handle.state
        payload = effect.payload
        workflow_id = payload.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            return EffectOutcome.failed("start_subworkflow requires payload['workflow_id']")
        child_wf = self.workflow_registry.get(workflow_id)
        if child_wf is None:
            return EffectOutcome.failed(
                f"start_subworkflow: workflow {workflow_id!r} is not registered "
                "(pass workflow_registry= with it)"
            )
        child_vars = payload.get("vars") or {}
        if not isinstance(child_vars, Mapping):
            return EffectOutcome.failed("start_subworkflow payload['vars'] must be a dict")
        child_id = hashlib.sha256(f"{parent.run_id}:{handle.seq}".encode()).hexdigest()[:32]
        run_async = bool(payload.get("async", False))
        child = self._new_state(
            child_wf, child_vars, parent.actor_id, parent.session_id, parent.run_id, child_id
        )
        lease = None if run_async else (self.config.owner, self._lease_until())
        try:
            child_handle = self._track(
                await self.store.create_run(child, self._encode(child), lease=lease)
            )
        except RunExistsError:  # this step ran before and died before committing: same child
            if run_async:
                return EffectOutcome.completed({"sub_run_id": child_id})
            try:
                child_handle = await self._claim(child_id)
            except RunLeasedError:
                child_handle = await self.store.load_run(child_id)
        if run_async:
            return EffectOutcome.completed({"sub_run_id": child_id})
        if child_handle.owner is not None:
            child_handle = await self._drive(child_wf, child_handle, None)
        result = _subworkflow_result(child_handle.state)
        if isinstance(result, dict):
            return EffectOutcome.completed(result)
        if isinstance(result, str):
            return EffectOutcome.failed(result)
        return EffectOutcome.waiting(
            WaitState(
                reason=WaitReason.SUBWORKFLOW,
                wait_key=f"subworkflow:{child_id}",
                details={"sub_run_id": child_id, "workflow_id": workflow_id},
            )
        )


#: Key of ``WaitState.details`` that marks a wait as the backoff before an effect's next attempt.
_RETRY = "retry"


def _retry_of(waiting: WaitState | None) -> dict[str, Any] | None:
    """The retry bookkeeping of a backoff wait (None for any other wait)."""
    if waiting is None or waiting.reason is not WaitReason.UNTIL:
        return None
    retry = (waiting.details or {}).get(_RETRY)
    return retry if isinstance(retry, dict) else None


def _subworkflow_result(child: RunState) -> dict[str, Any] | str | None:
    """What a parent gets from its child: the output, an error, or None while it goes on."""
    if child.status is RunStatus.COMPLETED:
        return {"sub_run_id": child.run_id, "output": child.output}
    if child.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        return (
            f"subworkflow {child.workflow_id!r} (run {child.run_id}) {child.status.value}: "
            f"{child.error}"
        )
    return None
