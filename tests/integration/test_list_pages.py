"""Keyset pages of ``Store.list_runs(after=...)`` on memory, SQLite, Postgres and a store pair."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from abstractruntime import RunStatus, Runtime, RuntimeConfig
from abstractruntime.core.pages import key_of
from abstractruntime.errors import InvalidArgumentError
from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore
from tests.workflows import APPROVAL, counter

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def _pages(store: Any, size: int, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        page = await store.list_runs(limit=size, after=after, **filters)
        if not page:
            return pages
        pages.append([state.run_id for state in page])
        after = key_of(page[-1])


async def _runs_at(rt: Runtime, times: list[datetime], ids: list[str]) -> None:
    for when, run_id in zip(times, ids, strict=True):
        rt.config.clock = lambda when=when: when  # type: ignore[misc]
        await rt.start(workflow=counter(1), run_id=run_id)


async def test_pages_cover_every_run_once_in_order_with_ties(store: Any) -> None:
    rt = Runtime(store=store, config=RuntimeConfig())
    # Three runs share one updated_at: the page boundary falls between them.
    times = [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    ]
    await _runs_at(rt, times, ["r-a", "r-c", "r-b", "r-d", "r-e"])
    everything = [s.run_id for s in await store.list_runs(limit=100)]
    assert everything == ["r-e", "r-b", "r-c", "r-d", "r-a"]  # newest first, ties by run id
    assert await _pages(store, 2) == [["r-e", "r-b"], ["r-c", "r-d"], ["r-a"]]
    assert await _pages(store, 1) == [[run_id] for run_id in everything]


async def test_a_cursor_combines_with_filters_and_a_run_updated_meanwhile(store: Any) -> None:
    rt = Runtime(store=store)
    waiting = [(await rt.run(APPROVAL))[0] for _ in range(3)]
    await rt.run(counter(1))
    first = await store.list_runs(status=RunStatus.WAITING, limit=2)
    assert [s.run_id for s in first] == waiting[::-1][:2]
    # The oldest page's run moves to the front: the next page neither repeats nor skips.
    await rt.cancel_run(waiting[1])
    rest = await store.list_runs(status=RunStatus.WAITING, limit=10, after=key_of(first[-1]))
    assert [s.run_id for s in rest] == [waiting[0]]


@pytest.mark.parametrize(
    ("after", "extra"),
    [
        ((T0, "r"), {"order": "deadline"}),
        ((T0, "r"), {"deadline_before": T0}),
        (("2026-01-01", "r"), {}),
        ((T0,), {}),
        ((T0, "bad\x00id"), {}),
    ],
)
async def test_a_bad_cursor_is_a_user_error_before_any_io(
    store: Any, after: Any, extra: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError, match="after"):
        await store.list_runs(after=after, **extra)


async def test_a_store_pair_pages_as_well() -> None:
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    await _runs_at(rt, [T0, T0, T0 + timedelta(seconds=5)], ["p-b", "p-a", "p-c"])
    assert await _pages(rt.store, 2) == [["p-c", "p-a"], ["p-b"]]
