"""The original's ``tests/test_queryable_run_store.py``, ported: a run store's queries.

The original ran these on ``InMemoryRunStore`` and on ``JsonFileRunStore``. Here they run on the
in-memory pair's ``InMemoryRunStore`` and on a SQLite file's run store, both as
``Runtime(...).run_store`` (the original's ``RunStore`` / ``QueryableRunStore`` methods over any
store); the file stores' own port is ``test_file_stores.py``'s. The original's two classes held
the same tests (the file one a subset of the memory one's), so each behaviour is one test here.
"""

from __future__ import annotations

import inspect
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from abstractruntime import QueryableRunStore, RunState, RunStatus, Runtime, WaitReason
from abstractruntime.core.models import WaitState
from abstractruntime.storage import SqlStore
from tests.parity.backends import Backend, backend_fixture

backend = backend_fixture()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def make_run(
    *,
    workflow_id: str = "test_wf",
    status: RunStatus = RunStatus.RUNNING,
    wait_reason: WaitReason | None = None,
    wait_until: str | None = None,
    updated_at: str | None = None,
) -> RunState:
    run = RunState.new(workflow_id=workflow_id, entry_node="start")
    run.status = status
    if updated_at:
        run.updated_at = updated_at  # type: ignore[assignment]  # an ISO string, as in 0.2
    if wait_reason is not None:
        run.waiting = WaitState(
            reason=wait_reason, wait_key=f"key_{run.run_id[:8]}", until=wait_until
        )
    return run


def run_store_of(backend: Backend) -> Any:
    return Runtime(**backend.kwargs).run_store


async def save_all(store: Any, *runs: RunState) -> None:
    for run in runs:
        await store.save(run)


async def test_implements_queryable_protocol(backend: Backend) -> None:
    """``isinstance(store, QueryableRunStore)``, a structural protocol, as in the original:
    the three queries, here coroutines."""
    store = run_store_of(backend)
    assert isinstance(store, QueryableRunStore)
    for query in ("list_runs", "list_due_wait_until", "list_children"):
        assert inspect.iscoroutinefunction(getattr(store, query)), query


async def test_list_runs_empty(backend: Backend) -> None:
    assert await run_store_of(backend).list_runs() == []


async def test_list_runs_all(backend: Backend) -> None:
    store = run_store_of(backend)
    await save_all(
        store,
        make_run(status=RunStatus.RUNNING),
        make_run(status=RunStatus.WAITING, wait_reason=WaitReason.USER),
        make_run(status=RunStatus.COMPLETED),
    )
    assert len(await store.list_runs()) == 3


async def test_list_runs_filter_by_status(backend: Backend) -> None:
    store = run_store_of(backend)
    running = make_run(status=RunStatus.RUNNING)
    waiting = make_run(status=RunStatus.WAITING, wait_reason=WaitReason.USER)
    completed = make_run(status=RunStatus.COMPLETED)
    await save_all(store, running, waiting, completed)

    assert [r.run_id for r in await store.list_runs(status=RunStatus.WAITING)] == [waiting.run_id]
    assert [r.run_id for r in await store.list_runs(status=RunStatus.COMPLETED)] == [
        completed.run_id
    ]


async def test_list_runs_filter_by_wait_reason(backend: Backend) -> None:
    store = run_store_of(backend)
    user = make_run(status=RunStatus.WAITING, wait_reason=WaitReason.USER)
    until = make_run(status=RunStatus.WAITING, wait_reason=WaitReason.UNTIL)
    event = make_run(status=RunStatus.WAITING, wait_reason=WaitReason.EVENT)
    await save_all(store, user, until, event)

    assert [r.run_id for r in await store.list_runs(wait_reason=WaitReason.USER)] == [user.run_id]
    assert [r.run_id for r in await store.list_runs(wait_reason=WaitReason.UNTIL)] == [until.run_id]


