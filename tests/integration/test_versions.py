"""Versioned workflows on memory, SQLite and Postgres: a run is driven only by the version it
started on; workers claim only their versions; ``migrate_runs`` moves runs on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    InvalidArgumentError,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    Scheduler,
    StepPlan,
    WorkflowRegistry,
    WorkflowSpec,
    WorkflowVersionNotFoundError,
)
from abstractruntime.core import workers
from abstractruntime.core.ledger import verify_ledger_chain
from abstractruntime.core.registry import version_order
from tests.helpers import FakeClock

StoreFactory = Callable[[], Any]


def approval(version: str, *, review: str = "review", done: str = "done") -> WorkflowSpec:
    """Asks for an answer at ``review``, then ends at ``done`` saying which version ran."""

    def ask(run: RunState, ctx: object) -> StepPlan:
        effect = Effect(EffectType.ASK_USER, {"prompt": "ok?"}, result_key="answer")
        return StepPlan(node_id=review, effect=effect, next_node=done)

    def end(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(
            node_id=done,
            complete_output={"version": version, "answer": run.vars.get("answer"), **_v(run)},
        )

    return WorkflowSpec("approval", review, {review: ask, done: end}, version=version)


def _v(run: RunState) -> dict[str, Any]:
    return {"extra": run.vars["extra"]} if "extra" in run.vars else {}


def runtime(store: Any, *specs: WorkflowSpec, clock: FakeClock | None = None) -> Runtime:
    config = RuntimeConfig(clock=clock) if clock else RuntimeConfig()
    return Runtime(store=store, workflow_registry=list(specs), config=config)


# -- the registry (no store) -------------------------------------------------------------------


def test_a_registry_holds_versions_and_new_runs_take_the_newest() -> None:
    registry = WorkflowRegistry([approval("2"), approval("10"), approval("1")])
    assert registry.versions("approval") == ["1", "2", "10"]  # as people number them
    assert registry.get("approval").version == "10"  # type: ignore[union-attr]
    assert registry.get("approval", "2").version == "2"  # type: ignore[union-attr]
    assert registry.get("approval", "3") is None
    assert registry.served() == [("approval", "1"), ("approval", "2"), ("approval", "10")]
    assert len(registry) == 1 and [spec.version for spec in registry] == ["10"]
    with pytest.raises(ValueError, match="version '2' is already registered"):
        registry.register(approval("2"))
    with pytest.raises(WorkflowVersionNotFoundError, match=r"no version '3'.*1, 2, 10"):
        registry.get_or_raise("approval", "3")
    registry.unregister("approval", "10")
    assert registry.get("approval").version == "2"  # type: ignore[union-attr]
    registry.unregister("approval")
    assert "approval" not in registry and registry.served() == []


def test_version_order_compares_digit_runs_as_numbers() -> None:
    ordered = ["1", "1.2", "1.10", "2", "2024-01-05", "2024-02-01", "10", "v2", "v10"]
    assert sorted(reversed(ordered), key=version_order) == sorted(ordered, key=version_order)
    assert version_order("1.10") > version_order("1.9")
    assert version_order("v10") > version_order("v9")


@pytest.mark.parametrize("version", ["", 2, None, "x" * 65, "a\x00b"])
def test_a_bad_version_is_refused_with_its_value(version: Any) -> None:
    with pytest.raises(ValueError, match="version must be a non-empty string"):
        approval(version)


def test_the_state_of_an_unversioned_run_keeps_the_original_format() -> None:
    state = RunState.new(workflow_id="approval", entry_node="review")
    assert "workflow_version" not in state.to_dict()
    assert RunState.from_dict(state.to_dict()).workflow_version == "1"
    state.workflow_version = "2"
    assert RunState.from_dict(json.loads(json.dumps(state.to_dict()))).workflow_version == "2"


# -- runs and their versions -------------------------------------------------------------------


async def test_a_run_records_its_version_and_is_driven_only_by_it(store: Any) -> None:
    v1, v2 = approval("1"), approval("2")
    rt = runtime(store, v1, v2)
    run_id = await rt.start(workflow=v1)
    assert (await rt.get_state(run_id)).workflow_version == "1"
    listed = await store.list_runs(workflow_id="approval", workflow_version="1")
    assert [s.run_id for s in listed] == [run_id]
    assert await store.list_runs(workflow_version="2") == []
    with pytest.raises(InvalidArgumentError, match=r"started on version '1'.*not '2'"):
        await rt.tick(workflow=v2, run_id=run_id)
    state = await rt.tick(workflow=v1, run_id=run_id)
    assert state.status is RunStatus.WAITING
    with pytest.raises(InvalidArgumentError, match="migrate_runs"):
        await rt.resume(workflow=v2, run_id=run_id, wait_key=None, payload={"text": "yes"})
    # Nothing changed by the refused calls: the right version answers it.
    state = await rt.resume(workflow=v1, run_id=run_id, wait_key=None, payload={"text": "yes"})
    assert state.output is not None and state.output["version"] == "1"


async def test_workers_claim_only_the_runs_of_their_versions(store_factory: StoreFactory) -> None:
    """A rolling deploy: an old worker (v1) and a new one (v2) on one database."""
    v1, v2 = approval("1"), approval("2")
    old, new = runtime(store_factory(), v1), runtime(store_factory(), v2)
    first = await old.start(workflow=v1)
    second = await new.start(workflow=v2)
    new_scheduler, old_scheduler = Scheduler(new), Scheduler(old)
    assert await new_scheduler.poll_once() == 1  # only its own run
    assert (await new.get_state(first)).status is RunStatus.RUNNING  # untouched
    assert (await new.get_state(second)).status is RunStatus.WAITING
    assert await old_scheduler.poll_once() == 1
    assert (await old.get_state(first)).status is RunStatus.WAITING
    assert await new.store.next_due_at([("approval", "2")]) is None


async def test_a_worker_that_has_no_version_of_a_run_leaves_it_due(store: Any) -> None:
    v1, v2 = approval("1"), approval("2")
    run_id = await runtime(store, v1).start(workflow=v1)
    scheduler = Scheduler(runtime(store, v2))
    assert await scheduler.poll_once() == 0
    assert await store.next_due_at([("approval", "1")]) is not None
    assert await store.next_due_at([("approval", "2")]) is None
    assert await store.next_due_at([]) is None
    assert (await store.load_run(run_id)).state.status is RunStatus.RUNNING


# -- migrate_runs ------------------------------------------------------------------------------


async def test_migrating_moves_waiting_runs_with_a_node_map(store: Any) -> None:
    v1 = approval("1")
    v2 = approval("2", review="approve", done="finish")
    rt = runtime(store, v1, v2)
    run_ids = [(await rt.run(v1, {"n": i}))[0] for i in range(3)]
    finished, _ = await rt.run(v1)
    await rt.resume(workflow=v1, run_id=finished, wait_key=None, payload={"text": "no"})

    report = await rt.migrate_runs(
        "approval",
        "1",
        "2",
        node_map={"review": "approve", "done": "finish"},
        vars_fn=lambda vars: {**vars, "extra": vars["n"] * 10},
    )
    assert sorted(m.run_id for m in report.moved) == sorted(run_ids)
    assert report.skipped == []
    assert {(m.from_node, m.to_node) for m in report.moved} == {("review", "approve")}
    for i, run_id in enumerate(run_ids):
        state = await rt.get_state(run_id)
        assert state.workflow_version == "2" and state.current_node == "approve"
        assert state.waiting is not None and state.waiting.resume_to_node == "finish"
        record = (await rt.get_ledger(run_id))[-1]
        assert record["result"]["migrated"] == {
            "from_version": "1",
            "to_version": "2",
            "from_node": "review",
            "to_node": "approve",
            "vars_changed": True,
        }
        state = await rt.resume(workflow=v2, run_id=run_id, wait_key=None, payload={"t": i})
        assert state.status is RunStatus.COMPLETED
        assert state.output == {"version": "2", "answer": {"t": i}, "extra": i * 10}
    # A finished run is history: it stays on the version it ran.
    assert (await rt.get_state(finished)).workflow_version == "1"
    for run_id in [*run_ids, finished]:
        assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"], run_id


async def test_a_run_whose_node_has_no_target_is_reported_not_moved(store: Any) -> None:
    v1 = approval("1")
    v2 = approval("2", review="approve")
    rt = runtime(store, v1, v2)
    run_id, _ = await rt.run(v1)
    before = await rt.get_ledger(run_id)
    report = await rt.migrate_runs("approval", "1", "2")
    assert report.moved == []
    [skipped] = report.skipped
    assert skipped.run_id == run_id
    assert skipped.reason is not None
    assert "current node 'review' has no target" in skipped.reason
    assert "node_map" in skipped.reason
    state = await rt.get_state(run_id)
    assert state.workflow_version == "1" and state.current_node == "review"
    assert await rt.get_ledger(run_id) == before
    # The wait's continuation must exist too: mapping only the current node is not enough.
    v3 = WorkflowSpec("approval", "approve", {"approve": v2.nodes["approve"]}, version="3")
    rt.workflow_registry.register(v3)
    report = await rt.migrate_runs("approval", "1", "3", node_map={"review": "approve"})
    assert report.moved == [] and "resume node 'done'" in str(report.skipped[0].reason)


async def test_a_dry_run_reports_and_changes_nothing(store: Any) -> None:
    v1, v2 = approval("1"), approval("2")
    rt = runtime(store, v1, v2)
    run_ids = sorted([(await rt.run(v1))[0] for _ in range(3)])
    calls: list[dict[str, Any]] = []

    def rewrite(vars: dict[str, Any]) -> dict[str, Any]:
        calls.append(vars)
        vars["mutated"] = True  # a copy: the run keeps its vars
        return vars

    report = await rt.migrate_runs("approval", "1", "2", vars_fn=rewrite, dry_run=True)
    assert report.dry_run and sorted(m.run_id for m in report.moved) == run_ids
    assert len(calls) == 3
    for run_id in run_ids:
        state = await rt.get_state(run_id)
        assert state.workflow_version == "1" and "mutated" not in state.vars
        assert len(await rt.get_ledger(run_id)) == 1


async def test_vars_fn_that_raises_skips_that_run_only(store: Any) -> None:
    v1, v2 = approval("1"), approval("2")
    rt = runtime(store, v1, v2)
    good, _ = await rt.run(v1, {"ok": True})
    bad, _ = await rt.run(v1, {"ok": False})

    async def rewrite(vars: dict[str, Any]) -> dict[str, Any]:
        if not vars["ok"]:
            raise RuntimeError("cannot convert this one")
        return vars

    report = await rt.migrate_runs("approval", "1", "2", vars_fn=rewrite)
    assert [m.run_id for m in report.moved] == [good]
    assert [(m.run_id, m.reason) for m in report.skipped] == [
        (bad, "vars_fn raised RuntimeError: cannot convert this one")
    ]
    assert (await rt.get_state(bad)).workflow_version == "1"


async def test_a_run_a_worker_drives_is_skipped_not_taken(store_factory: StoreFactory) -> None:
    v1, v2 = approval("1"), approval("2")
    worker, operator = runtime(store_factory(), v1), runtime(store_factory(), v1, v2)
    run_id, _ = await worker.run(v1)
    await worker.leases.claim(run_id)  # a worker is in the middle of a step
    report = await operator.migrate_runs("approval", "1", "2")
    assert report.moved == [] and "driving it right now" in str(report.skipped[0].reason)
    assert (await operator.get_state(run_id)).workflow_version == "1"


async def test_migrating_a_running_run_hands_it_to_the_new_version(store: Any) -> None:
    """A run that is due (between two steps) moves too; then a v2 worker drives it."""
    v1, v2 = approval("1"), approval("2")
    rt = runtime(store, v1, v2)
    run_id = await rt.start(workflow=v1)
    report = await rt.migrate_runs("approval", "1", "2")
    assert [(m.run_id, m.status) for m in report.moved] == [(run_id, "running")]
    scheduler = Scheduler(runtime(store, v2))
    assert await scheduler.poll_once() == 1
    state = await rt.get_state(run_id)
    assert state.status is RunStatus.WAITING and state.workflow_version == "2"


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("approval", "1", "1"), InvalidArgumentError, "both '1'"),
        (("approval", "", "2"), InvalidArgumentError, "from_version must be a non-empty"),
        (("approval", "1", "9"), WorkflowVersionNotFoundError, "no version '9'"),
        (("nope", "1", "2"), KeyError, "'nope' is not registered"),
    ],
)
async def test_bad_migration_arguments_fail_before_anything_changes(
    store: Any, args: tuple[str, str, str], error: type[Exception], message: str
) -> None:
    v1, v2 = approval("1"), approval("2")
    rt = runtime(store, v1, v2)
    run_id, _ = await rt.run(v1)
    with pytest.raises(error, match=message):
        await rt.migrate_runs(*args)
    with pytest.raises(InvalidArgumentError, match="node_map must be a dict"):
        await rt.migrate_runs("approval", "1", "2", node_map={"review": 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="vars_fn must be callable"):
        await rt.migrate_runs("approval", "1", "2", vars_fn=42)  # type: ignore[arg-type]
    assert (await rt.get_state(run_id)).workflow_version == "1"


# -- live workers and orphaned versions --------------------------------------------------------


async def test_a_running_scheduler_announces_its_versions(store: Any) -> None:
    clock = FakeClock()
    rt = runtime(store, approval("1"), approval("2"), clock=clock)
    scheduler = Scheduler(rt, poll_interval_s=0.05)
    await scheduler.start()
    try:
        await scheduler.poll_once()
        [worker] = await store.list_workers()
        assert worker.owner == rt.config.owner
        assert worker.serves == (("approval", "1"), ("approval", "2"))
        assert worker.alive(clock()) and not worker.alive(worker.expires_at)
    finally:
        await scheduler.stop()
    assert await store.list_workers() == []  # a clean stop removes it


async def test_runs_that_no_live_worker_serves_are_orphaned(store: Any) -> None:
    clock = FakeClock()
    v1, v2 = approval("1"), approval("2")
    rt = runtime(store, v1, v2, clock=clock)
    waiting, _ = await rt.run(v1)
    await rt.start(workflow=v1)
    await rt.start(workflow=v2)
    done, _ = await rt.run(v2)
    await rt.resume(workflow=v2, run_id=done, wait_key=None, payload={})
    counts = await store.version_counts()
    assert {(c.workflow_id, c.version, c.status, c.runs) for c in counts} == {
        ("approval", "1", "waiting", 1),
        ("approval", "1", "running", 1),
        ("approval", "2", "running", 1),
    }
    now = clock()
    await store.announce_worker(
        "new", [("approval", "2")], now=now, expires_at=now + timedelta(seconds=30)
    )
    await store.announce_worker(
        "gone", [("approval", "1")], now=now - timedelta(minutes=5), expires_at=now
    )
    orphans = workers.orphaned(counts, await store.list_workers(), now)
    assert {(c.version, c.status) for c in orphans} == {("1", "waiting"), ("1", "running")}
    assert waiting  # (its id is listed by ``runs list --orphaned``; see the CLI test)
    await store.forget_worker("gone")
    assert [w.owner for w in await store.list_workers()] == ["new"]
