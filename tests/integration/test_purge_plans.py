"""The purge's queries go through indexes, however many runs: a page of candidates is a range
of the (status, updated_at, run_id) index, a tree's lookups and a ledger chunk are key lookups."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from abstractruntime.core.retention import purge_spec
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.retention import (
    candidates_query,
    children_info_query,
    claim_update,
    delete_ledger_range,
    runs_info_query,
)
from tests.integration.test_scale import explain, fill_ledger

NOW = datetime.now(timezone.utc)


async def test_purge_queries_use_their_indexes(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        await store.check()
        await fill_ledger(store, runs=20_000, per_run=2)
        # Two thirds of the runs not finished; all ended at one time (the keyset's tie-breaker,
        # the run id, pages through them), as the store writes times.
        at = "'2026-01-01 12:00:00" + (".000000'" if store.dialect == "sqlite" else "+00'")
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    f"UPDATE abstractruntime_runs SET updated_at = {at}, status = CASE "
                    "WHEN CAST(substr(run_id, 2) AS INTEGER) % 3 = 0 THEN 'waiting' "
                    "WHEN CAST(substr(run_id, 2) AS INTEGER) % 3 = 1 THEN 'running' "
                    "ELSE 'completed' END"
                )
            )
            await conn.execute(sa.text("ANALYZE"))
        spec = purge_spec(timedelta(0), ["completed"], 100, NOW + timedelta(days=1))
        cutoff = spec.cutoff
        plans = {
            "first page": await explain(store, candidates_query("completed", cutoff, None, 100)),
            "next page": await explain(
                store, candidates_query("completed", cutoff, (NOW, "r500"), 100)
            ),
            "runs": await explain(store, runs_info_query(["r2", "r5"])),
            "children": await explain(store, children_info_query(["r2", "r5"])),
            "claim": await explain(store, claim_update(["r2", "r5"], spec, "o", NOW)),
            "ledger chunk": await explain(store, delete_ledger_range("r2", 0, 2000, "o")),
        }
        text = {name: "\n".join(lines) for name, lines in plans.items()}
        index = "ix_abstractruntime_runs_status_updated_at_run_id"
        assert index in text["first page"], text
        assert index in text["next page"], text
        for name in ("first page", "next page"):
            assert "Sort" not in text[name] and "TEMP B-TREE" not in text[name], text
        assert "ix_abstractruntime_runs_parent_run_id" in text["children"], text
        for name in ("runs", "claim", "ledger chunk"):
            assert (
                "pk_abstractruntime" in text[name]
                or "PRIMARY KEY" in text[name]
                or ("sqlite_autoindex" in text[name])
            ), text
        result = await store.purge(older_than=timedelta(0), statuses=["completed"], batch=500)
        assert result.runs == 6666  # r2, r5 ... r19997
        assert result.ledger_records == 2 * result.runs
