"""100,000 waiting runs: a poll cycle still reads only what is due, through the due_at index."""

from __future__ import annotations

import json
import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime import RunStatus, create_scheduled_runtime
from abstractruntime.core.serde import utc_now
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql import sqlite
from abstractruntime.storage.sql.statements import (
    Postgres,
    Sqlite,
    claim_due_args,
    expired_events_query,
    find_effect_query,
    list_runs_query,
    live_event_keys,
    messages_pending_query,
    next_due_query,
    served_args,
    wake_for_events,
    wake_for_messages,
)
from tests.acceptance.worker_app import TEN_STEPS
from tests.helpers import eventually

WAITING = 100_000
DUE = 3


async def fill(store: SqlStore) -> None:
    """WAITING runs waiting for tomorrow, half as many waiting for events, DUE due now."""
    if store.dialect == "postgresql":
        series = "generate_series(1, :n) AS g(x)"
        tomorrow, now, ident = "now() + interval '1 day'", "now()", "CAST(x AS TEXT)"
    else:
        series = (
            "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
            "SELECT x FROM c)"
        )
        stamp = "strftime('%Y-%m-%d %H:%M:%S', 'now'{}) || '.000000'"
        tomorrow, now, ident = stamp.format(", '+1 day'"), stamp.format(""), "CAST(x AS TEXT)"
    insert = (
        "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node, "
        "wait_reason, wait_key, wait_until, created_at, updated_at, version, ledger_seq, state, "
        "due_at) SELECT :prefix || {ident}, 'ten_steps', 'waiting', 'n5', :reason, :key, {until}, "
        "{now}, {now}, 1, 0, '{{}}', {due} FROM {series}"
    )
    async with store.engine.begin() as conn:
        for prefix, n, reason, until in [
            ("later-", WAITING, "until", tomorrow),
            ("event-", WAITING // 2, "event", "NULL"),
        ]:
            key = "evt:x" if reason == "event" else None
            sql = insert.format(ident=ident, until=until, now=now, due=until, series=series)
            await conn.execute(
                sa.text(sql), {"prefix": prefix, "n": n, "reason": reason, "key": key}
            )
        if store.dialect == "postgresql":
            await conn.execute(sa.text("ANALYZE abstractruntime_runs"))
        else:
            await conn.execute(sa.text("ANALYZE"))
    rt = await create_scheduled_runtime(store=store, workflows=[TEN_STEPS], auto_start=False)
    for _ in range(DUE):
        await rt.runtime.start(workflow=TEN_STEPS)


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(plan_nodes(child))
    return nodes


async def explain(store: SqlStore, statement: Any) -> list[str]:
    """The plan as lines: Postgres node types with their index/relation; SQLite's details.

    ``statement``: a SQLAlchemy statement, or the SQL text a backend runs with its arguments
    as a tuple ``(sql, args)``."""
    if isinstance(statement, tuple):
        sql, args = statement
    else:
        dialect = store.engine.dialect
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        args = ()
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            raw = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", args)).scalar()
            doc = raw if isinstance(raw, list) else json.loads(raw)
            return [
                f"{n['Node Type']} {n.get('Index Name', '')} {n.get('Relation Name', '')}"
                for n in plan_nodes(doc[0]["Plan"])
            ]
        rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", args)).all()
        return [row[-1] for row in rows]


def claims_that_the_backend_runs(store: SqlStore, now: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The claims of due runs, unfiltered and filtered, as the dialect's backend runs them."""
    until = now + timedelta(seconds=30)

    def served(postgres: bool) -> tuple[Any, ...]:
        return served_args([("ten_steps", "1")], postgres)

    if store.dialect == "sqlite":  # on the writer thread
        return [
            (Sqlite.claim_due(None), sqlite._bind(claim_due_args("me", now, until, 100))),
            (
                Sqlite.claim_due(1),
                sqlite._bind(claim_due_args("me", now, until, 100, served(False))),
            ),
        ]
    return [  # on asyncpg
        (Postgres.CLAIM_DUE, claim_due_args("me", now, until, 100)),
        (Postgres.CLAIM_DUE_FILTERED, claim_due_args("me", now, until, 100, served(True))),
    ]


@pytest.mark.slow
async def test_poll_cycle_with_100k_waiting_runs_uses_the_due_index(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        await store.check()  # creates and migrates the SQLite file
        await fill(store)
        now = utc_now()
        statements: list[Any] = [
            *claims_that_the_backend_runs(store, now),
            next_due_query(),
            next_due_query([("ten_steps", "1")]),
        ]
        for statement in statements:
            lines = await explain(store, statement)
            text = "\n".join(lines)
            assert "ix_abstractruntime_runs_due_at" in text, text
            if store.dialect == "postgresql":
                assert not any(
                    line.startswith("Seq Scan") and "abstractruntime_runs" in line for line in lines
                ), text
            else:
                assert "SCAN abstractruntime_runs\n" not in text + "\n", text
        # Waiting runs by deadline (find_waiting_runs(order_by="deadline"), runs list
        # --overdue-within): a range of the (status, wait_until) index, which holds timeouts too.
        for before in (None, now + timedelta(hours=1)):
            by_deadline = list_runs_query(
                status=RunStatus.WAITING,
                workflow_id=None,
                wait_reason=None,
                wait_key=None,
                parent_run_id=None,
                limit=50,
                deadline=True,
                deadline_before=before,
            )
            lines = await explain(store, by_deadline)
            text = "\n".join(lines)
            assert "ix_abstractruntime_runs_status_wait_until" in text, text
            assert not any(line.startswith(("Seq Scan", "Sort")) for line in lines), text
            assert "USE TEMP B-TREE" not in text, text

        # The scheduler's look for runs left waiting with a message or a buffered event
        # (events.housekeeping, every cycle) starts from the messages and the unexpired events,
        # never from the 100,000 waiting runs.
        for statement in (
            messages_pending_query(now),
            live_event_keys(now, 500),
            wake_for_messages(now, 500),
            wake_for_events(now, ["evt:a", "evt:b"], 500),
            expired_events_query(now),
        ):
            lines = await explain(store, statement)
            text = "\n".join(lines)
            if store.dialect == "postgresql":
                assert not any(
                    line.startswith("Seq Scan") and "abstractruntime_runs" in line for line in lines
                ), text
            else:
                assert "SCAN abstractruntime_runs\n" not in text + "\n", text

        # A real scheduler cycle claims exactly the due runs and keeps no memory per run.
        sr = await create_scheduled_runtime(
            store=store, workflows=[TEN_STEPS], auto_start=False, poll_interval_s=0.1
        )
        assert await sr.scheduler.run_once() == DUE

        # They wait WAIT_S at node 5: drive them to their end, so that no run is due any more
        # (the cycles below must not race their timers).
        async def all_completed() -> bool:
            await sr.scheduler.run_once()
            return len(await store.list_runs(status=RunStatus.COMPLETED)) >= DUE

        await eventually(all_completed, "the due runs did not complete", timeout=30)
        await sr.scheduler.stop()
        tracemalloc.start()
        try:
            await sr.scheduler.run_once()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                assert await sr.scheduler.run_once() == 0
                await sr.scheduler._sleep_time(0)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 512 * 1024, f"{grown} bytes kept over 20 poll cycles"
        await sr.stop()


async def fill_ledger(store: SqlStore, runs: int, per_run: int) -> None:
    """``runs`` runs with ``per_run`` completed ledger records each, every record its own key."""
    if store.dialect == "postgresql":
        series = "generate_series(0, :n - 1) AS g(x)"
    else:
        series = (
            "(WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < :n - 1) "
            "SELECT x FROM c)"
        )
    now = "CURRENT_TIMESTAMP"
    json = "JSON" if store.dialect == "postgresql" else "TEXT"
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node, "
                "created_at, updated_at, version, ledger_seq, state) "
                f"SELECT 'r' || CAST(x AS TEXT), 'w', 'completed', NULL, {now}, {now}, 1, "
                f":per_run, CAST('{{}}' AS {json}) FROM {series}"
            ),
            {"n": runs, "per_run": per_run},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, status, "
                "attempt, idempotency_key, prev_hash, record_hash, created_at, record) "
                "SELECT 'r' || CAST(x / :per_run AS TEXT), x % :per_run, 's', 'n', 'completed', "
                f"1, 'k' || CAST(x AS TEXT), NULL, 'h', {now}, "
                f'CAST(\'{{"status": "completed", "result": \' || CAST(x AS TEXT) || \'}}\' '
                f"AS {json}) FROM {series}"
            ),
            {"n": runs * per_run, "per_run": per_run},
        )
        await conn.execute(sa.text("ANALYZE"))


@pytest.mark.slow
async def test_a_completed_effect_is_found_through_the_idempotency_index(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        await store.check()
        await fill_ledger(store, runs=20, per_run=5_000)
        found = await store.find_effect("r7", f"k{7 * 5_000 + 4_321}")
        assert found == {"status": "completed", "result": 7 * 5_000 + 4_321}
        assert await store.find_effect("r7", "k1") is None  # that key belongs to run r0
        assert await store.find_effect("r0", "k1") == {"status": "completed", "result": 1}
        text = "\n".join(await explain(store, find_effect_query("r7", "k12")))
        assert "ix_abstractruntime_ledger_run_id_idempotency_key" in text, text
