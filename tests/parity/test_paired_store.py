"""``PairedStore`` over a user's own run/ledger stores (sync methods, as written for 0.2), and
``HashChainedLedgerStore`` as the original's decorator."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from typing import Any

import pytest

from abstractruntime import (
    HashChainedLedgerStore,
    QueryableRunStore,
    RunState,
    RunStatus,
    Runtime,
    StepRecord,
    StepStatus,
    WaitReason,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.core.ledger import chain_records
from abstractruntime.errors import ConcurrentUpdateError, RunExistsError, RunLeasedError, StoreError
from abstractruntime.storage import LedgerStore, MemoryStore, PairedStore, RunStore
from tests.helpers import eventually
from tests.workflows import APPROVAL, counter, parent_of, timer, waiter


class DictRunStore(RunStore):
    """A user's run store written for the original: plain ``def`` methods."""

    def __init__(self, queryable: bool = True) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.saves = 0
        if not queryable:
            self.list_runs = None  # type: ignore[assignment]

    def save(self, run: RunState) -> None:  # type: ignore[override]
        self.saves += 1
        self.runs[run.run_id] = copy.deepcopy(run.to_dict())

    def load(self, run_id: str) -> RunState | None:  # type: ignore[override]
        data = self.runs.get(run_id)
        return None if data is None else RunState.from_dict(data)

    def list_runs(  # type: ignore[no-redef]
        self,
        *,
        status: RunStatus | None = None,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> list[RunState]:
        states = [RunState.from_dict(d) for d in self.runs.values()]
        return [s for s in states if status is None or s.status is status][:limit]


class ListLedgerStore(LedgerStore):
    def __init__(self) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}

    def append(self, record: StepRecord) -> None:  # type: ignore[override]
        self.records.setdefault(record.run_id, []).append(record.to_dict())

    def list(self, run_id: str) -> list[dict[str, Any]]:  # type: ignore[override]
        return [dict(r) for r in self.records.get(run_id, [])]


class AsyncLedgerStore(ListLedgerStore):
    async def append(self, record: StepRecord) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().append(record)

    async def list(self, run_id: str) -> list[dict[str, Any]]:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().list(run_id)


def test_the_pair_decides_the_store() -> None:
    assert isinstance(Runtime().store, MemoryStore)
    assert isinstance(
        Runtime(run_store=DictRunStore(), ledger_store=ListLedgerStore()).store, PairedStore
    )
    assert isinstance(Runtime(ledger_store=ListLedgerStore()).store, PairedStore)


@pytest.mark.parametrize("ledger_cls", [ListLedgerStore, AsyncLedgerStore])
async def test_a_runtime_drives_a_users_sync_stores(ledger_cls: type[ListLedgerStore]) -> None:
    runs, ledger = DictRunStore(), ledger_cls()
    rt = Runtime(run_store=runs, ledger_store=ledger)
    run_id, state = await rt.run(counter(4))
    assert state.status is RunStatus.COMPLETED
    assert runs.runs[run_id]["status"] == "completed"
    records = ledger.records[run_id]
    assert verify_ledger_chain(records)["ok"] and records == await rt.get_ledger(run_id)

    run_id, state = await rt.run(APPROVAL)
    assert state.waiting is not None
    with pytest.raises(ValueError):
        await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key="nope", payload={})
    state = await rt.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload={"a": 1}
    )
    assert state.output == {"answer": {"a": 1}}
    assert verify_ledger_chain(ledger.records[run_id])["ok"]


async def test_a_new_adapter_continues_from_what_the_users_stores_hold() -> None:
    runs, ledger = DictRunStore(queryable=False), ListLedgerStore()
    run_id, _ = await Runtime(run_store=runs, ledger_store=ledger).run(waiter())
    rt = Runtime(run_store=runs, ledger_store=ledger)  # as after a restart
    state = await rt.resume(workflow=waiter(), run_id=run_id, wait_key="evt:go", payload={})
    assert state.status is RunStatus.COMPLETED
    assert verify_ledger_chain(ledger.records[run_id])["ok"]
    with pytest.raises(RunExistsError):
        await rt.start(workflow=waiter(), run_id=run_id)
    with pytest.raises(KeyError):
        await rt.get_state("unknown")


