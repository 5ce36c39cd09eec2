"""Shared concurrency and rate limits (``Limit``, ``max_concurrent_runs``) on every store.

The runtime-level tests drive runs by hand (``tick``) and hold effects open on events, so what
is in flight at each moment is known exactly; the store-level tests pass explicit times, so
lease expiries and rate windows are exact. Worker processes: tests/acceptance/test_limit_workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    Limit,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    StepStatus,
    WaitReason,
    WorkflowSpec,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.core.throttle import Request
from tests.helpers import eventually, wait_for_status
from tests.workflows import own_vars, waiter

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Gate:
    """An effect handler that stays in flight until the test opens its run's gate."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[RunState]] = []

    async def finish(self, *runtimes: Runtime) -> None:
        """Let every effect end and every tick return, then stop the runtimes."""
        for run_id in self.entered:
            self.gate(run_id).set()
        for task in self.tasks:
            await task
        for rt in runtimes:
            await rt.aclose()

    def gate(self, run_id: str) -> asyncio.Event:
        return self.gates.setdefault(run_id, asyncio.Event())

    async def __call__(self, run: RunState, effect: Effect, next_node: str | None) -> Any:
        self.entered.append(run.run_id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate(run.run_id).wait()
        finally:
            self.in_flight -= 1
        return EffectOutcome.completed({"by": run.run_id})


def one_call(
    effect_type: EffectType = EffectType.LLM_CALL, workflow_id: str = "one_call", **workflow: Any
) -> WorkflowSpec:
    """One effect of ``effect_type`` (its payload's ``tenant`` from vars), then done."""

    def call(run: RunState, ctx: object) -> StepPlan:
        payload = {"tenant": run.vars["tenant"]} if "tenant" in run.vars else {}
        return StepPlan("call", effect=Effect(effect_type, payload, "answer"), next_node="done")

    def done(run: RunState, ctx: object) -> StepPlan:
        return StepPlan("done", complete_output=own_vars(run))

    return WorkflowSpec(workflow_id, "call", {"call": call, "done": done}, **workflow)


def runtime(
    store: Any, *limits: Limit, handlers: dict[EffectType, Any] | None = None, lease_s: float = 30.0
) -> Runtime:
    return Runtime(
        store=store,
        effect_handlers=handlers or {},
        config=RuntimeConfig(limits=list(limits), lease_s=lease_s),
    )


async def start_ticking(
    rt: Runtime, wf: WorkflowSpec, gate: Gate, vars: dict[str, Any]
) -> tuple[str, asyncio.Task[RunState]]:
    """Start a run and tick it in a task; returns once its effect is in flight or it waits."""
    run_id = await rt.start(workflow=wf, vars=vars)
    task = asyncio.create_task(rt.tick(workflow=wf, run_id=run_id))
    gate.tasks.append(task)

    async def settled() -> bool:
        if run_id in gate.entered:
            return True
        return task.done()

    await eventually(settled, f"run {run_id} neither entered its effect nor stopped")
    return run_id, task


def limit_of(state: RunState) -> dict[str, Any]:
    assert state.status is RunStatus.WAITING and state.waiting is not None
    assert state.waiting.reason is WaitReason.UNTIL
    assert state.waiting.details is not None
    limit: dict[str, Any] = state.waiting.details["limit"]
    return limit


async def test_at_most_max_concurrent_effects_and_the_oldest_waiter_is_woken(store: Any) -> None:
    gate = Gate()
    rt = runtime(
        store,
        Limit(effect_type=EffectType.LLM_CALL, max_concurrent=2),
        handlers={EffectType.LLM_CALL: gate},
    )
    wf = one_call()
    a, task_a = await start_ticking(rt, wf, gate, {})
    b, task_b = await start_ticking(rt, wf, gate, {})
    c, task_c = await start_ticking(rt, wf, gate, {})
    d, task_d = await start_ticking(rt, wf, gate, {})
    assert gate.entered == [a, b]
    for refused, task in ((c, task_c), (d, task_d)):
        state = await task  # the run left memory: its tick returned
        assert limit_of(state) == {"name": "concurrent:llm_call", "key": "", "kind": "concurrent"}
        assert rt.held_runs == frozenset({a, b})
        assert refused not in rt.held_runs
    # Nobody is due: the waiters sleep until a slot frees (or their re-check time).
    now = rt.config.clock()
    assert await store.claim_due("probe", now, now + timedelta(seconds=1), 10) == []

    gate.gate(a).set()
    assert (await task_a).status is RunStatus.COMPLETED
    # The commit that freed a's slot made the oldest waiter, c, due; d still sleeps.
    now = rt.config.clock()
    claimed = await store.claim_due("probe", now, now + timedelta(seconds=1), 10)
    assert [h.state.run_id for h in claimed] == [c]
    for handle in claimed:
        await store.release(handle, now=now)

    c_task = asyncio.create_task(rt.tick(workflow=wf, run_id=c))
    await eventually(lambda: c in gate.entered, "the woken waiter never ran its effect")
    gate.gate(b).set()
    gate.gate(c).set()
    assert (await task_b).status is RunStatus.COMPLETED
    assert (await c_task).status is RunStatus.COMPLETED
    d_task = asyncio.create_task(rt.tick(workflow=wf, run_id=d))
    await eventually(lambda: d in gate.entered, "the last waiter never ran once slots freed")
    gate.gate(d).set()
    assert (await d_task).status is RunStatus.COMPLETED
    assert gate.peak == 2

    ledger = await rt.get_ledger(c)
    assert verify_ledger_chain(ledger)["ok"]
    waited = [r for r in ledger if r["status"] == StepStatus.WAITING.value]
    done = [r for r in ledger if r["node_id"] == "call" and r["status"] == "completed"]
    assert len(waited) == 1 and waited[0]["result"]["limit"]["name"] == "concurrent:llm_call"
    # Waiting was not an attempt: the effect ran once, as attempt 1, with the same key.
    assert [r["attempt"] for r in done] == [1]
    assert done[0]["idempotency_key"] == waited[0]["idempotency_key"]
    await gate.finish(rt)


async def test_keyed_budgets_are_one_per_tenant(store: Any) -> None:
    gate = Gate()
    limit = Limit(effect_type=EffectType.LLM_CALL, max_concurrent=1, key="tenant")
    assert limit.name == "concurrent:llm_call/tenant"
    rt = runtime(store, limit, handlers={EffectType.LLM_CALL: gate})
    wf = one_call()
    a1, _ = await start_ticking(rt, wf, gate, {"tenant": "acme"})
    b1, _ = await start_ticking(rt, wf, gate, {"tenant": "globex"})
    _, a2_task = await start_ticking(rt, wf, gate, {"tenant": "acme"})
    assert gate.entered == [a1, b1]  # two tenants do not share
    assert limit_of(await a2_task)["key"] == "acme"
    usage = {(u["name"], u["key"]): u for u in await store.limit_usage(rt.config.clock())}
    assert usage[("concurrent:llm_call/tenant", "acme")]["used"] == 1
    assert usage[("concurrent:llm_call/tenant", "acme")]["waiting"] == 1
    assert usage[("concurrent:llm_call/tenant", "globex")]["waiting"] == 0
    await gate.finish(rt)


async def test_a_limit_on_one_effect_type_holds_back_no_other_run(store: Any) -> None:
    gate = Gate()
    rt = runtime(
        store,
        Limit(effect_type=EffectType.LLM_CALL, max_concurrent=1),
        handlers={EffectType.LLM_CALL: gate, EffectType.TOOL_CALLS: gate},
    )
    llm, tools = one_call(), one_call(EffectType.TOOL_CALLS, "tools")
    first, _ = await start_ticking(rt, llm, gate, {})
    assert gate.entered == [first]
    _, second_task = await start_ticking(rt, llm, gate, {})
    assert limit_of(await second_task)["name"] == "concurrent:llm_call"
    other, other_task = await start_ticking(rt, tools, gate, {})
    assert other in gate.entered  # not held back while the llm budget is full
    gate.gate(other).set()
    assert (await other_task).status is RunStatus.COMPLETED
    await gate.finish(rt)


async def test_max_concurrent_runs_admits_in_order_of_arrival(store_factory: Any) -> None:
    store = store_factory()
    wf = waiter("evt:go", "admitted")
    wf.max_concurrent_runs = 1
    sr = await create_scheduled_runtime(store=store, workflows=[wf], poll_interval_s=0.05)
    try:
        first = await sr.start(workflow=wf)  # returns at once, whatever the budget
        await eventually(lambda: _waits_on(sr, first, WaitReason.EVENT), "first never started")
        later = [await sr.start(workflow=wf) for _ in range(3)]
        for run_id in later:
            await eventually(lambda r=run_id: _waits_on(sr, r, WaitReason.UNTIL))
        order = [first]
        for _ in range(3):
            (done,) = await sr.emit_event("evt:go", {"go": True})
            assert done.status is RunStatus.COMPLETED

            async def next_admitted() -> str:
                waiting = await sr.find_waiting_runs(wait_reason=WaitReason.EVENT)
                assert len(waiting) == 1
                return waiting[0].run_id

            order.append(await eventually(next_admitted, "no run was admitted"))
        assert order == [first, *later]  # one at a time, in order of arrival
        ledger = await sr.get_ledger(later[-1])
        assert ledger[0]["status"] == "waiting" and ledger[0]["result"]["limit"]["name"] == (
            "runs@admitted"
        )
    finally:
        await sr.stop()


async def _waits_on(sr: Any, run_id: str, reason: WaitReason) -> bool:
    state = await sr.get_state(run_id)
    return state.status is RunStatus.WAITING and state.waiting.reason is reason


async def test_a_cancelled_run_gives_its_admission_slot_back(store: Any) -> None:
    wf = waiter("evt:never", "solo")
    wf.max_concurrent_runs = 1
    rt = Runtime(store=store, workflow_registry=[wf])
    first, state = await rt.run(wf)
    assert state.waiting is not None and state.waiting.reason is WaitReason.EVENT
    second, state = await rt.run(wf)
    assert limit_of(state)["name"] == "runs@solo"
    await rt.cancel_run(first)
    state = await rt.tick(workflow=wf, run_id=second)
    assert state.waiting is not None and state.waiting.reason is WaitReason.EVENT


# -- the store's rules, at exact times -----------------------------------------------------------


async def claimed_run(store: Any, owner: str, now: datetime, lease_s: float = 10.0) -> Any:
    rt = Runtime(store=store)
    run_id = await rt.start(workflow=one_call())
    return await store.claim_run(run_id, owner, now, now + timedelta(seconds=lease_s))


SLOT = Request("concurrent:llm_call", "", "concurrent", "effect", 1)


async def test_a_crashed_workers_slot_comes_back_when_its_lease_expires(store: Any) -> None:
    dead = await claimed_run(store, "dead-worker", T0, lease_s=5)
    assert (await store.acquire_limits(dead.state.run_id, dead.version, [SLOT], T0)).granted
    other = await claimed_run(store, "live-worker", T0 + timedelta(seconds=1), lease_s=60)
    refused = await store.acquire_limits(
        other.state.run_id, other.version, [SLOT], T0 + timedelta(seconds=1)
    )
    assert not refused.granted and refused.blocked == SLOT
    assert refused.retry_at == T0 + timedelta(seconds=5)  # when the holder's lease expires
    usage = await store.limit_usage(T0 + timedelta(seconds=1))
    assert [(u["used"], u["waiting"]) for u in usage] == [(1, 0)]
    # The dead worker never renews: after its lease the slot is free.
    later = T0 + timedelta(seconds=6)
    assert (await store.acquire_limits(other.state.run_id, other.version, [SLOT], later)).granted
    # The crashed run, taken over by a new claim, does not find "its" old slot: it must wait.
    retaken = await store.claim_run(dead.state.run_id, "heir", later, later + timedelta(seconds=60))
    again = await store.acquire_limits(retaken.state.run_id, retaken.version, [SLOT], later)
    assert not again.granted


async def test_a_live_claim_keeps_its_slot_past_the_first_lease_by_renewing(store: Any) -> None:
    holder = await claimed_run(store, "w1", T0, lease_s=5)
    assert (await store.acquire_limits(holder.state.run_id, holder.version, [SLOT], T0)).granted
    await store.renew("w1", [holder.state.run_id], T0 + timedelta(seconds=20))
    other = await claimed_run(store, "w2", T0, lease_s=60)
    at = T0 + timedelta(seconds=10)
    assert not (await store.acquire_limits(other.state.run_id, other.version, [SLOT], at)).granted


async def test_rate_grants_at_most_rate_per_window(store: Any) -> None:
    rate = Request("rate:llm_call", "", "rate", "effect", 2, 1.0)
    runs = [await claimed_run(store, "w", T0) for _ in range(4)]

    async def take(i: int, at: datetime) -> Any:
        return await store.acquire_limits(runs[i].state.run_id, runs[i].version, [rate], at)

    assert (await take(0, T0)).granted
    assert (await take(1, T0 + timedelta(seconds=0.5))).granted
    refused = await take(2, T0 + timedelta(seconds=0.9))
    assert not refused.granted and refused.retry_at == T0 + timedelta(seconds=1)
    assert (await take(2, T0 + timedelta(seconds=1.01))).granted
    refused = await take(3, T0 + timedelta(seconds=1.2))
    assert refused.retry_at == T0 + timedelta(seconds=1.5)
    usage = await store.limit_usage(T0 + timedelta(seconds=1.2))
    assert [(u["kind"], u["used"], u["capacity"]) for u in usage] == [("rate", 2, 2)]


async def test_two_limits_on_one_effect_are_taken_together_or_not_at_all(store: Any) -> None:
    # Named to be locked and found free first: the slot refused after it must undo nothing.
    rate = Request("a-rate", "", "rate", "effect", 5, 1.0)
    holder = await claimed_run(store, "w", T0)
    assert (await store.acquire_limits(holder.state.run_id, holder.version, [SLOT], T0)).granted
    other = await claimed_run(store, "w", T0)
    verdict = await store.acquire_limits(other.state.run_id, other.version, [SLOT, rate], T0)
    assert not verdict.granted and verdict.blocked == SLOT
    usage = {u["name"]: u for u in await store.limit_usage(T0)}
    assert usage["a-rate"]["used"] == 0  # the refused request took no token
    assert (await store.acquire_limits(other.state.run_id, other.version, [rate], T0)).granted
    assert {u["name"]: u["used"] for u in await store.limit_usage(T0)}["a-rate"] == 1


@pytest.mark.parametrize("workers", [3])
async def test_scheduled_workers_share_one_budget(
    store_factory: Callable[[], Any], workers: int
) -> None:
    """Several scheduled runtimes (the in-process form of several workers) on one store."""
    limit = Limit(effect_type=EffectType.LLM_CALL, max_concurrent=2)
    in_flight, peak = [0], [0]

    async def effect(run: RunState, effect: Effect, next_node: str | None) -> Any:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1
        return EffectOutcome.completed({"ok": True})

    wf = one_call()
    srs = [
        await create_scheduled_runtime(
            store=store_factory(),
            workflows=[wf],
            effect_handlers={EffectType.LLM_CALL: effect},
            poll_interval_s=0.05,
            config=RuntimeConfig(limits=[limit]),
        )
        for _ in range(workers)
    ]
    try:
        run_ids = [await srs[0].start(workflow=wf) for _ in range(12)]
        for run_id in run_ids:
            await wait_for_status(srs[0], run_id, RunStatus.COMPLETED, timeout=20)
    finally:
        for sr in srs:
            await sr.stop()
    assert peak[0] <= 2
