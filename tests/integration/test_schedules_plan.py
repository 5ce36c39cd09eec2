"""The scheduler's poll reads only the due schedules, through the next_fire_at index."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from abstractruntime.core.serde import utc_now
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.statements import due_schedules_query, next_fire_query
from tests.integration.test_scale import explain

SCHEDULES = 20_000


async def fill(store: SqlStore) -> None:
    """SCHEDULES schedules firing tomorrow, three due now."""
    if store.dialect == "postgresql":
        series = "generate_series(1, :n) AS g(x)"
        tomorrow, now = "now() + interval '1 day'", "now() - interval '1 minute'"
    else:
        series = (
            "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
            "SELECT x FROM c)"
        )
        stamp = "strftime('%Y-%m-%d %H:%M:%S', 'now'{}) || '.000000'"
        tomorrow, now = stamp.format(", '+1 day'"), stamp.format(", '-1 minute'")
    insert = (
        "INSERT INTO abstractruntime_schedules (name, workflow_id, cron, timezone, catch_up, "
        "vars, next_fire_at, version, created_at, updated_at) SELECT :prefix || CAST(x AS TEXT), "
        "'ten_steps', '0 3 * * *', 'UTC', 'latest', '{{}}', {at}, 0, {at}, {at} FROM {series}"
    )
    async with store.engine.begin() as conn:
        for prefix, n, at in [("later-", SCHEDULES, tomorrow), ("due-", 3, now)]:
            await conn.execute(
                sa.text(insert.format(at=at, series=series)), {"prefix": prefix, "n": n}
            )
        await conn.execute(
            sa.text(
                "ANALYZE abstractruntime_schedules" if store.dialect == "postgresql" else "ANALYZE"
            )
        )


@pytest.mark.slow
async def test_due_schedules_are_read_by_the_next_fire_at_index(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        await store.check()  # creates and migrates the SQLite file
        await fill(store)
        now = utc_now()
        assert len(await store.schedules.due(now, 100, ["ten_steps"])) == 3
        for statement in [
            due_schedules_query(now, 100),
            due_schedules_query(now, 100, ["ten_steps"]),
            next_fire_query(),
            next_fire_query(["ten_steps"]),
        ]:
            lines = await explain(store, statement)
            text = "\n".join(lines)
            assert "ix_abstractruntime_schedules_next_fire_at" in text, text
            if store.dialect == "postgresql":
                assert not any(line.startswith("Seq Scan") for line in lines), text
            else:
                assert "SCAN abstractruntime_schedules\n" not in text + "\n", text
