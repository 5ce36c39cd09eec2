"""SqlStore specifics: schema checks, tamper evidence, SQLite settings and concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from abstractruntime import (
    RunStatus,
    Runtime,
    SchemaOutOfDateError,
    Snapshot,
    StoreError,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.provenance import verify_all
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql import migrate
from tests.workflows import APPROVAL, counter


async def test_a_new_sqlite_file_is_created_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "runs.db"
    async with SqlStore(f"sqlite+aiosqlite:///{path}") as store:
        _, state = await Runtime(store=store).run(APPROVAL)
        assert state.status is RunStatus.WAITING
        assert await store.current_revision() == migrate.head_revision()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_plain_sqlite_and_postgres_urls_get_the_async_driver(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.url.drivername == "sqlite+aiosqlite"
    await store.close()
    pg = SqlStore("postgresql://u:secret@127.0.0.1:1/db")
    assert pg.url.drivername == "postgresql+asyncpg"
    assert "secret" not in repr(pg)
    await pg.close()


def test_unsupported_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unsupported database 'mysql'.*sqlite\+aiosqlite"):
        SqlStore("mysql://root:pw@localhost/db")
    with pytest.raises(ValueError, match="is not a database URL"):
        SqlStore("not a url")


async def test_sqlite_file_made_by_someone_else_is_not_migrated_silently(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:  # an application's own database
        conn.execute("CREATE TABLE their_table (id INTEGER)")
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    try:
        with pytest.raises(SchemaOutOfDateError, match="db upgrade") as info:
            await Runtime(store=store).run(APPROVAL)
        assert "has no abstractruntime tables" in str(info.value)
        await store.upgrade()
        _, state = await Runtime(store=store).run(APPROVAL)
        assert state.status is RunStatus.WAITING
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_behind_head_is_refused_with_the_upgrade_command(
    pg_empty_url: str,
) -> None:
    store = SqlStore(pg_empty_url)
    try:
        with pytest.raises(SchemaOutOfDateError) as info:
            await store.load_run("x")
        message = str(info.value)
        assert "abstractruntime --database-url" in message and "db upgrade" in message
        assert migrate.head_revision() in message
        await store.upgrade()
        with pytest.raises(KeyError):
            await store.load_run("x")
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_scheduled_runtime_on_an_unmigrated_postgres_is_refused_at_creation(
    pg_empty_url: str,
) -> None:
    """Not a worker that starts, then logs the same error with backoff while all else fails."""
    with pytest.raises(SchemaOutOfDateError, match="db upgrade"):
        await create_scheduled_runtime(database_url=pg_empty_url, workflows=[APPROVAL])
    store = SqlStore(pg_empty_url)
    try:
        with pytest.raises(SchemaOutOfDateError, match="db upgrade"):
            await create_scheduled_runtime(store=store, workflows=[APPROVAL])
        await store.upgrade()  # the store given is still the caller's, open
        async with await create_scheduled_runtime(store=store, workflows=[APPROVAL]) as sr:
            assert sr.scheduler.is_running
    finally:
        await store.close()


async def test_database_ahead_of_this_version_is_refused(db_url: str) -> None:
    store = SqlStore(db_url)
    try:
        await store.upgrade()
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'from_the_future'")
            )
        fresh = SqlStore(db_url)
        with pytest.raises(SchemaOutOfDateError, match="newer version"):
            await fresh.load_run("x")
        await fresh.close()
    finally:
        await store.close()


async def test_unreachable_database_is_a_store_error_without_password() -> None:
    store = SqlStore("postgresql+asyncpg://user:hunter2@127.0.0.1:1/nope")
    try:
        with pytest.raises(StoreError, match="cannot open database") as info:
            await store.load_run("x")
        assert "hunter2" not in str(info.value)
    finally:
        await store.close()


async def test_tampered_ledger_row_is_reported_at_its_index(db_url: str) -> None:
    wf = counter(4)
    async with SqlStore(db_url) as store:
        rt = Runtime(store=store)
        run_id, _ = await rt.run(wf)
        assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]
        async with store.engine.begin() as conn:
            text = await conn.scalar(
                sa.text(
                    "SELECT CAST(record AS TEXT) FROM abstractruntime_ledger "
                    "WHERE run_id = :r AND seq = 2"
                ),
                {"r": run_id},
            )
            await conn.execute(
                sa.text(
                    "UPDATE abstractruntime_ledger SET record = :t WHERE run_id = :r AND seq = 2"
                ),
                {"t": text.replace('"node_id":"n2"', '"node_id":"evil"'), "r": run_id},
            )
        report = verify_ledger_chain(await rt.get_ledger(run_id))
        assert report["ok"] is False
        assert report["first_bad_index"] == 2
        assert report["head_hash"] != report["computed_head_hash"] or report["errors"]


async def test_ledger_rows_carry_chain_columns(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        rt = Runtime(store=store)
        run_id, _ = await rt.run(counter(3))
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT seq, prev_hash, record_hash, step_id FROM abstractruntime_ledger"
                        " WHERE run_id = :r ORDER BY seq"
                    ),
                    {"r": run_id},
                )
            ).all()
            head = await conn.scalar(
                sa.text("SELECT ledger_head FROM abstractruntime_runs WHERE run_id = :r"),
                {"r": run_id},
            )
        ledger = await rt.get_ledger(run_id)
        assert [r.seq for r in rows] == [0, 1, 2]
        assert [r.record_hash for r in rows] == [d["record_hash"] for d in ledger]
        assert [r.prev_hash for r in rows] == [None, rows[0].record_hash, rows[1].record_hash]
        assert head == rows[-1].record_hash
        # The (run_id, seq) primary key refuses a second record at a committed position.
        with pytest.raises(sa.exc.IntegrityError):
            async with store.engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, "
                        "status, attempt, record_hash, created_at, record) VALUES "
                        "(:r, 1, 'x', 'x', 'completed', 1, 'x', CURRENT_TIMESTAMP, '{}')"
                    ),
                    {"r": run_id},
                )


async def test_many_concurrent_runs_on_one_sqlite_file_never_see_locked(
    sqlite_url: str,
) -> None:
    """Several stores (several pools) write one file at once: the busy timeout absorbs it."""
    stores = [SqlStore(sqlite_url) for _ in range(4)]
    try:
        wf = counter(5)
        results = await asyncio.gather(*(Runtime(store=stores[i % 4]).run(wf) for i in range(40)))
        assert all(state.status is RunStatus.COMPLETED for _, state in results)
        reader = stores[0]
        for run_id, _ in results:
            assert verify_ledger_chain(await reader.get_ledger(run_id))["ok"]
    finally:
        for store in stores:
            await store.close()


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:", "sqlite://"]
)
async def test_an_in_memory_store_serves_the_whole_store_api_and_leaves_no_file(
    url: str,
) -> None:
    """An in-memory URL takes the same path as a file (the writer thread, group commit), on a
    private temporary file that close() removes."""
    store = SqlStore(url)
    private = Path(str(store.url.database)).parent
    assert private.is_dir() and private != Path.cwd()
    rt = Runtime(store=store)
    # Runs, steps and the ledger.
    run_id, state = await rt.run(APPROVAL)
    assert state.status is RunStatus.WAITING
    assert state.waiting is not None
    done = await rt.resume(
        workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload={"v": 1}
    )
    assert done.status is RunStatus.COMPLETED
    _, counted = await rt.run(counter(4))
    assert counted.output == {"n": 4}
    assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]
    assert [report["ok"] async for report in verify_all(store)] == [True, True]
    assert len(await store.list_runs(status=RunStatus.COMPLETED)) == 2
    # Claims and leases, as a scheduler takes them.
    sr = await create_scheduled_runtime(store=store, workflows=[counter(3)], auto_start=False)
    await sr.runtime.start(workflow=counter(3))
    assert await sr.scheduler.run_once() == 1
    await sr.stop()
    assert len(await store.list_runs(status=RunStatus.COMPLETED)) == 3
    # Snapshots: save, list, restore, fork, delete.
    snap = Snapshot.from_run(run=state, name="before approval", tags=["t"])
    await store.snapshots.save(snap)
    assert [s.snapshot_id for s in await store.snapshots.list(tag="T")] == [snap.snapshot_id]
    assert (await rt.restore_snapshot(snap.snapshot_id)).status is RunStatus.WAITING
    forked = await rt.fork_snapshot(snap.snapshot_id)
    assert (await rt.get_state(forked)).status is RunStatus.WAITING
    assert await store.snapshots.delete(snap.snapshot_id)
    # Artifacts.
    artifact_id = await store.artifacts.put(b"bytes", content_type="text/plain")
    assert await store.artifacts.get(artifact_id) == b"bytes"
    assert await store.artifacts.delete(artifact_id)
    await store.close()
    assert not private.exists()


async def test_two_in_memory_stores_are_two_databases() -> None:
    async with SqlStore("sqlite+aiosqlite://") as one, SqlStore("sqlite+aiosqlite://") as two:
        run_id, _ = await Runtime(store=one).run(APPROVAL)
        assert await two.list_runs() == []
        assert (await Runtime(store=one).get_state(run_id)).status is RunStatus.WAITING