async def test_versions_and_leases_follow_memory_store_rules() -> None:
    store = PairedStore(DictRunStore(), ListLedgerStore())
    rt = Runtime(store=store)
    run_id = await rt.start(workflow=counter(3))
    now = rt.config.clock()
    first = await store.claim_run(run_id, "a", now, now + timedelta(seconds=30))
    with pytest.raises(RunLeasedError):
        await store.claim_run(run_id, "b", now, now + timedelta(seconds=30))
    later = now + timedelta(seconds=31)
    second = await store.claim_run(run_id, "b", later, later + timedelta(seconds=30))
    with pytest.raises(ConcurrentUpdateError):  # a's lease was taken over: its commit fails
        await store.commit_step(first, first.state, first.state_json, [], now=later)
    done = await store.commit_step(second, second.state, second.state_json, [], now=later)
    assert done.version == second.version + 1
    assert await store.next_due_at() == later  # running and released: due
    assert [h.state.run_id for h in await store.claim_due("c", later, later, 10)] == [run_id]


async def test_a_scheduler_on_a_users_pair_wakes_timers_and_parents() -> None:
    runs, ledger = DictRunStore(), ListLedgerStore()
    child = waiter("evt:child", "child")
    sr = await create_scheduled_runtime(
        run_store=runs,
        ledger_store=ledger,
        workflows=[timer(0.05), child, parent_of("child")],
        poll_interval_s=0.02,
    )
    async with sr:
        timer_id, state = await sr.run(timer(0.05))
        assert state.status is RunStatus.WAITING

        async def timer_done() -> bool:
            return (await sr.get_state(timer_id)).status is RunStatus.COMPLETED

        await eventually(timer_done, "the scheduler did not wake the timer")
        parent_id, parent = await sr.run(parent_of("child"))
        assert parent.waiting is not None and parent.waiting.reason is WaitReason.SUBWORKFLOW
        assert await sr.emit_event("evt:child", {"x": 1})

        async def parent_done() -> bool:
            return (await sr.get_state(parent_id)).status is RunStatus.COMPLETED

        await eventually(parent_done, "the child's end did not wake its parent")
        for run_id in ledger.records:
            assert verify_ledger_chain(ledger.records[run_id])["ok"]


async def test_a_hash_chained_ledger_store_makes_the_same_hashes() -> None:
    ledger = HashChainedLedgerStore(ListLedgerStore())
    rt = Runtime(run_store=DictRunStore(), ledger_store=ledger)
    run_id, _ = await rt.run(counter(3))
    run_id2, _ = await rt.run(waiter())
    await rt.resume(workflow=waiter(), run_id=run_id2, wait_key="evt:go", payload={})
    for rid in (run_id, run_id2):
        records = await ledger.list(rid)
        assert verify_ledger_chain(records)["ok"]
        assert all(r["record_hash"] for r in records)


async def test_a_ledger_store_that_chains_onto_another_head_is_refused() -> None:
    inner = ListLedgerStore()
    ledger = HashChainedLedgerStore(inner)
    rt = Runtime(run_store=DictRunStore(), ledger_store=ledger)
    run_id, _ = await rt.run(waiter())
    inner.records[run_id].append(inner.records[run_id][-1])  # someone else appended
    ledger.note_head(run_id, "f" * 64)
    with pytest.raises(StoreError, match="re-chained"):
        await rt.resume(workflow=waiter(), run_id=run_id, wait_key="evt:go", payload={})


async def test_hash_chained_ledger_store_alone_is_the_originals_decorator() -> None:
    inner = ListLedgerStore()
    records = [
        StepRecord(run_id="r", step_id=f"s{i}", node_id=f"n{i}", status=StepStatus.COMPLETED)
        for i in range(3)
    ]
    expected, head = chain_records([copy.deepcopy(r) for r in records], None)
    await HashChainedLedgerStore(inner).append(records[0])
    # a new decorator (a restart) bootstraps its head from the inner store
    second = HashChainedLedgerStore(inner)
    await second.append(records[1])
    await second.append(records[2])
    assert inner.records["r"] == expected
    assert records[2].record_hash == head
    assert verify_ledger_chain(await second.list("r"))["ok"]


def test_queryable_run_store_is_structural() -> None:
    assert isinstance(DictRunStore(), QueryableRunStore) is False  # no list_due_wait_until
    assert isinstance(DictRunStore(), RunStore)


async def test_the_originals_in_memory_pair_with_a_hash_chain_is_a_memory_store() -> None:
    from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore

    inner = InMemoryLedgerStore()
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=HashChainedLedgerStore(inner))
    assert isinstance(rt.store, MemoryStore)
    run_id, _ = await rt.run(counter(3))
    assert verify_ledger_chain(await inner.list(run_id))["ok"]
