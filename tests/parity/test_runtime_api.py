"""The original's Runtime, registry, scheduler and run-store API, with ``await`` added.

Each test is one behaviour of AbstractRuntime 0.2.0 (its ``core/runtime.py``, ``core/vars.py``,
``scheduler/*.py`` and ``storage/in_memory.py``), run on the original's in-memory pair and on a
SQLite file, written as a user of the original would write it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RetryPolicy,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    Scheduler,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    WorkflowRegistry,
    WorkflowSpec,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.core import LIMITS, LimitWarning, ensure_limits, get_limits
from abstractruntime.core.runtime import DefaultRunContext
from abstractruntime.core.vars import get_context, get_scratchpad
from abstractruntime.errors import (
    InvalidArgumentError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
)
from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore, SqlStore
from tests.helpers import wait_for_status
from tests.workflows import APPROVAL, counter, parent_of, waiter

BACKENDS = ["pair", "sqlite"]


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The keyword arguments that give a Runtime (or a scheduled one) its storage."""
    if request.param == "pair":
        yield {"run_store": InMemoryRunStore(), "ledger_store": InMemoryLedgerStore()}
        return
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
    try:
        yield {"store": store}
    finally:
        await store.close()


def ask_then_echo(workflow_id: str = "ask") -> WorkflowSpec:
    async def ask(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="ask",
            effect=Effect(EffectType.ASK_USER, {"prompt": "name?"}, result_key="answer"),
            next_node="done",
        )

    def done(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"answer": run.vars["answer"]})

    return WorkflowSpec(workflow_id, "ask", {"ask": ask, "done": done})


# -- limits (core/vars.py, RuntimeConfig, Runtime.get_limit_status/check_limits/update_limits) --


async def test_a_run_starts_with_the_configs_limits(stores: dict[str, Any]) -> None:
    config = RuntimeConfig(max_iterations=10, max_tokens=1000, max_history_messages=5)
    rt = Runtime(**stores, config=config)
    run_id = await rt.start(workflow=APPROVAL)
    state = await rt.get_state(run_id)
    assert state.vars[LIMITS] == config.to_limits_dict()
    assert state.vars[LIMITS] == {
        "max_iterations": 10,
        "current_iteration": 0,
        "max_tokens": 1000,
        "max_output_tokens": None,
        "estimated_tokens_used": 0,
        "max_history_messages": 5,
        "warn_iterations_pct": 80,
        "warn_tokens_pct": 80,
    }
    # Caller's own limits win; the model's context window fills a missing max_tokens.
    own = {"max_iterations": 3}
    run_id = await rt.start(workflow=APPROVAL, vars={LIMITS: own})
    assert (await rt.get_state(run_id)).vars[LIMITS] == own
    assert (
        RuntimeConfig(model_capabilities={"max_tokens": 8192}).to_limits_dict()["max_tokens"]
        == 8192
    )
    assert config.with_capabilities({"max_tokens": 1}).model_capabilities == {"max_tokens": 1}


