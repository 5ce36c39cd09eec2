"""``store.purge``: finished, old runs go with their ledgers, snapshots and artifacts, tree by
tree; everything else stays. On memory, a SQLite file and Postgres."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    Snapshot,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime.core.retention import LEDGER_CHUNK, PurgeResult
from abstractruntime.errors import ConcurrentUpdateError, InvalidArgumentError, RunNotFoundError
from tests.helpers.clock import FakeClock
from tests.workflows import counter

DAY = timedelta(days=1)


async def _ask(run: RunState, ctx: object) -> StepPlan:
    return StepPlan(
        node_id="ask",
        effect=Effect(EffectType.ASK_USER, {"prompt": "ok?"}, result_key="answer"),
        next_node="done",
    )


def _done(run: RunState, ctx: object) -> StepPlan:
    return StepPlan(node_id="done", complete_output={"answer": run.vars.get("answer")})


ASK = WorkflowSpec("ask", "ask", {"ask": _ask, "done": _done})


def _fail(run: RunState, ctx: object) -> StepPlan:
    raise RuntimeError("boom")


FAILING = WorkflowSpec("failing", "boom", {"boom": _fail})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rt(store: Any, clock: FakeClock) -> Runtime:
    return Runtime(store=store, config=RuntimeConfig(clock=clock, max_batched_steps=1))


async def _finished(rt: Runtime, steps: int = 3, **kwargs: Any) -> str:
    workflow = counter(steps)
    run_id = await rt.start(workflow=workflow, **kwargs)
    state = await rt.tick(workflow=workflow, run_id=run_id, max_steps=steps + 10)
    assert state.status is RunStatus.COMPLETED
    return run_id


async def _gone(store: Any, run_id: str) -> bool:
    try:
        await store.load_run(run_id)
    except RunNotFoundError:
        return True
    return False


async def test_purge_deletes_old_finished_runs_and_keeps_the_rest(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    old = [await _finished(rt) for _ in range(5)]
    old_failed, _ = await rt.run(FAILING)
    old_cancelled = await rt.start(workflow=ASK)
    await rt.tick(workflow=ASK, run_id=old_cancelled)
    await rt.cancel_run(old_cancelled)
    old_waiting = await rt.start(workflow=ASK)
    await rt.tick(workflow=ASK, run_id=old_waiting)
    # Snapshots and artifacts of an old run go with it; those of others, and free ones, stay.
    state = await rt.get_state(old[0])
    await store.snapshots.save(Snapshot.from_run(run=state, name="s"))
    await store.artifacts.store(b"of-old", run_id=old[0])
    await store.artifacts.store(b"of-old-2", run_id=old[0], tags={"k": "v"})
    kept_blob = await store.artifacts.store(b"free")
    clock.advance(20 * DAY.total_seconds())
    recent = await _finished(rt)
    await store.artifacts.store(b"of-recent", run_id=recent)
    clock.advance(11 * DAY.total_seconds())
    doomed = [*old, old_failed, old_cancelled]
    ledger_rows = sum([len(await rt.get_ledger(run_id)) for run_id in doomed])

    result = await store.purge(older_than=30 * DAY, now=clock(), batch=2)

    assert result == PurgeResult(runs=7, ledger_records=ledger_rows, snapshots=1, artifacts=2)
    for run_id in doomed:
        assert await _gone(store, run_id), run_id
    for run_id in (old_waiting, recent):
        assert not await _gone(store, run_id)
    assert await rt.get_ledger(recent)
    assert await store.artifacts.exists(kept_blob.artifact_id)
    assert len(await store.artifacts.list_by_run(recent)) == 1
    assert await store.artifacts.list_by_run(old[0]) == []
    assert await store.snapshots.list(run_id=old[0]) == []
    # Nothing more to do: a second purge finds nothing.
    assert await store.purge(older_than=30 * DAY, now=clock()) == PurgeResult()


async def test_purge_counts_exactly(store: Any, rt: Runtime, clock: FakeClock) -> None:
    ids = [await _finished(rt, steps=4) for _ in range(3)]
    records = sum([len(await rt.get_ledger(run_id)) for run_id in ids])
    clock.advance(2 * DAY.total_seconds())
    result = await store.purge(older_than=DAY, now=clock(), batch=1)
    assert result == PurgeResult(runs=3, ledger_records=records, snapshots=0, artifacts=0)


async def test_statuses_choose_what_goes(store: Any, rt: Runtime, clock: FakeClock) -> None:
    done = await _finished(rt)
    failed, _ = await rt.run(FAILING)
    clock.advance(2 * DAY.total_seconds())
    result = await store.purge(older_than=DAY, statuses=["failed"], now=clock())
    assert result.runs == 1
    assert await _gone(store, failed) and not await _gone(store, done)


async def test_a_tree_goes_together_and_only_when_all_of_it_finished(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    # parent (finished) -> child (waiting): neither goes.
    parent = await _finished(rt)
    child = await rt.start(workflow=ASK, parent_run_id=parent)
    await rt.tick(workflow=ASK, run_id=child)
    # A finished parent with a finished child and a finished grandchild: all go.
    root = await _finished(rt)
    kid = await _finished(rt, parent_run_id=root)
    grandkid = await _finished(rt, parent_run_id=kid)
    # A living parent (waiting) with a finished child: the child stays.
    living = await rt.start(workflow=ASK)
    await rt.tick(workflow=ASK, run_id=living)
    orphan_ok = await _finished(rt, parent_run_id=living)
    clock.advance(40 * DAY.total_seconds())
    # A finished tree whose newest member is recent: kept whole.
    young_root = await _finished(rt)
    clock.advance(-35 * DAY.total_seconds())
    young_kid = await _finished(rt, parent_run_id=young_root)
    clock.advance(35 * DAY.total_seconds())

    result = await store.purge(older_than=30 * DAY, now=clock(), batch=1)

    assert result.runs == 3
    for run_id in (root, kid, grandkid):
        assert await _gone(store, run_id)
    for run_id in (parent, child, living, orphan_ok, young_root, young_kid):
        assert not await _gone(store, run_id), run_id
    # Once the child has finished (and is old enough), the first tree goes too.
    await rt.resume(workflow=ASK, run_id=child, wait_key=f"user:{child}:ask", payload={"a": 1})
    clock.advance(31 * DAY.total_seconds())
    again = await store.purge(older_than=30 * DAY, now=clock())
    assert await _gone(store, parent) and await _gone(store, child)
    assert again.runs >= 2


async def test_run_ids_limit_the_purge_to_whole_trees_given(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    a = await _finished(rt)
    b = await _finished(rt)
    root = await _finished(rt)
    kid = await _finished(rt, parent_run_id=root)
    clock.advance(2 * DAY.total_seconds())
    result = await store.purge(older_than=DAY, now=clock(), run_ids={a, root})
    assert result.runs == 1  # root's tree has kid, not given: kept
    assert await _gone(store, a)
    for run_id in (b, root, kid):
        assert not await _gone(store, run_id)


async def test_a_long_ledger_is_deleted_in_chunks(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    steps = LEDGER_CHUNK + 500
    run_id, state = await rt.run(counter(steps), max_steps=steps + 10)
    assert state.status is RunStatus.COMPLETED
    clock.advance(2 * DAY.total_seconds())
    result = await store.purge(older_than=DAY, now=clock())
    assert result.runs == 1 and result.ledger_records == steps
    assert await _gone(store, run_id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"older_than": -DAY}, "negative"),
        ({"older_than": 5}, "timedelta"),
        ({"older_than": DAY, "statuses": ["running"]}, "finished runs only"),
        ({"older_than": DAY, "statuses": ["waiting"]}, "finished runs only"),
        ({"older_than": DAY, "statuses": ["done"]}, "unknown run status"),
        ({"older_than": DAY, "statuses": []}, "empty"),
        ({"older_than": DAY, "batch": 0}, "batch"),
        ({"older_than": DAY, "run_ids": "abc"}, "run_ids"),
    ],
)
async def test_bad_arguments_are_refused_before_any_io(
    kwargs: dict[str, Any], message: str
) -> None:
    from abstractruntime.storage import SqlStore

    # A store that cannot be reached: a check that did I/O first would fail otherwise.
    store = SqlStore("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(InvalidArgumentError, match=message):
            await store.purge(**kwargs)
    finally:
        await store.close()


async def test_a_worker_holding_a_run_cannot_commit_after_the_purge_claimed_it(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    run_id = await _finished(rt)
    handle = await store.load_run(run_id)
    clock.advance(2 * DAY.total_seconds())
    await store.purge(older_than=DAY, now=clock())
    with pytest.raises((ConcurrentUpdateError, RunNotFoundError)):
        await store.commit_step(handle, handle.state, handle.state_json, [], now=clock())


async def test_purge_racing_workers_deletes_only_finished_runs(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    """Workers finish runs while purges run: every run deleted was finished and old when it
    went; the others are whole (state and ledger agree)."""
    waiting = []
    for _ in range(20):
        run_id = await rt.start(workflow=ASK)
        await rt.tick(workflow=ASK, run_id=run_id)
        waiting.append(run_id)
    old = [await _finished(rt) for _ in range(20)]
    clock.advance(2 * DAY.total_seconds())

    async def answer() -> None:
        for run_id in waiting:
            await rt.resume(
                workflow=ASK, run_id=run_id, wait_key=f"user:{run_id}:ask", payload={"x": 1}
            )
            await asyncio.sleep(0)

    async def purge() -> PurgeResult:
        total = PurgeResult()
        for _ in range(5):
            total += await store.purge(older_than=DAY, now=clock(), batch=3)
            await asyncio.sleep(0)
        return total

    results = await asyncio.gather(answer(), purge(), purge())
    purged = results[1] + results[2]
    assert purged.runs == 20  # the old ones; the just-answered ones ended "now", not a day ago
    for run_id in old:
        assert await _gone(store, run_id)
    for run_id in waiting:
        state = await rt.get_state(run_id)
        assert state.status is RunStatus.COMPLETED
        handle = await store.load_run(run_id)
        assert len(await rt.get_ledger(run_id)) == handle.seq


async def test_a_claimed_run_is_skipped_until_its_lease_ends(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    """A worker holding a finished run (a tick of a completed run claims it) keeps it from the
    purge; once released or expired, it goes."""
    run_id = await _finished(rt)
    clock.advance(2 * DAY.total_seconds())
    now = clock()
    handle = await store.claim_run(run_id, "worker-1", now, now + timedelta(seconds=30))
    assert await store.purge(older_than=DAY, now=now) == PurgeResult()
    assert not await _gone(store, run_id)
    await store.release(handle, now=now)
    assert (await store.purge(older_than=DAY, now=now)).runs == 1
    assert await _gone(store, run_id)


async def test_a_purge_that_died_after_its_claim_is_finished_by_the_next(
    store: Any, rt: Runtime, clock: FakeClock
) -> None:
    """A purge claims its runs and dies (here: its claim and one ledger chunk, nothing more).
    Until the claim expires the runs are left alone, even by another purge; then the next purge
    takes them over and deletes them whole."""
    from abstractruntime.core.retention import CLAIM_S, new_purge_owner, purge_spec

    ids = [await _finished(rt, steps=4) for _ in range(3)]
    clock.advance(2 * DAY.total_seconds())
    now = clock()
    ops = store._purge_ops()
    dead = new_purge_owner()
    lengths = await ops.claim(ids, purge_spec(DAY, ["completed"], 10, now), dead, now)
    assert sorted(lengths) == sorted(ids)
    assert await ops.delete_ledger(ids[0], 2, 4, dead) == 2  # then it died
    # A worker cannot claim them meanwhile, nor can another purge take them.
    from abstractruntime.errors import RunLeasedError

    with pytest.raises(RunLeasedError):
        await store.claim_run(ids[1], "worker", now, now + timedelta(seconds=30))
    assert await store.purge(older_than=DAY, now=now) == PurgeResult()
    later = now + timedelta(seconds=CLAIM_S + 1)
    result = await store.purge(older_than=DAY, now=later)
    assert result.runs == 3 and result.ledger_records == 4 * 3 - 2
    for run_id in ids:
        assert await _gone(store, run_id)
