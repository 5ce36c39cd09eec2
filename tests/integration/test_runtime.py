"""The Runtime API on every backend: memory, a SQLite file and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

import pytest

from abstractruntime import (
    ConcurrentUpdateError,
    Effect,
    EffectOutcome,
    EffectType,
    RunExistsError,
    RunLeasedError,
    RunNotWaitingError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    WaitKeyMismatchError,
    WaitReason,
    WorkflowSpec,
    verify_ledger_chain,
)
from tests.helpers import FakeClock, own_vars
from tests.workflows import APPROVAL, counter

StoreFactory = Callable[[], Any]


async def test_quick_start_ask_user_pause_and_resume(store_factory: StoreFactory) -> None:
    rt = Runtime(store=store_factory())
    run_id, state = await rt.run(APPROVAL, vars={"order": 42})
    assert state.status is RunStatus.WAITING
    assert state.waiting is not None
    assert state.waiting.reason is WaitReason.USER
    assert state.waiting.wait_key == f"user:{run_id}:ask"
    assert state.waiting.prompt == "Approve?"
    assert state.waiting.choices == ["yes", "no"]

    # A second runtime on the same database (another process, in real life) resumes it.
    rt2 = Runtime(store=store_factory())
    waiting = await rt2.get_state(run_id)
    assert waiting.status is RunStatus.WAITING and own_vars(waiting) == {"order": 42}
    done = await rt2.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"ok": 1}
    )
    assert done.status is RunStatus.COMPLETED
    assert done.output == {"answer": {"ok": 1}}
    assert (await rt.get_state(run_id)).output == {"answer": {"ok": 1}}

    ledger = await rt.get_ledger(run_id)
    assert [r["status"] for r in ledger] == ["waiting", "completed", "completed"]
    assert [r["node_id"] for r in ledger] == ["ask", "ask", "done"]
    assert verify_ledger_chain(ledger)["ok"] is True


async def test_resume_with_wrong_key_raises_and_changes_nothing(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _state = await rt.run(APPROVAL)
    with pytest.raises(WaitKeyMismatchError, match="waits on") as info:
        await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key="nope", payload={})
    assert isinstance(info.value, ValueError)
    assert (await rt.get_state(run_id)).status is RunStatus.WAITING
    assert len(await rt.get_ledger(run_id)) == 1


async def test_resume_of_a_finished_run_is_a_clear_error(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, state = await rt.run(APPROVAL)
    key = state.waiting.wait_key
    await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key=key, payload={})
    with pytest.raises(RunNotWaitingError, match="completed, not waiting"):
        await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key=key, payload={})


async def test_resume_payload_must_be_a_dict(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, state = await rt.run(APPROVAL)
    with pytest.raises(TypeError, match="payload must be a dict"):
        await rt.resume(
            workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload=[1]
        )


async def test_sequential_nodes_commit_every_step(store_factory: StoreFactory) -> None:
    wf = counter(5)
    rt = Runtime(store=store_factory())
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"n": 5}
    fresh = await Runtime(store=store_factory()).get_state(run_id)
    assert own_vars(fresh) == {"n": 5, "seen": [0, 1, 2, 3, 4]}
    ledger = await rt.get_ledger(run_id)
    assert [r["node_id"] for r in ledger] == ["n0", "n1", "n2", "n3", "n4"]
    assert verify_ledger_chain(ledger)["ok"]


async def test_max_steps_stops_a_running_run_where_it_is(store: Any) -> None:
    wf = counter(5)
    rt = Runtime(store=store)
    run_id = await rt.start(workflow=wf)
    state = await rt.tick(workflow=wf, run_id=run_id, max_steps=2)
    assert state.status is RunStatus.RUNNING
    assert state.current_node == "n2"
    assert (await rt.get_state(run_id)).vars["n"] == 2
    state = await rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED and state.output == {"n": 5}


async def test_wait_event_resumes_at_resume_to_node_with_dotted_result_key(store: Any) -> None:
    def wait(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="wait",
            effect=Effect(
                EffectType.WAIT_EVENT,
                {"wait_key": "evt:paid", "resume_to_node": "paid"},
                result_key="payment.event",
            ),
            next_node="unused",
        )

    wf = WorkflowSpec(
        "events",
        "wait",
        {
            "wait": wait,
            "unused": lambda run, ctx: StepPlan(node_id="unused", complete_output={"x": 0}),
            "paid": lambda run, ctx: StepPlan(node_id="paid", complete_output=own_vars(run)),
        },
    )
    rt = Runtime(store=store)
    run_id, state = await rt.run(wf, vars={"payment": {"amount": 3}})
    assert state.waiting.reason is WaitReason.EVENT
    assert state.waiting.wait_key == "evt:paid"
    assert state.waiting.resume_to_node == "paid"
    done = await rt.resume(workflow=wf, run_id=run_id, wait_key="evt:paid", payload={"ok": True})
    assert done.output == {"payment": {"amount": 3, "event": {"ok": True}}}


async def test_wait_event_without_wait_key_fails_the_run(store: Any) -> None:
    wf = WorkflowSpec(
        "bad_wait",
        "w",
        {"w": lambda run, ctx: StepPlan(node_id="w", effect=Effect(EffectType.WAIT_EVENT))},
    )
    rt = Runtime(store=store)
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert "wait_event requires payload['wait_key']" in state.error
    assert (await rt.get_ledger(run_id))[-1]["status"] == "failed"


def _sleeper(until: Any) -> WorkflowSpec:
    return WorkflowSpec(
        "sleeper",
        "sleep",
        {
            "sleep": lambda run, ctx: StepPlan(
                node_id="sleep",
                effect=Effect(EffectType.WAIT_UNTIL, {"until": until}, result_key="woke"),
                next_node="after",
            ),
            "after": lambda run, ctx: StepPlan(node_id="after", complete_output=own_vars(run)),
        },
    )


async def test_wait_until_continues_on_tick_once_due(store_factory: StoreFactory) -> None:
    clock = FakeClock()
    # One hour ahead, written with a +02:00 offset: compared as datetimes, not strings.
    until = (clock.now + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    wf = _sleeper(until.isoformat())
    rt = Runtime(store=store_factory(), config=RuntimeConfig(clock=clock))
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.WAITING
    assert state.waiting.until == clock.now + timedelta(hours=1)

    clock.now += timedelta(minutes=59)
    assert (await rt.tick(workflow=wf, run_id=run_id)).status is RunStatus.WAITING
    clock.now += timedelta(minutes=1)
    rt2 = Runtime(store=store_factory(), config=RuntimeConfig(clock=clock))
    state = await rt2.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"woke": {"until": "2026-01-01T13:00:00+00:00"}}


async def test_wait_until_in_the_past_does_not_wait(store: Any) -> None:
    rt = Runtime(store=store)
    _, state = await rt.run(_sleeper("2000-01-01T00:00:00Z"))
    assert state.status is RunStatus.COMPLETED


async def test_wait_until_with_a_bad_time_fails_readably(store: Any) -> None:
    rt = Runtime(store=store)
    _, state = await rt.run(_sleeper("next tuesday"))
    assert state.status is RunStatus.FAILED
    assert "'next tuesday' is not an ISO-8601 timestamp" in state.error


async def test_custom_effect_handlers_sync_and_async(store: Any) -> None:
    calls: list[str] = []

    async def llm(run: RunState, effect: Effect, default_next_node: str | None) -> EffectOutcome:
        await asyncio.sleep(0)
        calls.append(effect.payload["prompt"])
        return EffectOutcome.completed({"content": "hi " + effect.payload["prompt"]})

    def tools(run: RunState, effect: Effect, default_next_node: str | None) -> EffectOutcome:
        return EffectOutcome.failed("tool exploded")

    wf = WorkflowSpec(
        "custom",
        "think",
        {
            "think": lambda run, ctx: StepPlan(
                node_id="think",
                effect=Effect(EffectType.LLM_CALL, {"prompt": "bob"}, result_key="llm"),
                next_node="act",
            ),
            "act": lambda run, ctx: StepPlan(
                node_id="act", effect=Effect(EffectType.TOOL_CALLS, {"calls": []}), next_node="x"
            ),
            "x": lambda run, ctx: StepPlan(node_id="x", complete_output={}),
        },
    )
    rt = Runtime(
        store=store, effect_handlers={EffectType.LLM_CALL: llm, EffectType.TOOL_CALLS: tools}
    )
    run_id, state = await rt.run(wf)
    assert calls == ["bob"]
    assert state.vars["llm"] == {"content": "hi bob"}
    assert state.status is RunStatus.FAILED
    assert state.error == "effect 'tool_calls' failed: tool exploded"
    ledger = await rt.get_ledger(run_id)
    assert ledger[0]["result"] == {"content": "hi bob"}
    assert ledger[0]["effect"]["type"] == "llm_call"
    assert ledger[1]["status"] == "failed"


async def test_effect_without_handler_fails_the_run(store: Any) -> None:
    wf = WorkflowSpec(
        "nohandler",
        "a",
        {"a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL))},
    )
    _, state = await Runtime(store=store).run(wf)
    assert state.status is RunStatus.FAILED
    assert "no handler for effect 'llm_call'" in state.error


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (lambda run, ctx: 1 / 0, "node 'a' raised ZeroDivisionError: division by zero"),
        (lambda run, ctx: {"next_node": "b"}, "node 'a' returned dict, expected a StepPlan"),
        (
            lambda run, ctx: StepPlan(node_id="a", next_node="nowhere"),
            "node 'a' planned next_node 'nowhere', which is not a node of workflow 'broken'",
        ),
        (lambda run, ctx: StepPlan(node_id="a"), "no effect, next_node or complete_output"),
    ],
    ids=["raises", "not-a-plan", "unknown-node", "empty-plan"],
)
async def test_broken_node_fails_the_run_without_touching_others(
    store: Any, handler: Any, message: str
) -> None:
    broken = WorkflowSpec("broken", "a", {"a": handler})
    rt = Runtime(store=store)
    other_id, _ = await rt.run(APPROVAL)
    run_id, state = await rt.run(broken, vars={"keep": 1})
    assert state.status is RunStatus.FAILED
    assert message in state.error
    stored = await rt.get_state(run_id)
    assert stored.status is RunStatus.FAILED and stored.error == state.error
    assert own_vars(stored) == {"keep": 1}
    ledger = await rt.get_ledger(run_id)
    assert ledger[-1]["status"] == "failed" and message in ledger[-1]["error"]
    assert verify_ledger_chain(ledger)["ok"]
    assert (await rt.get_state(other_id)).status is RunStatus.WAITING


async def test_unserialisable_vars_fail_the_step_and_keep_the_last_state(store: Any) -> None:
    def first(run: RunState, ctx: Any) -> StepPlan:
        run.vars["good"] = 1
        return StepPlan(node_id="first", next_node="second")

    def second(run: RunState, ctx: Any) -> StepPlan:
        run.vars["good"] = 2
        run.vars["bad"] = {"inner": {1, 2}}
        return StepPlan(node_id="second", next_node="third")

    wf = WorkflowSpec(
        "serial",
        "first",
        {"first": first, "second": second, "third": lambda r, c: StepPlan("third", None, None, {})},
    )
    rt = Runtime(store=store)
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert "vars['bad']['inner']" in state.error
    assert "set" in state.error
    stored = await rt.get_state(run_id)
    assert own_vars(stored) == {"good": 1}  # the last committed vars, not the broken ones
    assert stored.current_node == "second"
    assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]


async def test_nan_in_vars_is_rejected_with_its_key(store: Any) -> None:
    def node(run: RunState, ctx: Any) -> StepPlan:
        run.vars["score"] = float("nan")
        return StepPlan(node_id="a", complete_output={})

    _, state = await Runtime(store=store).run(WorkflowSpec("nan", "a", {"a": node}))
    assert state.status is RunStatus.FAILED
    assert "vars['score']" in state.error


async def test_cancel_run(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _ = await rt.run(APPROVAL)
    state = await rt.cancel_run(run_id, reason="changed my mind")
    assert state.status is RunStatus.CANCELLED
    assert state.waiting is None
    stored = await rt.get_state(run_id)
    assert stored.status is RunStatus.CANCELLED
    ledger = await rt.get_ledger(run_id)
    assert ledger[-1]["error"] == "cancelled: changed my mind"
    with pytest.raises(RunNotWaitingError):
        await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key=f"user:{run_id}:ask")
    assert (await rt.cancel_run(run_id)).status is RunStatus.CANCELLED  # idempotent
    assert len(await rt.get_ledger(run_id)) == 2


async def test_unknown_run_raises_key_error(store: Any) -> None:
    rt = Runtime(store=store)
    with pytest.raises(KeyError, match="unknown run 'nope'"):
        await rt.get_state("nope")
    with pytest.raises(KeyError):
        await rt.get_ledger("nope")
    with pytest.raises(KeyError):
        await rt.tick(workflow=APPROVAL, run_id="nope")


async def test_a_taken_run_id_raises_run_exists_and_keeps_the_first_run(store: Any) -> None:
    rt = Runtime(store=store)
    await rt.start(workflow=APPROVAL, run_id="r1", vars={"first": True})
    with pytest.raises(RunExistsError, match="run 'r1' already exists"):
        await rt.start(workflow=APPROVAL, run_id="r1", vars={"first": False})
    assert own_vars(await rt.get_state("r1")) == {"first": True}
    assert await rt.get_ledger("r1") == []


async def test_tick_with_another_workflow_is_refused(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _ = await rt.run(APPROVAL)
    with pytest.raises(ValueError, match="belongs to workflow 'approval'"):
        await rt.tick(workflow=counter(2), run_id=run_id)


async def test_two_concurrent_ticks_execute_and_commit_one_step(
    store_factory: StoreFactory,
) -> None:
    """The lease keeps a second runtime from even executing the step the first one runs."""
    entered = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow(run: RunState, ctx: Any) -> StepPlan:
        nonlocal calls
        calls += 1
        entered.set()
        await release.wait()
        return StepPlan(node_id="slow", complete_output={"by": ctx.step_id})

    wf = WorkflowSpec("race", "slow", {"slow": slow})
    rt1, rt2 = Runtime(store=store_factory()), Runtime(store=store_factory())
    run_id = await rt1.start(workflow=wf)
    first = asyncio.create_task(rt1.tick(workflow=wf, run_id=run_id))
    await asyncio.wait_for(entered.wait(), 10)
    with pytest.raises(RunLeasedError, match="is being driven by"):
        await rt2.tick(workflow=wf, run_id=run_id)
    release.set()
    state = await first
    assert calls == 1
    ledger = await rt1.get_ledger(run_id)
    assert len(ledger) == 1 and ledger[0]["step_id"] == state.output["by"]
    # Released: the other runtime may tick it now (nothing left to do).
    assert (await rt2.tick(workflow=wf, run_id=run_id)).status is RunStatus.COMPLETED


async def test_a_worker_whose_lease_was_taken_over_cannot_commit(
    store_factory: StoreFactory,
) -> None:
    """Lease expired (say the worker stalled): another takes over; the stale one's commit is
    refused, so the step is committed exactly once."""
    clock = FakeClock()
    entered = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def node(run: RunState, ctx: Any) -> StepPlan:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await release.wait()
        return StepPlan(node_id="n", complete_output={"call": calls})

    wf = WorkflowSpec("stall", "n", {"n": node})
    config = RuntimeConfig(clock=clock, lease_s=30)
    stale = Runtime(store=store_factory(), config=config)
    fresh = Runtime(store=store_factory(), config=RuntimeConfig(clock=clock, lease_s=30))
    run_id = await stale.start(workflow=wf)
    stalled = asyncio.create_task(stale.tick(workflow=wf, run_id=run_id))
    await asyncio.wait_for(entered.wait(), 10)
    clock.now += timedelta(seconds=31)
    done = await fresh.tick(workflow=wf, run_id=run_id)
    assert done.output == {"call": 2}
    release.set()
    with pytest.raises(ConcurrentUpdateError, match="advanced by another runtime"):
        await stalled
    ledger = await fresh.get_ledger(run_id)
    assert len(ledger) == 1 and verify_ledger_chain(ledger)["ok"]
    assert (await fresh.get_state(run_id)).output == {"call": 2}


async def test_handlers_receive_a_context(store: Any) -> None:
    seen: dict[str, Any] = {}

    async def node(run: RunState, ctx: Any) -> StepPlan:
        seen.update(run_id=ctx.run_id, node=ctx.node_id, ctx=ctx.context, now=ctx.now())
        return StepPlan(node_id="a", complete_output={})

    rt = Runtime(store=store, context={"tenant": "acme"})
    run_id, _ = await rt.run(WorkflowSpec("ctx", "a", {"a": node}))
    assert seen["run_id"] == run_id and seen["node"] == "a"
    assert seen["ctx"] == {"tenant": "acme"}
    assert seen["now"].tzinfo is not None


async def test_start_records_actor_session_and_parent(store: Any) -> None:
    rt = Runtime(store=store)
    run_id = await rt.start(workflow=APPROVAL, actor_id="alice", session_id="s", parent_run_id="p")
    state = await rt.get_state(run_id)
    assert (state.actor_id, state.session_id, state.parent_run_id) == ("alice", "s", "p")
    assert state.status is RunStatus.RUNNING and state.current_node == "ask"
    state = await rt.tick(workflow=APPROVAL, run_id=run_id)
    assert (await rt.get_ledger(run_id))[0]["actor_id"] == "alice"


async def test_list_runs_filters(store: Any) -> None:
    rt = Runtime(store=store)
    waiting_id, _ = await rt.run(APPROVAL)
    done_id, _ = await rt.run(counter(2))
    listed = await store.list_runs(status=RunStatus.WAITING)
    assert [s.run_id for s in listed] == [waiting_id]
    assert [s.run_id for s in await store.list_runs(workflow_id="counter")] == [done_id]
    assert [s.run_id for s in await store.list_runs(wait_reason=WaitReason.USER)] == [waiting_id]
    assert len(await store.list_runs(limit=1)) == 1
    assert {s.run_id for s in await store.list_runs()} == {waiting_id, done_id}


async def test_a_failed_step_keeps_nothing_it_changed(store: Any) -> None:
    def first(run: RunState, ctx: Any) -> StepPlan:
        run.vars["a"] = 1
        return StepPlan(node_id="first", next_node="second")

    def second(run: RunState, ctx: Any) -> StepPlan:
        run.vars["a"] = 2
        run.vars["half_done"] = True
        raise RuntimeError("boom")

    wf = WorkflowSpec("atomic", "first", {"first": first, "second": second})
    rt = Runtime(store=store)
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert state.error == "node 'second' raised RuntimeError: boom"
    assert own_vars(state) == {"a": 1}
    assert own_vars(await rt.get_state(run_id)) == {"a": 1}