async def test_limit_status_warnings_and_durable_updates(stores: dict[str, Any]) -> None:
    rt = Runtime(**stores, config=RuntimeConfig(max_iterations=10, max_tokens=1000))
    run_id, state = await rt.run(APPROVAL)
    assert state.status is RunStatus.WAITING
    assert await rt.get_limit_status(run_id) == {
        "iterations": {"current": 0, "max": 10, "pct": 0.0, "warning": False},
        "tokens": {"estimated_used": 0, "max": 1000, "pct": 0.0, "warning": False},
        "history": {"max_messages": -1},
    }
    assert rt.check_limits(state) == []

    await rt.update_limits(run_id, {"current_iteration": 8, "estimated_tokens_used": 999, "x": 1})
    state = await rt.get_state(run_id)
    assert state.vars[LIMITS]["current_iteration"] == 8 and "x" not in state.vars[LIMITS]
    assert state.status is RunStatus.WAITING and state.waiting is not None  # still waiting
    warnings = rt.check_limits(state)
    assert warnings == [
        LimitWarning("iterations", "warning", 8, 10),
        LimitWarning("tokens", "warning", 999, 1000),
    ]
    assert [w.pct for w in warnings] == [80.0, 99.9]
    status = await rt.get_limit_status(run_id)
    assert status["iterations"]["warning"] and status["tokens"]["pct"] == 99.9

    await rt.update_limits(run_id, {"current_iteration": 10})
    [exceeded, _] = rt.check_limits(await rt.get_state(run_id))
    assert exceeded == LimitWarning("iterations", "exceeded", 10, 10, 100.0)

    # The updates are committed steps in the ledger, hash-chained like any other.
    ledger = await rt.get_ledger(run_id)
    assert [r["result"] for r in ledger[-2:]] == [
        {"limits_updated": {"current_iteration": 8, "estimated_tokens_used": 999}},
        {"limits_updated": {"current_iteration": 10}},
    ]
    assert verify_ledger_chain(ledger)["ok"]
    # ... and the run goes on from its wait with its new limits.
    done = await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key=None, payload={"a": 1})
    assert done.status is RunStatus.COMPLETED
    assert done.vars[LIMITS]["current_iteration"] == 10


async def test_update_limits_refuses_bad_input_and_a_driven_run(stores: dict[str, Any]) -> None:
    rt = Runtime(**stores)
    run_id = await rt.start(workflow=APPROVAL)
    with pytest.raises(InvalidArgumentError, match="must be a dict"):
        await rt.update_limits(run_id, [("max_tokens", 1)])  # type: ignore[arg-type]
    with pytest.raises(RunNotFoundError):
        await rt.update_limits("nope", {"max_tokens": 1})
    other = Runtime(**stores)  # another worker holds the run: its step is not thrown away
    await other.leases.claim(run_id)
    with pytest.raises(RunLeasedError):
        await rt.update_limits(run_id, {"max_tokens": 1})
    assert (await rt.get_state(run_id)).vars[LIMITS]["max_tokens"] == 32768


def test_the_vars_namespaces_are_created_in_place() -> None:
    vars: dict[str, Any] = {"context": "not a dict"}
    assert get_context(vars) == {} and vars["context"] == {}
    get_scratchpad(vars)["step"] = 1
    assert vars["scratchpad"] == {"step": 1} and set(vars) >= {"_runtime", "_temp"}
    limits = ensure_limits(vars)
    assert limits is get_limits(vars) and limits["max_tokens"] == 32768


# -- the runtime's parts and the original's signatures ----------------------------------------


async def test_runtime_accessors_and_setters(stores: dict[str, Any]) -> None:
    config = RuntimeConfig(max_steps=7)
    rt = Runtime(**stores, config=config)
    assert rt.config is config
    if "run_store" in stores:  # the original's pair: its own objects
        assert rt.run_store is stores["run_store"] and rt.ledger_store is stores["ledger_store"]
    run_id, _ = await rt.run(APPROVAL)
    assert (await rt.run_store.load(run_id)).status is RunStatus.WAITING
    assert await rt.run_store.load("unknown") is None
    assert [r["status"] for r in await rt.ledger_store.list(run_id)] == ["waiting"]
    assert await rt.ledger_store.list("unknown") == []
    listed = await rt.run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER)
    assert [s.run_id for s in listed] == [run_id]

    policy = RetryPolicy()
    rt.set_effect_policy(policy)
    assert rt.effect_policy is policy
    registry = WorkflowRegistry([APPROVAL])
    rt.set_workflow_registry(registry)
    assert rt.workflow_registry is registry
    assert rt.artifact_store is None and rt.store.artifacts is not None  # as the original
    marker = object()
    rt.set_artifact_store(marker)
    assert rt.artifact_store is marker
    assert Runtime(**stores, artifact_store=marker).artifact_store is marker


