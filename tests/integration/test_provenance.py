"""Ledger verification straight from the store (``abstractruntime.provenance``), streaming."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime import RunNotFoundError, Runtime, verify_ledger_chain
from abstractruntime.core.ledger import compute_record_hash
from abstractruntime.core.serde import canonical_json, decode
from abstractruntime.provenance import verify_all, verify_run
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.schema import RawJSON, ledger, runs
from tests.workflows import APPROVAL, counter


@pytest.fixture
async def sql_store(db_url: str) -> AsyncIterator[SqlStore]:
    """A SqlStore on SQLite and on Postgres."""
    async with SqlStore(db_url) as store:
        yield store


async def _edit_record(store: Any, run_id: str, seq: int, **changes: Any) -> None:
    """Edit a stored ledger record behind the runtime's back (plain SQL on a database)."""
    if isinstance(store, SqlStore):
        async with store.engine.begin() as conn:
            text = await conn.scalar(
                sa.text(
                    "SELECT CAST(record AS TEXT) FROM abstractruntime_ledger "
                    "WHERE run_id = :run AND seq = :seq"
                ),
                {"run": run_id, "seq": seq},
            )
            await conn.execute(
                sa.text(
                    "UPDATE abstractruntime_ledger SET record = :record "
                    "WHERE run_id = :run AND seq = :seq"
                ),
                {"record": canonical_json({**decode(text), **changes}), "run": run_id, "seq": seq},
            )
    else:
        texts = store.ledger_store._records[run_id]
        texts[seq] = canonical_json({**decode(texts[seq]), **changes})


async def _delete_last_record(store: Any, run_id: str) -> None:
    if isinstance(store, SqlStore):
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "DELETE FROM abstractruntime_ledger WHERE run_id = :run AND seq = "
                    "(SELECT max(seq) FROM abstractruntime_ledger WHERE run_id = :run)"
                ),
                {"run": run_id},
            )
    else:
        store.ledger_store._records[run_id].pop()


async def test_an_intact_run_verifies(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _ = await rt.run(counter(5))
    report = await verify_run(store, run_id)
    assert report["ok"] is True and report["run_id"] == run_id
    assert report["count"] == 5 and report["errors"] == [] and report["first_bad_index"] is None
    assert report["head_hash"] == report["computed_head_hash"]
    assert report["head_hash"] == (await rt.get_ledger(run_id))[-1]["record_hash"]
    assert report["errors_omitted"] == 0


async def test_an_edited_record_is_reported_at_its_index(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _ = await rt.run(counter(5))
    await _edit_record(store, run_id, 2, node_id="forged")
    report = await verify_run(store, run_id)
    assert report["ok"] is False and report["first_bad_index"] == 2
    assert {e["index"] for e in report["errors"]} == {2}
    first = report["errors"][0]
    assert "record_hash does not match" in first["error"]
    assert first["type"] == "record_hash_mismatch"  # the original's code and keys
    assert (first["stored"], first["computed"]) == (first["actual"], first["expected"])
    # a SQL ledger keeps node_id in a column too, which now disagrees with the edited record
    expected = {"record_hash_mismatch"} | ({"column_mismatch"} if _indexed(store) else set())
    assert {e["type"] for e in report["errors"]} == expected


def _indexed(store: Any) -> bool:
    return isinstance(store, SqlStore)


@pytest.mark.parametrize(
    ("column", "forged"),
    [
        ("node_id", "forged"),
        ("status", "completed_x"),
        ("idempotency_key", "k" * 32),
        ("attempt", 7),
        ("step_id", "f" * 32),
        ("prev_hash", "0" * 64),
        ("record_hash", "1" * 64),
        ("created_at", datetime(2001, 1, 1, tzinfo=timezone.utc)),
    ],
)
async def test_a_forged_column_is_reported(sql_store: SqlStore, column: str, forged: Any) -> None:
    """Queries read the ledger's columns, not the hashed record: a column edited by hand must
    not pass verification although the chain of records is intact."""
    rt = Runtime(store=sql_store)
    run_id, _ = await rt.run(counter(5))
    before = (await rt.get_ledger(run_id))[2]
    if isinstance(forged, datetime) and sql_store.engine.dialect.name == "sqlite":
        forged = forged.strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLite holds a timestamp
    async with sql_store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                f"UPDATE abstractruntime_ledger SET {column} = :value "
                "WHERE run_id = :run AND seq = 2"
            ),
            {"value": forged, "run": run_id},
        )
    report = await verify_run(sql_store, run_id)
    assert report["ok"] is False and report["first_bad_index"] == 2
    [error] = [e for e in report["errors"] if e["type"] == "column_mismatch"]
    assert error["index"] == 2 and error["column"] == column
    if column != "created_at":
        assert (error["stored"], error["hashed"]) == (forged, before[column])
    else:
        assert error["stored"].startswith("2001-01-01T00:00:00")
        assert error["hashed"] == before["ended_at"]
    assert (error["actual"], error["expected"]) == (error["stored"], error["hashed"])
    assert f"column {column!r} holds" in error["error"]
    # the hashed records themselves are untouched
    assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]


