"""One connection pool per store, sized by the user: the sizes are honoured (counted from the
server on Postgres), come from keyword arguments or the URL, and are checked."""

from __future__ import annotations

import asyncio
import gc
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from abstractruntime import InvalidArgumentError, RunStatus, Runtime, StoreError
from abstractruntime.core.serde import utc_now
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.urls import DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE, normalize_url
from tests.workflows import counter


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def connections(url: str) -> int:
    """Backends connected to ``url``'s database, counted by the server (from another database,
    so as not to count ourselves)."""
    parsed = make_url(url)
    admin = await asyncpg.connect(
        parsed.set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False
        )
    )
    try:
        count = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", parsed.database
        )
        return int(count)
    finally:
        await admin.close()


async def settles_at(url: str, expected: int) -> int:
    """The count once it reaches ``expected`` (a closed connection's backend takes a moment to
    leave ``pg_stat_activity``), or the last count after two seconds."""
    for _ in range(200):
        count = await connections(url)
        if count == expected:
            break
        await asyncio.sleep(0.01)
    return count


async def load(store: SqlStore, runs: int = 30) -> None:
    """Runs at once: every operation of the hot and cold paths competes for the pool."""
    rt = Runtime(store=store)
    results = await asyncio.gather(*(rt.run(counter(3)) for _ in range(runs)))
    assert all(state.status is RunStatus.COMPLETED for _, state in results)


@pytest.mark.postgres
async def test_a_postgres_store_opens_at_most_its_pool_and_one_listener(pg_url: str) -> None:
    async with SqlStore(pg_url, pool_size=2, max_overflow=1) as store:
        peak = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, await connections(pg_url))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            await load(store)
        finally:
            done.set()
            await watcher
        # Two pools (the hot path's and the engine's), each of pool_size + max_overflow.
        assert 2 <= peak <= 2 * 3, peak
        assert store.engine.pool.size() == 2  # type: ignore[attr-defined]
        at_rest = await connections(pg_url)
        assert at_rest <= 2 * 3
        stop = await store.listen(lambda: None)
        try:
            assert await settles_at(pg_url, at_rest + 1) == at_rest + 1  # + the LISTEN one
        finally:
            await stop()
    assert await settles_at(pg_url, 0) == 0


@pytest.mark.postgres
async def test_the_default_postgres_pool(pg_url: str) -> None:
    async with SqlStore(pg_url) as store:
        await load(store, runs=3 * (DEFAULT_POOL_SIZE + DEFAULT_MAX_OVERFLOW))
        assert 1 <= await connections(pg_url) <= 2 * (DEFAULT_POOL_SIZE + DEFAULT_MAX_OVERFLOW)
        assert store.engine.pool.size() == DEFAULT_POOL_SIZE  # type: ignore[attr-defined]


async def test_the_pool_size_comes_from_the_url_and_stays_out_of_the_driver(db_url: str) -> None:
    url = with_query(db_url, "pool_size=3&max_overflow=2")
    async with SqlStore(url) as store:
        assert "pool_size" not in store.url.query and "max_overflow" not in store.url.query
        assert store.engine.pool.size() == 3  # type: ignore[attr-defined]
        await load(store, runs=5)  # the drivers never saw the two parameters
    async with SqlStore(url, pool_size=4) as store:  # keyword arguments win
        assert store.engine.pool.size() == 4  # type: ignore[attr-defined]


async def test_a_pool_of_one_is_one(db_url: str) -> None:
    """With one connection and no overflow, a second operation waits for the first; when it
    waits too long, it fails with a StoreError naming the database."""
    async with SqlStore(db_url, pool_size=1, max_overflow=0, pool_timeout=0.2) as store:
        await load(store, runs=5)  # many operations, one connection at a time
        async with store.engine.connect():  # hold the only connection
            with pytest.raises(StoreError, match="cannot read"):
                await store.list_runs()


async def test_operations_cancelled_midway_give_their_connection_back(db_url: str) -> None:
    """A worker cancels runs (stop, timeouts): every connection they held returns to the pool,
    so that a pool of one still serves afterwards."""
    async with SqlStore(db_url, pool_size=1, max_overflow=0, pool_timeout=5) as store:
        await load(store, runs=3)

        async def busy() -> None:
            while True:
                now = utc_now()
                await store.claim_due("me", now, now + timedelta(seconds=30), 10)
                await store.list_runs(limit=5)

        for delay in (0, 0.001, 0.003, 0.01, 0.02):
            tasks = [asyncio.create_task(busy()) for _ in range(10)]
            await asyncio.sleep(delay)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.05)  # returns that were shielded from the cancellation finish
        assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await load(store, runs=3)