async def test_run_store_queries_on_every_store(stores: dict[str, Any]) -> None:
    past = datetime(2020, 1, 1, tzinfo=timezone.utc)
    config = RuntimeConfig(clock=lambda: past - timedelta(days=1))  # every wait is ahead
    rt = Runtime(**stores, workflow_registry=[waiter("evt:c", "child")], config=config)

    def sleeper(workflow_id: str, until: datetime) -> WorkflowSpec:
        async def sleep(run: RunState, ctx: Any) -> StepPlan:
            return StepPlan(
                node_id="sleep",
                effect=Effect(EffectType.WAIT_UNTIL, {"until": until.isoformat()}),
                next_node="done",
            )

        def done(run: RunState, ctx: Any) -> StepPlan:
            return StepPlan(node_id="done", complete_output={})

        return WorkflowSpec(workflow_id, "sleep", {"sleep": sleep, "done": done})

    late, early = sleeper("late", past + timedelta(hours=2)), sleeper("early", past)
    future = sleeper("future", datetime(2999, 1, 1, tzinfo=timezone.utc))
    ids = {}
    for wf in (late, early, future):
        ids[wf.workflow_id], _ = await rt.run(wf)
    now = (past + timedelta(days=1)).isoformat()
    due = await rt.run_store.list_due_wait_until(now_iso=now)
    assert [s.run_id for s in due] == [ids["early"], ids["late"]]  # earliest first
    assert [s.run_id for s in await rt.run_store.list_due_wait_until(now_iso=now, limit=1)] == [
        ids["early"]
    ]

    parent = parent_of("child", run_async=True)
    parent_id, state = await rt.run(parent)
    children = await rt.run_store.list_children(parent_run_id=parent_id)
    assert [c.parent_run_id for c in children] == [parent_id]
    assert state.output["child"]["async"] is True  # type: ignore[index]
    assert (
        await rt.run_store.list_children(parent_run_id=parent_id, status=RunStatus.COMPLETED) == []
    )


async def test_resume_without_a_wait_key_skips_the_check(stores: dict[str, Any]) -> None:
    rt = Runtime(**stores)
    run_id, _ = await rt.run(ask_then_echo())
    done = await rt.resume(workflow=ask_then_echo(), run_id=run_id, wait_key=None, payload={"n": 1})
    assert done.status is RunStatus.COMPLETED and done.output == {"answer": {"n": 1}}


async def test_effect_handlers_with_the_originals_two_arguments(stores: dict[str, Any]) -> None:
    seen: list[str] = []

    def llm(run: RunState, effect: Effect) -> EffectOutcome:  # the original's signature
        seen.append(effect.payload["prompt"])
        return EffectOutcome.completed({"content": "hi"})

    async def three(run: RunState, effect: Effect, default_next_node: str | None) -> EffectOutcome:
        return EffectOutcome.completed({"next": default_next_node})

    async def node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="a",
            effect=Effect(EffectType.LLM_CALL, {"prompt": "hello"}, result_key="llm"),
            next_node="b",
        )

    async def b(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="b", effect=Effect(EffectType.TOOL_CALLS, {}, "tools"), next_node="c"
        )

    def c(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="c", complete_output={"llm": run.vars["llm"], "t": run.vars["tools"]}
        )

    rt = Runtime(**stores, effect_handlers={EffectType.LLM_CALL: llm, EffectType.TOOL_CALLS: three})
    _, state = await rt.run(WorkflowSpec("two", "a", {"a": node, "b": b, "c": c}))
    assert state.output == {"llm": {"content": "hi"}, "t": {"next": "c"}}
    assert seen == ["hello"]
    with pytest.raises(InvalidArgumentError, match="not callable"):
        Runtime(effect_handlers={EffectType.LLM_CALL: "nope"})  # type: ignore[dict-item]


async def test_node_handlers_reach_the_runtime_context(stores: dict[str, Any]) -> None:
    class Host:
        tenant = "acme"

    def node(run: RunState, ctx: Any) -> StepPlan:  # the original passed the context itself
        return StepPlan(node_id="a", complete_output={"tenant": ctx.tenant, "t": ctx.now_iso()})

    rt = Runtime(**stores, context=Host())
    _, state = await rt.run(WorkflowSpec("ctx", "a", {"a": node}))
    assert state.output is not None and state.output["tenant"] == "acme"
    assert datetime.fromisoformat(state.output["t"]).tzinfo is not None
    assert datetime.fromisoformat(DefaultRunContext().now_iso()).tzinfo is not None