async def test_a_forged_seq_is_reported(sql_store: SqlStore) -> None:
    rt = Runtime(store=sql_store)
    run_id, _ = await rt.run(counter(3))
    async with sql_store.engine.begin() as conn:  # the last one keeps its place in the order
        await conn.execute(
            sa.text("UPDATE abstractruntime_ledger SET seq = 9 WHERE run_id = :run AND seq = 2"),
            {"run": run_id},
        )
    report = await verify_run(sql_store, run_id)
    [error] = [e for e in report["errors"] if e["type"] == "column_mismatch"]
    assert (error["index"], error["column"], error["stored"], error["hashed"]) == (2, "seq", 9, 2)


async def test_records_deleted_from_the_end_are_caught_by_the_run_head(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _ = await rt.run(counter(5))
    await _delete_last_record(store, run_id)
    report = await verify_run(store, run_id)
    assert report["ok"] is False and report["count"] == 4
    assert report["first_bad_index"] == 4  # the first missing position
    assert "missing at the end" in report["errors"][0]["error"]


async def test_verify_all_reports_every_run_in_run_id_order(store: Any) -> None:
    rt = Runtime(store=store)
    ids = [await rt.start(workflow=counter(3), run_id=name) for name in ("run-b", "run-a", "run-c")]
    await rt.tick(workflow=counter(3), run_id="run-a")
    await rt.tick(workflow=counter(3), run_id="run-c")
    await _edit_record(store, "run-c", 0, result={"forged": True})
    # run-b never ran a step: an empty ledger is intact.
    reports = [report async for report in verify_all(store)]
    assert [r["run_id"] for r in reports] == sorted(ids)
    assert [(r["ok"], r["count"], r["first_bad_index"]) for r in reports] == [
        (True, 3, None),
        (True, 0, None),
        (False, 3, 0),
    ]


async def test_stopping_early_gives_the_connection_back(store: Any) -> None:
    rt = Runtime(store=store)
    for name in ("a", "b", "c"):
        await rt.start(workflow=APPROVAL, run_id=name)
    async with contextlib.aclosing(verify_all(store)) as reports:
        async for report in reports:
            assert report["run_id"] == "a"
            break
    assert (await verify_run(store, "c"))["ok"]  # the store still works


async def test_unknown_run(store: Any) -> None:
    with pytest.raises(RunNotFoundError):
        await verify_run(store, "nope")
    assert [r async for r in verify_all(store)] == []


async def test_errors_are_capped_but_the_first_bad_index_is_exact(store: Any) -> None:
    rt = Runtime(store=store)
    run_id, _ = await rt.run(counter(12))
    for seq in range(12):
        await _edit_record(store, run_id, seq, node_id=f"forged{seq}")
    report = await verify_run(store, run_id, max_errors=5)
    # each record: its hash, and on SQL its node_id column that the edit left behind
    per_record = 2 if _indexed(store) else 1
    assert len(report["errors"]) == 5 and report["errors_omitted"] == 12 * per_record - 5
    assert report["first_bad_index"] == 0


# -- a big ledger verifies in constant memory --------------------------------------------------

BIG = 30_000
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _chain_rows(run_id: str, count: int) -> Iterator[dict[str, Any]]:
    head = None
    for seq in range(count):
        record: dict[str, Any] = {
            "run_id": run_id,
            "step_id": f"{seq:032x}",
            "node_id": "n",
            "status": "completed",
            "effect": None,
            "result": {"i": seq, "note": "some payload to make the record a realistic size"},
            "error": None,
            "started_at": T0.isoformat(),
            "ended_at": T0.isoformat(),
            "attempt": 1,
            "prev_hash": head,
        }
        head = record["record_hash"] = compute_record_hash(record)
        yield {
            "run_id": run_id,
            "seq": seq,
            "step_id": record["step_id"],
            "node_id": "n",
            "status": "completed",
            "attempt": 1,
            "prev_hash": record["prev_hash"],
            "record_hash": head,
            "created_at": T0,
            "record": RawJSON(canonical_json(record)),
        }


async def _insert_big_ledger(store: SqlStore, run_id: str, count: int) -> int:
    """Bulk-insert a valid chain of ``count`` records; returns the bytes of JSON stored."""
    size, batch, head = 0, [], None
    async with store.engine.begin() as conn:
        await conn.execute(
            runs.insert().values(
                run_id=run_id,
                workflow_id="big",
                status="completed",
                created_at=T0,
                updated_at=T0,
                version=1,
                ledger_seq=count,
                state=RawJSON(canonical_json({"run_id": run_id})),
            )
        )
        for row in _chain_rows(run_id, count):
            size += len(row["record"])
            head = row["record_hash"]
            batch.append(row)
            if len(batch) == 5000:
                await conn.execute(ledger.insert(), batch)
                batch = []
        if batch:
            await conn.execute(ledger.insert(), batch)
        await conn.execute(runs.update().values(ledger_head=head))
    return size


async def test_a_big_ledger_verifies_in_constant_memory(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        await store.check()  # connects, checks (and migrates a new SQLite file) before measuring
        stored_bytes = await _insert_big_ledger(store, "big", BIG)
        tracemalloc.start()
        try:
            report = await verify_run(store, "big")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert report["ok"] is True and report["count"] == BIG
    # Holding the ledger would take at least its JSON text (~13 MB); streaming takes a batch.
    assert peak < stored_bytes / 4, (peak, stored_bytes)
    assert peak < 8_000_000