async def _store_with_a_claim_blocked_on_a_row_lock(
    pg_url: str,
) -> tuple[SqlStore, asyncpg.Connection, asyncio.Task[Any]]:
    """A store whose claim of a run waits on a lock another connection holds on its row."""
    store = SqlStore(pg_url)
    run_id = await Runtime(store=store).start(workflow=counter(1))
    locker = await asyncpg.connect(
        make_url(pg_url).set(drivername="postgresql").render_as_string(False)
    )
    await locker.execute("BEGIN")
    await locker.execute("SELECT 1 FROM abstractruntime_runs WHERE run_id = $1 FOR UPDATE", run_id)
    now = utc_now()
    claim = asyncio.create_task(store.claim_run(run_id, "me", now, now + timedelta(seconds=30)))
    await asyncio.sleep(0.2)
    assert not claim.done()
    return store, locker, claim


@pytest.mark.postgres
async def test_close_lets_a_statement_in_flight_finish(pg_url: str) -> None:
    store, locker, claim = await _store_with_a_claim_blocked_on_a_row_lock(pg_url)
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # waits for the claim, which holds a pooled connection
    await locker.execute("ROLLBACK")
    await locker.close()
    await closing
    assert (await claim).owner == "me"
    assert await settles_at(pg_url, 0) == 0


@pytest.mark.postgres
async def test_close_closes_the_connection_of_a_statement_that_does_not_finish(
    pg_url: str,
) -> None:
    """After the grace, the connection is closed under the statement (which fails with a
    StoreError): nothing is left for the garbage collector (a ResourceWarning is an error
    here)."""
    store, locker, claim = await _store_with_a_claim_blocked_on_a_row_lock(pg_url)
    try:
        await store._backend.close(grace_s=0.2)  # type: ignore[call-arg]
        with pytest.raises(StoreError):
            await claim
        gc.collect()  # an unclosed connection would warn now, and fail the test
        # The server's backend notices the closed client once the lock lets it go on.
        await locker.execute("ROLLBACK")
        assert await settles_at(pg_url, 1) == 1  # the locker only
    finally:
        await locker.close()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"pool_size": -1}, "pool_size"),
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": 1.5}, "pool_size"),
        ({"pool_size": "ten"}, "pool_size"),
        ({"pool_size": True}, "pool_size"),
        ({"max_overflow": -1}, "max_overflow"),
        ({"max_overflow": "2.0"}, "max_overflow"),
        ({"max_overflow": None}, "max_overflow"),
    ],
)
def test_invalid_pool_sizes_are_refused_by_name(
    sqlite_url: str, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{name} must be a whole number"):
        SqlStore(sqlite_url, **kwargs)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("pool_size=-3", "pool_size"),
        ("pool_size=abc", "pool_size"),
        ("max_overflow=-1", "max_overflow"),
        ("max_overflow=1e3", "max_overflow"),
    ],
)
def test_invalid_pool_sizes_in_the_url_are_refused_by_name(
    sqlite_url: str, query: str, name: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{name} in the database URL must be"):
        SqlStore(with_query(sqlite_url, query))


def test_the_alembic_command_line_gets_the_url_without_pool_options() -> None:
    """``migrations/env.py`` makes an engine of its own from ``$ABSTRACTRUNTIME_DATABASE_URL``."""
    url = "postgresql://app@db/app?pool_size=3&max_overflow=1&ssl=require"
    assert normalize_url(url) == "postgresql+asyncpg://app@db/app?ssl=require"


async def test_renew_returns_the_leases_it_extended(store: Any) -> None:
    rt = Runtime(store=store)
    ids = [await rt.start(workflow=counter(1)) for _ in range(3)]
    now = utc_now()
    for run_id in ids[:2]:
        await store.claim_run(run_id, "me", now, now + timedelta(seconds=30))
    later = now + timedelta(seconds=60)
    assert sorted(await store.renew("me", ids, later)) == sorted(ids[:2])  # not the unclaimed
    assert await store.renew("someone else", ids, later) == []
    assert (await store.load_run(ids[0])).state.status is RunStatus.RUNNING


@pytest.mark.postgres
async def test_one_locked_row_does_not_hold_the_other_leases_back(pg_url: str) -> None:
    """A commit in flight holds its run's row: the worker's other leases are renewed at once
    and that one at the next beat, instead of all of them timing out together."""
    async with SqlStore(pg_url) as store:
        rt = Runtime(store=store)
        ids = [await rt.start(workflow=counter(1)) for _ in range(3)]
        now = utc_now()
        for run_id in ids:
            await store.claim_run(run_id, "me", now, now + timedelta(seconds=30))
        locker = await asyncpg.connect(
            make_url(pg_url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            await locker.execute("BEGIN")
            await locker.execute(
                "SELECT 1 FROM abstractruntime_runs WHERE run_id = $1 FOR UPDATE", ids[0]
            )
            later = now + timedelta(seconds=60)
            renewed = await asyncio.wait_for(store.renew("me", ids, later), timeout=10)
            assert sorted(renewed) == sorted(ids[1:])
            await locker.execute("ROLLBACK")
        finally:
            await locker.close()
        assert sorted(await store.renew("me", ids, later)) == sorted(ids)