def test_model_constructors_of_the_original() -> None:
    run = RunState.new(workflow_id="wf", entry_node="a", actor_id="me", vars={"x": 1})
    assert run.status is RunStatus.RUNNING and run.current_node == "a" and run.vars == {"x": 1}
    effect = Effect(EffectType.ASK_USER, {"prompt": "?"}, result_key="r")
    record = StepRecord.start(run=run, node_id="a", effect=effect, attempt=2, idempotency_key="k")
    assert (record.status, record.actor_id, record.attempt) == (StepStatus.STARTED, "me", 2)
    assert record.effect == {"type": "ask_user", "payload": {"prompt": "?"}, "result_key": "r"}
    assert record.finish_success({"ok": 1}) is record and record.status is StepStatus.COMPLETED
    assert record.ended_at is not None and record.result == {"ok": 1}
    wait = WaitState(WaitReason.UNTIL, until="2026-01-01T00:00:00+00:00")  # ISO strings too
    assert wait.until == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert record.finish_waiting(wait).result["wait"]["until"] == "2026-01-01T00:00:00+00:00"
    assert record.finish_failure("boom").error == "boom"
    assert record.status is StepStatus.FAILED
    assert APPROVAL.is_terminal("done") is False  # a plan's complete_output ends a run
    assert LimitWarning("tokens", "warning", 1, 3).pct == 33.3


# -- registry and scheduler ---------------------------------------------------------------------


def test_registry_of_the_original() -> None:
    registry = WorkflowRegistry()
    registry.register(APPROVAL)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(APPROVAL)  # the same spec twice too
    other = counter(1, "b_first")
    registry.register(other)
    assert registry.list_ids() == ["approval", "b_first"]  # registration order
    assert registry.get_or_raise("b_first") is other and len(registry) == 2
    registry.unregister("b_first")
    assert "b_first" not in registry and registry.get("b_first") is None
    with pytest.raises(KeyError, match="not registered"):
        registry.get_or_raise("b_first")
    with pytest.raises(KeyError):
        registry.unregister("b_first")


async def test_scheduler_of_the_original(stores: dict[str, Any]) -> None:
    resumed: list[RunState] = []
    registry = WorkflowRegistry([ask_then_echo()])
    rt = Runtime(**stores)
    scheduler = Scheduler(
        runtime=rt, registry=registry, poll_interval_s=0.05, on_run_resumed=resumed.append
    )
    assert rt.workflow_registry is registry and not scheduler.is_running
    assert scheduler.stats.last_poll_at is None
    run_id = await rt.start(workflow=ask_then_echo())  # left to the scheduler
    assert await scheduler.poll_once() == 1  # drove it until it waits
    assert [s.status for s in resumed] == [RunStatus.WAITING]
    assert scheduler.stats.runs_resumed == 1 and scheduler.stats.last_poll_at is not None
    waiting = await scheduler.find_waiting_runs(wait_reason=WaitReason.USER)
    assert [s.run_id for s in waiting] == [run_id]
    assert await scheduler.poll_once() == 0
    state = await scheduler.resume_event(
        run_id=run_id, wait_key=waiting[0].waiting.wait_key, payload={"v": 1}
    )  # type: ignore[union-attr]
    assert state.output == {"answer": {"v": 1}}

    await scheduler.start()
    try:
        assert scheduler.is_running
        with pytest.raises(RuntimeError, match="already running"):
            await scheduler.start()
    finally:
        await scheduler.stop(timeout=1.0)
    assert not scheduler.is_running
    await scheduler.stop()  # stopping twice is harmless


