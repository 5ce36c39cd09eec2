"""The hot statements name every column the schema has, on both dialects, and bind every value
to its own column: a new column cannot be forgotten in one dialect, nor two arguments swapped.

The column lists below come from ``schema.py``'s tables, never from ``statements.py``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime import RunState, RunStatus, StepRecord, StepStatus, WaitReason, WaitState
from abstractruntime.core.kernel import encode_state
from abstractruntime.core.serde import decode
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql import statements
from abstractruntime.storage.sql.schema import ledger, runs
from abstractruntime.storage.sql.statements import Postgres, Sqlite

RUN_COLUMNS = [column.name for column in runs.columns]
LEDGER_COLUMNS = [column.name for column in ledger.columns]
#: What a step's UPDATE must set: everything but the run's identity and creation time.
STEP_SETS = [name for name in RUN_COLUMNS if name not in ("run_id", "created_at")]

DIALECTS = {
    "postgresql": {
        "insert_run": Postgres.INSERT_RUN,
        "update_run": Postgres.COMMIT_STEP,
        "insert_record": Postgres.COMMIT_STEP,
    },
    "sqlite": {
        "insert_run": Sqlite.INSERT_RUN,
        "update_run": Sqlite.UPDATE_RUN,
        "insert_record": Sqlite.INSERT_RECORD,
    },
}


def inserted_columns(sql: str, table: str) -> list[str]:
    found = re.search(rf"INSERT INTO {table} \(([^)]*)\)", sql)
    assert found, sql
    return [name.strip() for name in found.group(1).split(",")]


def set_columns(sql: str) -> list[str]:
    found = re.search(r"UPDATE abstractruntime_runs SET (.*?) WHERE run_id", sql)
    assert found, sql
    return re.findall(r"(\w+) = ", found.group(1))


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_the_insert_of_a_run_names_every_column_of_runs(dialect: str) -> None:
    sql = DIALECTS[dialect]["insert_run"]
    assert inserted_columns(sql, runs.name) == RUN_COLUMNS


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_the_update_of_a_step_sets_every_column_but_the_run_id_and_created_at(
    dialect: str,
) -> None:
    sql = DIALECTS[dialect]["update_run"]
    assert sorted(set_columns(sql)) == sorted(STEP_SETS)
    assert "version = version + 1" in sql  # bumped, and checked: the optimistic lock
    assert re.search(r"AND version = (\$\d+|\?)", sql), sql


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_the_insert_of_a_ledger_row_names_every_column_of_ledger(dialect: str) -> None:
    sql = DIALECTS[dialect]["insert_record"]
    assert inserted_columns(sql, ledger.name) == LEDGER_COLUMNS


def test_the_postgres_commit_unnests_one_array_per_ledger_column() -> None:
    found = re.search(r"unnest\((.*?)\) AS r\(([^)]*)\)", Postgres.COMMIT_STEP)
    assert found, Postgres.COMMIT_STEP
    arrays = found.group(1).split(", ")
    aliases = [name.strip() for name in found.group(2).split(",")]
    assert aliases == [name for name in LEDGER_COLUMNS if name != "run_id"]
    assert len(arrays) == len(aliases)


def sample() -> tuple[dict[str, Any], dict[str, Any]]:
    """A run row and a ledger row with a value for every column of the schema."""
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    run = {name: f"<{name}>" for name in RUN_COLUMNS} | {"created_at": now, "version": 0}
    record = {name: f"<{name}>" for name in LEDGER_COLUMNS} | {"seq": 0, "attempt": 1}
    return run, record


def placeholders(sql: str, dialect: str) -> int:
    """How many arguments the text binds."""
    if dialect == "sqlite":
        return sql.count("?")
    return max(int(n) for n in re.findall(r"\$(\d+)", sql))


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_hot_statement_gets_as_many_arguments_as_it_binds(dialect: str) -> None:
    run, record = sample()
    now = run["created_at"]
    pg = dialect == "postgresql"
    cases: list[tuple[str, tuple[Any, ...]]] = [
        (
            Postgres.INSERT_RUN if pg else Sqlite.INSERT_RUN,
            (*statements.insert_run_args(run), True) if pg else statements.insert_run_args(run),
        ),
        (
            Postgres.CLAIM_RUN if pg else Sqlite.CLAIM_RUN,
            statements.claim_run_args("r", "me", now, now),
        ),
        (
            Postgres.CLAIM_DUE if pg else Sqlite.claim_due(None),
            statements.claim_due_args("me", now, now, 10),
        ),
        (
            Postgres.CLAIM_DUE_FILTERED if pg else Sqlite.claim_due(3),
            statements.claim_due_args(
                "me", now, now, 10, statements.served_args([("a", "1"), ("b", "1"), ("c", "2")], pg)
            ),
        ),
        (
            Postgres.RELEASE if pg else Sqlite.RELEASE,
            statements.release_args("r", "me", 1, now),
        ),
        (
            Postgres.RENEW if pg else Sqlite.RENEW,
            statements.renew_args("me", now, ["r"] if pg else "r"),
        ),
    ]
    if pg:
        args = statements.commit_step_args(
            "r", 0, run, [record], notify=True, parent_due=("p", now)
        )
        cases.append((Postgres.COMMIT_STEP, args))
    else:
        cases.append((Sqlite.UPDATE_RUN, statements.update_run_args("r", 0, run)))
        cases.append((Sqlite.INSERT_RECORD, statements.record_args(record)))
    for sql, args in cases:
        assert placeholders(sql, dialect) == len(args), sql


# -- every value lands in its own column, through each backend ---------------------------------


def _state(run_id: str, *, at: datetime) -> RunState:
    return RunState(
        run_id=run_id,
        workflow_id="wf-columns",
        status=RunStatus.WAITING,
        current_node="node-a",
        vars={"k": 1},
        waiting=WaitState(reason=WaitReason.UNTIL, wait_key="key-a", until=at + timedelta(hours=1)),
        created_at=at,
        updated_at=at + timedelta(seconds=1),
        actor_id="actor-a",
        session_id="session-a",
        parent_run_id="parent-a",
    )


async def row_of(store: SqlStore, table: sa.Table, **where: Any) -> dict[str, Any]:
    query = sa.select(table).where(*(table.c[name] == value for name, value in where.items()))
    async with store.engine.connect() as conn:
        return dict((await conn.execute(query)).one()._mapping)


async def test_every_value_is_stored_in_its_own_column(db_url: str) -> None:
    """Distinct values in every column of a run and of a ledger row, through the dialect's
    hot path (create, commit), then read back by SQLAlchemy column by column."""
    at = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)
    lease_until = at + timedelta(minutes=5)
    async with SqlStore(db_url) as store:
        await store.check()
        state = _state("run-columns", at=at)
        handle = await store.create_run(state, encode_state(state), lease=("owner-a", lease_until))
        row = await row_of(store, runs, run_id="run-columns")
        expected = {
            **statements.run_values(state, encode_state(state)),
            "run_id": "run-columns",
            "created_at": at,
            "version": 0,
            "ledger_seq": 0,
            "ledger_head": None,
            "lease_owner": "owner-a",
            "lease_expires_at": lease_until,
            "due_at": lease_until,
        }
        expected["state"] = decode(expected["state"])
        assert set(row) == set(RUN_COLUMNS)
        assert row == expected

        # A step that keeps the run running and the lease, with a record in every column.
        later = at + timedelta(minutes=1)
        step = RunState.from_dict(state.to_dict())
        step.status, step.waiting, step.current_node = RunStatus.RUNNING, None, "node-b"
        step.updated_at = later
        record = StepRecord(
            run_id="run-columns",
            step_id="step-a",
            node_id="node-a",
            status=StepStatus.COMPLETED,
            started_at=later - timedelta(seconds=2),
            ended_at=later,
            attempt=3,
            idempotency_key="idem-a",
        )
        renewed = later + timedelta(minutes=5)
        committed = await store.commit_step(
            handle, step, encode_state(step), [record], now=later, lease_until=renewed
        )
        row = await row_of(store, runs, run_id="run-columns")
        expected = {
            **statements.run_values(step, encode_state(step)),
            "run_id": "run-columns",
            "created_at": at,
            "version": 1,
            "ledger_seq": 1,
            "ledger_head": committed.head,
            "lease_owner": "owner-a",
            "lease_expires_at": renewed,
            "due_at": renewed,
        }
        expected["state"] = decode(expected["state"])
        assert row == expected

        entry = await row_of(store, ledger, run_id="run-columns", seq=0)
        stored = (await store.get_ledger("run-columns"))[0]
        assert set(entry) == set(LEDGER_COLUMNS)
        assert entry == {
            "run_id": "run-columns",
            "seq": 0,
            "step_id": "step-a",
            "node_id": "node-a",
            "status": "completed",
            "attempt": 3,
            "idempotency_key": "idem-a",
            "prev_hash": None,
            "record_hash": committed.head,
            "created_at": later,
            "record": stored,
        }
        assert stored["record_hash"] == committed.head

        # The next record chains onto it: prev_hash holds the head.
        second = StepRecord(
            run_id="run-columns",
            step_id="step-b",
            node_id="node-b",
            status=StepStatus.COMPLETED,
            started_at=later,
            ended_at=later,
        )
        again = await store.commit_step(
            committed, step, encode_state(step), [second], now=later, lease_until=renewed
        )
        entry = await row_of(store, ledger, run_id="run-columns", seq=1)
        assert (entry["prev_hash"], entry["record_hash"]) == (committed.head, again.head)
