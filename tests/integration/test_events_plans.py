"""The queries of buffered events and messages go through their indexes, however many rows."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.statements import (
    buffered_event_query,
    delete_expired_events,
    next_message_query,
)
from tests.integration.test_scale import explain, fill_ledger

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


async def _fill(store: SqlStore, n: int) -> None:
    """``n`` events over 100 keys, half expired; ``n`` messages over 200 runs and 10 keys."""
    await fill_ledger(store, runs=200, per_run=1)
    if store.dialect == "postgresql":
        series = "generate_series(0, :n - 1) AS g(x)"
        json, at = "JSON", "TIMESTAMPTZ"
        expires = "CAST(:now AS TIMESTAMPTZ) + (x % 2) * INTERVAL '1 hour' - INTERVAL '30 minutes'"
    else:
        series = (
            "(WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < :n - 1) "
            "SELECT x FROM c)"
        )
        json, at = "TEXT", "TEXT"
        expires = (
            "CASE x % 2 WHEN 0 THEN '2026-01-01 11:30:00.000000' "
            "ELSE '2026-01-01 12:30:00.000000' END"
        )
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO abstractruntime_events (key, payload, created_at, expires_at) "
                f"SELECT 'k' || CAST(x % 100 AS TEXT), CAST('{{}}' AS {json}), "
                f"CAST(:now AS {at}), {expires} FROM {series}"
            ),
            {"n": n, "now": NOW if store.dialect == "postgresql" else "2026-01-01 12:00:00.000000"},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO abstractruntime_messages (run_id, key, payload, created_at) "
                "SELECT 'r' || CAST(x % 200 AS TEXT), 'm' || CAST(x % 10 AS TEXT), "
                f"CAST('{{}}' AS {json}), CURRENT_TIMESTAMP FROM {series}"
            ),
            {"n": n},
        )
        await conn.execute(sa.text("ANALYZE"))


async def test_event_and_message_queries_use_their_indexes(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        await store.check()
        await _fill(store, 20_000)
        found = await store.find_delivery("r7", "m7", NOW)
        assert found is not None and found.message_id is not None
        found = await store.find_delivery("r7", "k3", NOW)
        assert found is not None and found.event_id is not None
        plans = {
            "message": await explain(store, next_message_query("r7", "m7")),
            "event": await explain(store, buffered_event_query("r7", "k3", NOW)),
            "expired": await explain(store, delete_expired_events(NOW, 500)),
        }
        text = {name: "\n".join(lines) for name, lines in plans.items()}
        assert "ix_abstractruntime_messages_run_id_key_message_id" in text["message"], text
        assert "ix_abstractruntime_events_key_event_id" in text["event"], text
        assert "ix_abstractruntime_events_expires_at" in text["expired"], text
        assert await store.delete_expired_events(NOW, 500) == 500
