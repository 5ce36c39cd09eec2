"""A database made by the first revision, with runs in it, upgrades to head with its runs intact."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime import (
    RunState,
    RunStatus,
    Runtime,
    Snapshot,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from abstractruntime.core.ledger import chain_records
from abstractruntime.core.serde import canonical_json
from abstractruntime.provenance import verify_all
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql import migrate
from tests.workflows import APPROVAL, counter

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_empty_url"))


def _runs() -> list[tuple[RunState, list[StepRecord]]]:
    """Three runs as version 0001 of abstractruntime would have stored them."""
    approval = RunState(
        run_id="approval-1",
        workflow_id="approval",
        status=RunStatus.WAITING,
        current_node="ask",
        vars={"order": 42},
        waiting=WaitState(
            reason=WaitReason.USER,
            wait_key="user:approval-1:ask",
            resume_to_node="done",
            result_key="answer",
            prompt="Approve?",
            choices=["yes", "no"],
        ),
        created_at=T0,
        updated_at=T0,
    )
    asked = StepRecord(
        run_id="approval-1",
        step_id="s1",
        node_id="ask",
        status=StepStatus.WAITING,
        effect={"type": "ask_user", "payload": {"prompt": "Approve?"}, "result_key": "answer"},
        result={"wait": approval.waiting.to_dict()},  # type: ignore[union-attr]
        started_at=T0,
        ended_at=T0,
    )
    running = RunState(
        run_id="counter-1",
        workflow_id="counter",
        status=RunStatus.RUNNING,
        current_node="n1",
        vars={"n": 1, "seen": [0]},
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
    )
    stepped = StepRecord(
        run_id="counter-1",
        step_id="s2",
        node_id="n0",
        status=StepStatus.COMPLETED,
        started_at=T0,
        ended_at=T0,
    )
    timer = RunState(
        run_id="timer-1",
        workflow_id="timer",
        status=RunStatus.WAITING,
        current_node="sleep",
        waiting=WaitState(reason=WaitReason.UNTIL, until=T0 + timedelta(hours=1)),
        created_at=T0,
        updated_at=T0,
    )
    return [(approval, [asked]), (running, [stepped]), (timer, [])]


async def _write_with_plain_sql(store: SqlStore, data: list[tuple[RunState, list[StepRecord]]]):  # type: ignore[no-untyped-def]
    """Insert the runs the way revision 0001's store did: its columns only (no ``due_at``)."""
    async with store.engine.begin() as conn:
        for state, records in data:
            dicts, head = chain_records(records, None)
            waiting = state.waiting
            await conn.execute(
                sa.text(
                    "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node,"
                    " wait_reason, wait_key, wait_until, created_at, updated_at, version,"
                    " ledger_seq, ledger_head, state) VALUES (:run_id, :workflow_id, :status,"
                    " :node, :reason, :key, :until, :created, :updated, :version, :seq, :head,"
                    " :state)"
                ),
                {
                    "run_id": state.run_id,
                    "workflow_id": state.workflow_id,
                    "status": state.status.value,
                    "node": state.current_node,
                    "reason": waiting.reason.value if waiting else None,
                    "key": waiting.wait_key if waiting else None,
                    "until": waiting.until if waiting else None,
                    "created": state.created_at,
                    "updated": state.updated_at,
                    "version": len(dicts),
                    "seq": len(dicts),
                    "head": head,
                    "state": canonical_json(state.to_dict()),
                },
            )
            for seq, record in enumerate(dicts):
                await conn.execute(
                    sa.text(
                        "INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, status,"
                        " attempt, prev_hash, record_hash, created_at, record) VALUES (:run_id,"
                        " :seq, :step_id, :node_id, :status, 1, :prev, :hash, :created, :record)"
                    ),
                    {
                        "run_id": state.run_id,
                        "seq": seq,
                        "step_id": record["step_id"],
                        "node_id": record["node_id"],
                        "status": record["status"],
                        "prev": record["prev_hash"],
                        "hash": record["record_hash"],
                        "created": T0,
                        "record": canonical_json(record),
                    },
                )


async def test_runs_of_the_first_revision_survive_the_upgrade_to_head(empty_url: str) -> None:
    data = _runs()
    old = SqlStore(empty_url)
    try:
        await old.upgrade("0001_initial")
        assert await old.current_revision() == "0001_initial"
        await _write_with_plain_sql(old, data)
    finally:
        await old.close()

    async with SqlStore(empty_url) as store:
        await store.upgrade()
        assert await store.current_revision() == migrate.head_revision()
        rt = Runtime(store=store, workflow_registry=[APPROVAL, counter(2)])
        for state, records in data:
            assert await rt.get_state(state.run_id) == state
            ledger = await rt.get_ledger(state.run_id)
            assert [r["step_id"] for r in ledger] == [r.step_id for r in records]
        reports = [report async for report in verify_all(store)]
        assert [(r["run_id"], r["ok"]) for r in reports] == [
            ("approval-1", True),
            ("counter-1", True),
            ("timer-1", True),
        ]
        async with store.engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT run_id, due_at FROM abstractruntime_runs"))
            due = {run_id: due_at for run_id, due_at in rows}
        assert due["approval-1"] is None and due["counter-1"] is not None  # backfilled by 0002
        assert due["timer-1"] is not None

        # The old runs go on with the new code ...
        answered = await rt.resume(
            workflow=APPROVAL,
            run_id="approval-1",
            wait_key="user:approval-1:ask",
            payload={"text": "yes"},
        )
        assert answered.output == {"answer": {"text": "yes"}}
        assert (await rt.tick(workflow=counter(2), run_id="counter-1")).output == {"n": 2}
        # ... and the new tables work for them.
        snap = Snapshot.from_run(run=await rt.get_state("counter-1"), name="old run")
        await store.snapshots.save(snap)
        assert await store.snapshots.list(query="OLD") == [snap]
        assert all([report["ok"] async for report in verify_all(store)])

        # Down again to the revision before the new tables: the runs stay.
        await store.downgrade("0002_due_at")
        async with store.engine.connect() as conn:
            count = await conn.scalar(sa.text("SELECT count(*) FROM abstractruntime_runs"))
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert count == 3 and "abstractruntime_snapshots" not in tables
