"""``Runtime.restore_snapshot`` and ``Runtime.fork_snapshot`` on memory, SQLite and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from abstractruntime import (
    ConcurrentUpdateError,
    RunNotFoundError,
    RunState,
    RunStatus,
    Runtime,
    Snapshot,
    SnapshotNotFoundError,
    StepPlan,
    WorkflowSpec,
    verify_ledger_chain,
)
from abstractruntime.storage import (
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
    MemoryStore,
)
from tests.helpers import own_vars
from tests.workflows import APPROVAL, counter

StoreFactory = Callable[[], Any]


async def _snapshot(rt: Runtime, run_id: str, name: str = "checkpoint") -> Snapshot:
    snap = Snapshot.from_run(run=await rt.get_state(run_id), name=name)
    await rt.store.snapshots.save(snap)
    return snap


async def test_restore_rewinds_the_run_in_one_step(store_factory: StoreFactory) -> None:
    rt = Runtime(store=store_factory())
    run_id, waiting = await rt.run(APPROVAL, vars={"order": 42})
    snap = await _snapshot(rt, run_id, "before approval")
    done = await rt.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"a": "no"}
    )
    assert done.status is RunStatus.COMPLETED
    before = await rt.get_ledger(run_id)

    # Another runtime (another process) restores it.
    restored = await Runtime(store=store_factory()).restore_snapshot(snap.snapshot_id)
    assert restored.status is RunStatus.WAITING
    assert restored.waiting == waiting.waiting
    assert own_vars(restored) == {"order": 42} and restored.output is None
    assert restored.created_at == waiting.created_at
    assert restored.updated_at >= done.updated_at
    assert await rt.get_state(run_id) == restored

    ledger = await rt.get_ledger(run_id)
    assert ledger[: len(before)] == before  # history is kept: the restore is appended
    record = ledger[-1]
    assert len(ledger) == len(before) + 1
    assert record["status"] == "completed" and record["node_id"] == "ask"
    assert record["result"]["restored"] == snap.snapshot_id
    assert record["result"]["replaced"] == {"status": "completed", "node": "done"}
    assert verify_ledger_chain(ledger)["ok"]

    # The restored run goes on as if the approval had never been answered.
    again = await rt.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=restored.waiting.wait_key, payload={"a": "ok"}
    )
    assert again.output == {"answer": {"a": "ok"}}


async def test_restore_of_unknown_snapshot_or_run(store: Any) -> None:
    rt = Runtime(store=store)
    with pytest.raises(SnapshotNotFoundError, match="unknown snapshot 'nope'") as info:
        await rt.restore_snapshot("nope")
    assert isinstance(info.value, KeyError)
    with pytest.raises(SnapshotNotFoundError):
        await rt.fork_snapshot("nope")

    orphan = Snapshot.from_run(
        run=RunState(run_id="gone", workflow_id="wf", status="running", current_node="a"),
        name="orphan",
    )
    await store.snapshots.save(orphan)
    with pytest.raises(RunNotFoundError):
        await rt.restore_snapshot(orphan.snapshot_id)
    # A snapshot outlives its run: it can still be forked.
    fork = await rt.fork_snapshot(orphan.snapshot_id)
    assert (await rt.get_state(fork)).parent_run_id == "gone"


async def test_restore_wins_over_a_worker_that_holds_the_run(
    store_factory: StoreFactory,
) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def work(run: RunState, ctx: Any) -> StepPlan:
        run.vars["worked"] = True
        entered.set()
        await gate.wait()
        return StepPlan(node_id="work", complete_output={"done": True})

    wf = WorkflowSpec("held", "work", {"work": work})
    worker, operator = Runtime(store=store_factory()), Runtime(store=store_factory())
    run_id = await operator.start(workflow=wf, vars={"v": 1})
    snap = await _snapshot(operator, run_id)

    ticking = asyncio.create_task(worker.tick(workflow=wf, run_id=run_id))
    await entered.wait()  # the worker holds the run and is in the middle of a step
    assert run_id in worker.held_runs
    restored = await operator.restore_snapshot(snap.snapshot_id)
    gate.set()
    with pytest.raises(ConcurrentUpdateError):
        await ticking  # its step is not committed: the restore won

    state = await operator.get_state(run_id)
    assert state == restored and own_vars(state) == {"v": 1} and state.status is RunStatus.RUNNING
    ledger = await operator.get_ledger(run_id)
    assert [r["result"].get("restored") for r in ledger] == [snap.snapshot_id]
    # The restore released the lease: anybody can drive the run now.
    entered.clear()
    done = await operator.tick(workflow=wf, run_id=run_id)
    assert done.output == {"done": True}
    assert verify_ledger_chain(await operator.get_ledger(run_id))["ok"]


async def test_fork_starts_an_independent_run(store_factory: StoreFactory) -> None:
    rt = Runtime(store=store_factory())
    run_id, waiting = await rt.run(APPROVAL, vars={"order": 7})
    snap = await _snapshot(rt, run_id)
    original_state, original_ledger = await rt.get_state(run_id), await rt.get_ledger(run_id)

    fork_id = await Runtime(store=store_factory()).fork_snapshot(snap.snapshot_id)
    assert fork_id != run_id
    fork = await rt.get_state(fork_id)
    assert fork.status is RunStatus.WAITING and fork.current_node == "ask"
    assert own_vars(fork) == {"order": 7}
    assert fork.parent_run_id == run_id and fork.workflow_id == "approval"
    assert fork.waiting.wait_key == f"user:{fork_id}:ask"  # its own key
    assert fork.waiting.prompt == waiting.waiting.prompt
    fork_ledger = await rt.get_ledger(fork_id)
    assert len(fork_ledger) == 1
    assert fork_ledger[0]["result"]["forked_from"] == {
        "snapshot_id": snap.snapshot_id,
        "run_id": run_id,
        "step_id": None,
    }
    # The original is untouched by the fork ...
    assert await rt.get_state(run_id) == original_state
    assert await rt.get_ledger(run_id) == original_ledger

    # ... and by what the fork does, and the other way round.
    done = await rt.resume(
        workflow=APPROVAL, run_id=fork_id, wait_key=fork.waiting.wait_key, payload={"a": 1}
    )
    assert done.output == {"answer": {"a": 1}}
    assert await rt.get_state(run_id) == original_state
    other = await rt.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"a": 2}
    )
    assert other.output == {"answer": {"a": 2}}
    assert (await rt.get_state(fork_id)).output == {"answer": {"a": 1}}
    assert verify_ledger_chain(await rt.get_ledger(fork_id))["ok"]


async def test_a_snapshot_forks_again_and_again(store: Any) -> None:
    wf = counter(4)
    rt = Runtime(store=store)
    run_id = await rt.start(workflow=wf)
    await rt.tick(workflow=wf, run_id=run_id, max_steps=2)
    snap = await _snapshot(rt, run_id)
    assert own_vars(snap.state) == {"n": 2, "seen": [0, 1]}

    forks = [await rt.fork_snapshot(snap.snapshot_id) for _ in range(2)]
    assert len(set(forks)) == 2
    for fork_id in forks:
        # Running and unclaimed: this runtime (or any worker) drives it from where it was.
        state = await rt.tick(workflow=wf, run_id=fork_id)
        assert state.status is RunStatus.COMPLETED
        assert own_vars(state) == {"n": 4, "seen": [0, 1, 2, 3]}
    assert (await rt.get_state(run_id)).current_node == "n2"  # the original did not move
    kept = await store.snapshots.load(snap.snapshot_id)
    assert own_vars(kept.state) == {"n": 2, "seen": [0, 1]}


async def test_the_original_in_memory_form_has_snapshots_too() -> None:
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    assert isinstance(rt.store, MemoryStore)
    assert isinstance(rt.store.snapshots, InMemorySnapshotStore)
    run_id, _ = await rt.run(APPROVAL)
    snap = await _snapshot(rt, run_id)
    assert (await rt.restore_snapshot(snap.snapshot_id)).status is RunStatus.WAITING