async def test_list_runs_filter_by_workflow_id(backend: Backend) -> None:
    store = run_store_of(backend)
    await save_all(
        store,
        make_run(workflow_id="wf_a"),
        make_run(workflow_id="wf_b"),
        make_run(workflow_id="wf_a"),
    )
    runs = await store.list_runs(workflow_id="wf_a")
    assert len(runs) == 2
    assert all(r.workflow_id == "wf_a" for r in runs)


async def test_list_runs_combined_filters(backend: Backend) -> None:
    store = run_store_of(backend)
    wanted = make_run(workflow_id="wf_a", status=RunStatus.WAITING, wait_reason=WaitReason.USER)
    await save_all(
        store,
        wanted,
        make_run(workflow_id="wf_a", status=RunStatus.WAITING, wait_reason=WaitReason.UNTIL),
        make_run(workflow_id="wf_b", status=RunStatus.WAITING, wait_reason=WaitReason.USER),
    )
    runs = await store.list_runs(workflow_id="wf_a", wait_reason=WaitReason.USER)
    assert [r.run_id for r in runs] == [wanted.run_id]


async def test_list_runs_respects_limit(backend: Backend) -> None:
    store = run_store_of(backend)
    await save_all(store, *(make_run() for _ in range(10)))
    assert len(await store.list_runs(limit=3)) == 3


async def test_list_runs_ordered_by_updated_at_desc(backend: Backend) -> None:
    store = run_store_of(backend)
    first = make_run(updated_at="2025-01-01T00:00:00Z")
    third = make_run(updated_at="2025-01-03T00:00:00Z")
    second = make_run(updated_at="2025-01-02T00:00:00Z")
    await save_all(store, first, third, second)

    runs = await store.list_runs()
    assert [r.run_id for r in runs] == [third.run_id, second.run_id, first.run_id]


async def test_list_due_wait_until_empty(backend: Backend) -> None:
    assert await run_store_of(backend).list_due_wait_until(now_iso=utc_now_iso()) == []


async def test_list_due_wait_until_finds_due_runs(backend: Backend) -> None:
    store = run_store_of(backend)
    due = make_run(
        status=RunStatus.WAITING, wait_reason=WaitReason.UNTIL, wait_until="2020-01-01T00:00:00Z"
    )
    await save_all(
        store,
        due,
        make_run(  # not due yet
            status=RunStatus.WAITING,
            wait_reason=WaitReason.UNTIL,
            wait_until="2099-01-01T00:00:00Z",
        ),
        make_run(status=RunStatus.WAITING, wait_reason=WaitReason.USER),  # another reason
        make_run(status=RunStatus.RUNNING),  # not waiting
    )
    runs = await store.list_due_wait_until(now_iso=utc_now_iso())
    assert [r.run_id for r in runs] == [due.run_id]


async def test_list_due_wait_until_ordered_by_until_asc(backend: Backend) -> None:
    store = run_store_of(backend)
    runs = [
        make_run(status=RunStatus.WAITING, wait_reason=WaitReason.UNTIL, wait_until=until)
        for until in ("2020-01-03T00:00:00Z", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z")
    ]
    await save_all(store, *runs)

    due = await store.list_due_wait_until(now_iso=utc_now_iso())
    assert [r.run_id for r in due] == [runs[1].run_id, runs[2].run_id, runs[0].run_id]


async def test_persists_and_queries_across_instances(tmp_path: Path) -> None:
    """On a store that outlives its process only (the original: ``JsonFileRunStore``; here a
    SQLite file): a second store on the same file answers the queries."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
    run = make_run(
        status=RunStatus.WAITING, wait_reason=WaitReason.UNTIL, wait_until="2020-01-01T00:00:00Z"
    )
    async with SqlStore(url) as first:
        await Runtime(store=first).run_store.save(run)
    async with SqlStore(url) as second:
        due = await Runtime(store=second).run_store.list_due_wait_until(now_iso=utc_now_iso())
    assert [r.run_id for r in due] == [run.run_id]