async def test_on_run_failed_hears_a_run_whose_driving_raised(stores: dict[str, Any]) -> None:
    failures: list[tuple[str, str]] = []

    def down(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
        raise StoreError("the database is down")

    def node(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL, {}), next_node="a")

    wf = WorkflowSpec("down", "a", {"a": node})
    rt = Runtime(**stores, effect_handlers={EffectType.LLM_CALL: down}, workflow_registry=[wf])
    scheduler = Scheduler(
        runtime=rt,
        max_errors_kept=1,
        on_run_failed=lambda run_id, exc: failures.append((run_id, str(exc))),
        on_run_resumed=lambda state: 1 / 0,  # a broken callback is logged, not fatal
    )
    run_id = await rt.start(workflow=wf)
    assert await scheduler.poll_once() == 1
    assert failures == [(run_id, "the database is down")]
    assert scheduler.stats.runs_failed == 1
    assert len(scheduler.stats.errors) == 1 and "database is down" in scheduler.stats.errors[0]


async def test_scheduled_runtime_of_the_original(stores: dict[str, Any]) -> None:
    child, parent = waiter("evt:child", "child"), parent_of("child")
    resumed: list[RunState] = []
    sr = await create_scheduled_runtime(
        **stores, workflows=[child, parent], poll_interval_s=0.05, on_run_resumed=resumed.append
    )
    try:
        assert sr.is_running
        run_id, state = await sr.run(parent, actor_id="me")
        assert state.status is RunStatus.WAITING and state.waiting is not None
        details = state.waiting.details or {}
        sub_run_id = details["sub_run_id"]
        assert details["sub_workflow_id"] == "child"
        assert details["sub_waiting"] == {"reason": "event", "wait_key": "evt:child"}
        # No parent to resume yet: the child still waits; the parent's state comes back as is.
        assert (
            await sr.resume_subworkflow_parent(child_run_id=sub_run_id, child_output={})
        ).status is RunStatus.WAITING  # type: ignore[union-attr]
        await sr.resume_event(run_id=sub_run_id, wait_key="evt:child", payload={"ok": 1})
        done = await wait_for_status(sr, run_id, RunStatus.COMPLETED)
        # Idempotent: the parent resumed by itself already.
        again = await sr.resume_subworkflow_parent(child_run_id=sub_run_id, child_output={})
        assert again is not None and again.status is RunStatus.COMPLETED
        assert again.output == done.output
        assert await sr.resume_subworkflow_parent(child_run_id=run_id, child_output={}) is None
    finally:
        await sr.stop()
    assert not sr.is_running


async def test_in_memory_stores_of_the_original_on_their_own() -> None:
    runs, ledger = InMemoryRunStore(), InMemoryLedgerStore()
    first = RunState.new(workflow_id="wf", entry_node="a")
    second = RunState.new(workflow_id="wf", entry_node="a", parent_run_id=first.run_id)
    second.status, second.waiting = (
        RunStatus.WAITING,
        WaitState(WaitReason.UNTIL, until="2026-01-01T00:00:00+00:00"),
    )
    await runs.save(first)
    await runs.save(second)
    assert (await runs.load(second.run_id)) == second
    first.vars["x"] = 1
    assert (await runs.load(first.run_id)).vars == {}  # a copy was kept  # type: ignore[union-attr]
    await runs.save(first)
    assert (await runs.load(first.run_id)).vars == {"x": 1}  # type: ignore[union-attr]
    assert [r.run_id for r in await runs.list_due_wait_until(now_iso="2026-01-02T00:00:00")] == [
        second.run_id
    ]
    assert await runs.list_due_wait_until(now_iso="2025-12-31T00:00:00+00:00") == []
    assert [r.run_id for r in await runs.list_children(parent_run_id=first.run_id)] == [
        second.run_id
    ]
    assert len(await runs.list_runs(workflow_id="wf")) == 2
    assert [r.run_id for r in await runs.list_runs(status=RunStatus.WAITING)] == [second.run_id]

    record = StepRecord.start(run=first, node_id="a", effect=None).finish_success({"k": 1})
    await ledger.append(record)
    assert [r["result"] for r in await ledger.list(first.run_id)] == [{"k": 1}]
    assert await ledger.list("unknown") == []
