"""Every SQL statement of ``SqlStore``, built from the tables of ``schema``.

Two kinds:

- **Hot** statements, the writes every step makes (create, claim, commit a step, release,
  renew): SQL text, built once at import for each dialect (``Postgres``, ``Sqlite``) and run on
  the raw drivers by the two backends (``postgres.py`` on asyncpg, ``sqlite.py`` on its writer
  thread). Their column lists and order come from ``schema.runs`` / ``schema.ledger``, never
  typed again, and so do their arguments (``insert_run_args``, ``update_run_args``...): a
  statement and the tuple bound to it are built from the same list, so they cannot drift apart.
- **Cold** statements (reads, listings, snapshots, artifacts, schedules, the schema checks):
  SQLAlchemy Core, run on the engine by ``store.py``, ``snapshots.py``, ``artifacts.py`` and
  ``schedules.py``.

The projections of a run state, a ledger record and a snapshot onto their rows are here too
(``run_values``, ``record_values``, ``snapshot_values``), once.

The dialects differ only where they must: placeholders (``$n`` for asyncpg, ``?`` for sqlite3;
every statement takes its arguments in the order its text names them, so one template serves
both and the same arguments bind on both), ``FOR UPDATE SKIP LOCKED`` (concurrent Postgres
workers take disjoint batches; SQLite has one writer), ``pg_notify`` to wake idle workers, and
how lists travel: Postgres arrays (``unnest``, ``= ANY``) inside one statement, ``executemany``
or a placeholder per item on SQLite. Transaction control (``BEGIN IMMEDIATE``, savepoints,
``COMMIT``) stays with the code that manages transactions: the SQLite writer and the engine's
begin hook.

This module is longer than the house's ~600 lines on purpose: it is the catalogue of every
statement (procrastinate keeps its ``queries.sql`` whole for the same reason); split, it would
stop being the one place to read them.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ...core.artifacts import ArtifactMetadata
from ...core.kernel import due_at
from ...core.ledger import chain_records
from ...core.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from ...core.ports import RunHandle, Served
from ...core.schedules import Schedule
from ...core.serde import canonical_json, encode
from ...core.snapshot import Snapshot, fold
from ...core.timeouts import deadline_of
from .schema import (
    RawJSON,
    artifact_tags,
    artifacts,
    emits,
    event_deliveries,
    events,
    ledger,
    messages,
    runs,
    schedules,
    snapshot_tags,
    snapshots,
    workers,
)

#: Channel of the NOTIFY sent when a run becomes due; idle Postgres workers LISTEN on it.
NOTIFY_CHANNEL = "abstractruntime_due"

# -- columns, from the schema ------------------------------------------------------------------

RUN_COLUMNS: tuple[str, ...] = tuple(column.name for column in runs.columns)
LEDGER_COLUMNS: tuple[str, ...] = tuple(column.name for column in ledger.columns)
#: What a step's commit sets: every column of the run but its identity, its creation time and
#: its version (which the statement bumps, and checks).
STEP_COLUMNS: tuple[str, ...] = tuple(
    name for name in RUN_COLUMNS if name not in ("run_id", "created_at", "version")
)
#: A ledger row's columns that come from its record (``run_id`` comes from the run).
RECORD_COLUMNS: tuple[str, ...] = tuple(name for name in LEDGER_COLUMNS if name != "run_id")
#: What a claim returns, and ``load_run`` reads: the state as stored, and what the next commit
#: needs (``store.py`` turns it into a ``RunHandle``).
HANDLE_COLUMNS: tuple[str, ...] = ("state", "version", "ledger_seq", "ledger_head")

# The argument builders below read a row's values in these orders at C speed (they run for
# every step): itemgetter of two or more names returns a tuple.
_RUN_GETTER = operator.itemgetter(*RUN_COLUMNS)
_STEP_GETTER = operator.itemgetter(*STEP_COLUMNS)
_LEDGER_GETTER = operator.itemgetter(*LEDGER_COLUMNS)

#: A handle row: (state JSON, version, ledger length, ledger head).
HandleRow = tuple[str, int, int, "str | None"]


def _is_json(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.JSON)


# -- projections onto rows ---------------------------------------------------------------------


def run_values(state: RunState, state_json: str) -> dict[str, Any]:
    """The columns of a run's row that project its state: the JSON itself and the fields that
    are indexed (status, wait, parent...). The caller adds the bookkeeping columns."""
    waiting = state.waiting
    return {
        "workflow_id": state.workflow_id,
        "workflow_version": state.workflow_version,
        "status": state.status.value,
        "current_node": state.current_node,
        "wait_reason": waiting.reason.value if waiting else None,
        "wait_key": waiting.wait_key if waiting else None,
        # When the wait ends by itself: ``until``, or a timeout (``list_runs(order="deadline")``).
        "wait_until": deadline_of(waiting),
        "parent_run_id": state.parent_run_id,
        "actor_id": state.actor_id,
        "session_id": state.session_id,
        "updated_at": state.updated_at,
        "state": state_json,
    }


def cold_commit_values(
    handle: RunHandle,
    state: RunState,
    state_json: str,
    records: Sequence[StepRecord],
    now: datetime,
    lease_until: datetime | None,
    max_record_bytes: int | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's columns and its new ledger rows for a step committed on the cold path (a
    delivery, a limited step) with SQLAlchemy Core: the records chained onto ``handle``'s
    head, the lease kept while the run runs (``lease_until``), else released with the due
    time the state says."""
    dicts, head = chain_records(records, handle.head, max_record_bytes)
    rows = []
    for offset, (data, record) in enumerate(zip(dicts, records, strict=True)):
        row = record_values(state.run_id, handle.seq + offset, data, record)
        row["record"] = RawJSON(row["record"])
        rows.append(row)
    keep = lease_until is not None and state.status is RunStatus.RUNNING
    values = run_values(state, state_json)
    values.update(
        state=RawJSON(state_json),
        ledger_seq=handle.seq + len(rows),
        ledger_head=head,
        lease_owner=handle.owner if keep else None,
        lease_expires_at=lease_until if keep else None,
        due_at=lease_until if keep else due_at(state, now, committing=True),
    )
    return values, rows


def committed_handle(
    handle: RunHandle, state: RunState, state_json: str, values: dict[str, Any]
) -> RunHandle:
    """The handle of a run after a commit of ``cold_commit_values``' ``values``."""
    seq, head, owner = values["ledger_seq"], values["ledger_head"], values["lease_owner"]
    return RunHandle(state, handle.version + 1, seq, head, state_json, owner)


def record_values(
    run_id: str, seq: int, data: Mapping[str, Any], record: StepRecord
) -> dict[str, Any]:
    """A ledger row: ``data``, the chained dict of ``record``, at position ``seq``."""
    return {
        "run_id": run_id,
        "seq": seq,
        "step_id": data["step_id"],
        "node_id": data["node_id"],
        "status": data["status"],
        "attempt": data["attempt"],
        "idempotency_key": data["idempotency_key"],
        "prev_hash": data["prev_hash"],
        "record_hash": data["record_hash"],
        "created_at": record.ended_at or record.started_at,
        "record": canonical_json(data),
    }


def snapshot_values(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot's row (its tags go to ``snapshot_tags``, case-folded)."""
    return {
        "snapshot_id": snapshot.snapshot_id,
        "run_id": snapshot.run_id,
        "step_id": snapshot.step_id,
        "name": snapshot.name,
        "description": snapshot.description,
        "tags": list(snapshot.tags),
        "created_at": snapshot.created_at,
        "updated_at": snapshot.updated_at,
        "search_name": fold(snapshot.name),
        "search_description": None if snapshot.description is None else fold(snapshot.description),
        # Encoded here so a value JSON cannot hold fails with the key that holds it.
        "run_state": RawJSON(encode(snapshot.run_state, root="run_state")),
    }


# -- hot statements ----------------------------------------------------------------------------
#
# Each statement takes its arguments in the order its text names them, so that one builder
# serves both dialects: ``$1, $2...`` on Postgres, plain ``?`` on SQLite (numbered ``?NNN``
# placeholders draw a DeprecationWarning from some Python versions' sqlite3). A value the text
# needs twice is passed twice. Next to each text, the function that builds its arguments.

_RUNS = runs.name
_LEDGER = ledger.name


class _Params:
    """The placeholders of one statement, numbered in the order of its text."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        self.count = 0

    def __call__(self, column: sa.Column[Any] | None = None) -> str:
        self.count += 1
        if not self.postgres:
            return "?"
        return (
            f"${self.count}::json" if column is not None and _is_json(column) else f"${self.count}"
        )


_HANDLE = ", ".join(
    f"CAST({name} AS TEXT)" if _is_json(runs.c[name]) else name for name in HANDLE_COLUMNS
)


def _insert_run(p: _Params) -> str:
    values = ", ".join(p(runs.c[name]) for name in RUN_COLUMNS)
    return f"INSERT INTO {_RUNS} ({', '.join(RUN_COLUMNS)}) VALUES ({values})"


def insert_run_args(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """Every column of the new run, in the table's order."""
    return _RUN_GETTER(values)  # type: ignore[no-any-return]


def _update_run(p: _Params) -> str:
    """A step's update of its run, under the version check (the optimistic lock)."""
    sets = ", ".join(f"{name} = {p(runs.c[name])}" for name in STEP_COLUMNS)
    return (
        f"UPDATE {_RUNS} SET {sets}, version = version + 1 WHERE run_id = {p()} AND version = {p()}"
    )


def update_run_args(run_id: str, version: int, values: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``STEP_COLUMNS`` of the run, its id, and the version the step read."""
    return (*_STEP_GETTER(values), run_id, version)


def _insert_record(p: _Params) -> str:
    values = ", ".join(p(ledger.c[name]) for name in LEDGER_COLUMNS)
    return f"INSERT INTO {_LEDGER} ({', '.join(LEDGER_COLUMNS)}) VALUES ({values})"


def record_args(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Every column of a ledger row, in the table's order."""
    return _LEDGER_GETTER(row)  # type: ignore[no-any-return]


def _mark_parent_due(p: _Params) -> str:
    """A child ended: make its waiting parent due (bumping its version, so that a worker that
    holds the parent and is about to release it keeps it due). Arguments: when, the parent."""
    return (
        f"UPDATE {_RUNS} SET due_at = {p()}, version = version + 1 WHERE run_id = {p()} AND "
        f"status = '{RunStatus.WAITING.value}' AND wait_reason = '{WaitReason.SUBWORKFLOW.value}'"
    )


def _unleased(p: _Params) -> str:
    return f"(lease_expires_at IS NULL OR lease_expires_at <= {p()})"


def _claim(p: _Params) -> str:
    """The start of a claim: the owner, and the lease's end (twice: the run is due again then,
    should its owner die)."""
    return (
        f"UPDATE {_RUNS} SET lease_owner = {p()}, lease_expires_at = {p()}, due_at = {p()}, "
        "version = version + 1 WHERE "
    )


def _claim_run(p: _Params) -> str:
    return f"{_claim(p)}run_id = {p()} AND {_unleased(p)} RETURNING {_HANDLE}"


def claim_run_args(
    run_id: str, owner: str, now: datetime, lease_until: datetime
) -> tuple[Any, ...]:
    return (owner, lease_until, lease_until, run_id, now)


def _served(p: _Params, workflows: int | None) -> str:
    """`` AND`` the run's workflow and version are among those a worker serves (``None``: no
    filter): two parallel Postgres arrays, or ``workflows`` pairs of placeholders on SQLite."""
    if workflows is None:
        return ""
    if p.postgres:
        pairs = f"SELECT * FROM unnest({p()}::text[], {p()}::text[])"
    else:
        pairs = "VALUES " + ", ".join(f"({p()}, {p()})" for _ in range(workflows))
    return f" AND (workflow_id, workflow_version) IN ({pairs})"


def served_args(workflows: Served | None, postgres: bool) -> tuple[Any, ...]:
    """The arguments of ``_served``: ``()``, two arrays on Postgres, the flat pairs on SQLite."""
    if workflows is None:
        return ()
    if postgres:
        return ([w for w, _ in workflows], [v for _, v in workflows])
    return tuple(value for pair in workflows for value in pair)


def _claim_due(p: _Params, workflows: int | None) -> str:
    """Claim up to a limit of due, unclaimed runs, oldest due first, by the ``due_at`` index
    (that may be filtered by the workflow versions a worker serves, ``_served``). SKIP LOCKED:
    concurrent Postgres workers take disjoint batches instead of queueing on row locks; SQLite
    has one writer."""
    claim = _claim(p)
    due = f"due_at <= {p()} AND {_unleased(p)}"
    only = _served(p, workflows)
    lock = " FOR UPDATE SKIP LOCKED" if p.postgres else ""
    return (
        f"{claim}run_id IN (SELECT run_id FROM {_RUNS} WHERE {due}{only} ORDER BY due_at "
        f"LIMIT {p()}{lock}) RETURNING {_HANDLE}"
    )


def claim_due_args(
    owner: str, now: datetime, lease_until: datetime, limit: int, served: Sequence[Any] = ()
) -> tuple[Any, ...]:
    """``served``: ``served_args`` of the worker's workflow versions."""
    return (owner, lease_until, lease_until, now, now, *served, limit)


def _release(p: _Params) -> str:
    """Give up a lease: the run is due at the given time, unless it changed since the owner
    claimed it (a child marked it due), which keeps its ``due_at``."""
    return (
        f"UPDATE {_RUNS} SET lease_owner = NULL, lease_expires_at = NULL, due_at = CASE WHEN "
        f"version = {p()} THEN {p()} ELSE due_at END WHERE run_id = {p()} AND lease_owner = {p()}"
    )


def release_args(
    run_id: str, owner: str | None, version: int, due: datetime | None
) -> tuple[Any, ...]:
    return (version, due, run_id, owner)


def _renew(p: _Params) -> str:
    """Extend a lease (and the due time that follows it): one run id on SQLite (a statement
    each, in one writer transaction), an array of them on Postgres, where the rows another
    transaction holds locked are skipped, not waited for (one blocked row must not make every
    lease of the worker lapse); returns the ids renewed."""
    until, due, owner = p(), p(), p()
    if not p.postgres:
        return (
            f"UPDATE {_RUNS} SET lease_expires_at = {until}, due_at = {due} WHERE "
            f"lease_owner = {owner} AND run_id = {p()}"
        )
    mine = (
        f"SELECT run_id FROM {_RUNS} WHERE run_id = ANY({p()}::text[]) AND lease_owner = {owner} "
        "FOR UPDATE SKIP LOCKED"
    )
    return (
        f"UPDATE {_RUNS} SET lease_expires_at = {until}, due_at = {due} "
        f"WHERE run_id IN ({mine}) RETURNING run_id"
    )


def renew_args(owner: str, lease_until: datetime, run_ids: Any) -> tuple[Any, ...]:
    """``run_ids``: a list (Postgres) or one id (SQLite)."""
    return (lease_until, lease_until, owner, run_ids)


def _lease_of(p: _Params) -> str:
    """Who holds a run, and until when."""
    return f"SELECT lease_owner, lease_expires_at FROM {_RUNS} WHERE run_id = {p()}"


def _run_exists(p: _Params) -> str:
    return f"SELECT 1 FROM {_RUNS} WHERE run_id = {p()}"


def _build(dialect: str, build: Any, *args: Any) -> str:
    return str(build(_Params(dialect), *args))


# Postgres only: the NOTIFYs, and the step as one statement.


def _notify(rows: str, when: str | None = None) -> str:
    where = f" WHERE {when}" if when else ""
    return f"SELECT pg_notify('{NOTIFY_CHANNEL}', run_id) FROM {rows}{where}"


def _pg_array_type(column: sa.Column[Any]) -> str:
    """The Postgres type of an array of a column's values: unbounded (an explicit cast to
    ``varchar(n)`` would cut a value short; the insert's assignment checks the length)."""
    kind = column.type
    if isinstance(kind, sa.DateTime) or isinstance(getattr(kind, "impl", None), sa.DateTime):
        return "timestamptz"
    if isinstance(kind, sa.BigInteger):
        return "bigint"
    if isinstance(kind, sa.Integer):
        return "int"
    if isinstance(kind, (sa.String, sa.JSON)):
        return "text"
    raise TypeError(f"no array type for column {column.name} ({kind})")  # a new column type


def _pg_commit_step() -> str:
    """A whole step as ONE statement: its data-modifying CTEs update the run under the version
    check, append the ledger rows (one array per column), mark a waiting parent due and NOTIFY
    idle workers. A single statement is its own transaction: one round trip per step."""
    p = _Params("postgresql")
    update = _update_run(p)
    arrays = ", ".join(f"{p()}::{_pg_array_type(ledger.c[name])}[]" for name in RECORD_COLUMNS)
    selected = ", ".join(
        "upd.run_id"
        if name == "run_id"
        else f"r.{name}::json"
        if _is_json(ledger.c[name])
        else f"r.{name}"
        for name in LEDGER_COLUMNS
    )
    parent = _mark_parent_due(p)
    woken = f"(SELECT run_id FROM upd WHERE {p()}::boolean UNION ALL SELECT run_id FROM parent) w"
    return (
        f"WITH upd AS ({update} RETURNING run_id), "
        f"ins AS (INSERT INTO {_LEDGER} ({', '.join(LEDGER_COLUMNS)}) SELECT {selected} "
        f"FROM upd, unnest({arrays}) AS r({', '.join(RECORD_COLUMNS)}) RETURNING 1), "
        f"parent AS ({parent} AND EXISTS (SELECT 1 FROM upd) RETURNING run_id), "
        f"woken AS ({_notify(woken)}) "
        "SELECT (SELECT count(*) FROM upd) AS updated, (SELECT count(*) FROM woken) AS woken"
    )


def commit_step_args(
    run_id: str,
    version: int,
    values: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    notify: bool,
    parent_due: tuple[str, datetime] | None,
) -> tuple[Any, ...]:
    """The update's, one array per ``RECORD_COLUMNS``, the parent to mark due (when, which),
    and whether to NOTIFY for the run itself."""
    parent_id, parent_at = parent_due if parent_due is not None else (None, None)
    return (
        *update_run_args(run_id, version, values),
        *([row[name] for row in rows] for name in RECORD_COLUMNS),
        parent_at,
        parent_id,
        notify,
    )


def _pg_insert_run() -> str:
    """The insert, and a NOTIFY when asked (the run is due: the last argument)."""
    p = _Params("postgresql")
    insert = _insert_run(p)
    return f"WITH ins AS ({insert} RETURNING run_id) {_notify('ins', f'{p()}::boolean')}"


def _pg_release() -> str:
    """The release, and a NOTIFY when the run has a due time (its second argument)."""
    return (
        f"WITH rel AS ({_build('postgresql', _release)} RETURNING run_id) "
        f"{_notify('rel', '$2::timestamptz IS NOT NULL')}"
    )


class Postgres:
    """The hot statements on asyncpg."""

    #: Arguments: ``insert_run_args``, then whether to NOTIFY.
    INSERT_RUN = _pg_insert_run()
    #: Arguments: ``commit_step_args``. Returns (runs updated, workers woken).
    COMMIT_STEP = _pg_commit_step()
    #: Arguments: ``claim_run_args``. Returns the ``HANDLE_COLUMNS``.
    CLAIM_RUN = _build("postgresql", _claim_run)
    #: Arguments: the run id.
    LEASE_OF = _build("postgresql", _lease_of)
    #: Arguments: ``claim_due_args``; ``CLAIM_DUE_FILTERED`` takes the served workflow
    #: versions as two arrays (``served_args``).
    CLAIM_DUE = _build("postgresql", _claim_due, None)
    CLAIM_DUE_FILTERED = _build("postgresql", _claim_due, 1)
    #: Arguments: ``release_args``.
    RELEASE = _pg_release()
    #: Arguments: ``renew_args`` with a list of run ids.
    RENEW = _build("postgresql", _renew)
    #: Arguments: the run id.
    RUN_EXISTS = _build("postgresql", _run_exists)


class Sqlite:
    """The hot statements on the SQLite writer thread, where a step is several statements in
    one transaction (the writer's)."""

    #: Arguments: ``insert_run_args``.
    INSERT_RUN = _build("sqlite", _insert_run)
    #: Arguments: ``update_run_args``.
    UPDATE_RUN = _build("sqlite", _update_run)
    #: Arguments: ``record_args``; an executemany.
    INSERT_RECORD = _build("sqlite", _insert_record)
    #: Arguments: when the parent is due, the parent's id.
    MARK_PARENT_DUE = _build("sqlite", _mark_parent_due)
    #: Arguments: ``claim_run_args``. Returns the ``HANDLE_COLUMNS``.
    CLAIM_RUN = _build("sqlite", _claim_run)
    LEASE_OF = _build("sqlite", _lease_of)
    #: Arguments: ``release_args``.
    RELEASE = _build("sqlite", _release)
    #: Arguments: ``renew_args`` with one run id; an executemany.
    RENEW = _build("sqlite", _renew)
    RUN_EXISTS = _build("sqlite", _run_exists)

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def claim_due(workflows: int | None) -> str:
        """The claim of due runs, filtered by that many workflow ids (``None``: unfiltered);
        arguments: ``claim_due_args``. Built once per count."""
        return _build("sqlite", _claim_due, workflows)


# -- cold statements (SQLAlchemy Core) ---------------------------------------------------------


def _handle_select() -> sa.Select[Any]:
    return sa.select(
        *(
            sa.cast(runs.c[name], sa.Text).label(name) if _is_json(runs.c[name]) else runs.c[name]
            for name in HANDLE_COLUMNS
        )
    )


def load_run_query(run_id: str) -> sa.Select[Any]:
    """A run's ``HANDLE_COLUMNS``."""
    return _handle_select().where(runs.c.run_id == run_id)


def run_exists_query(run_id: str) -> sa.Select[Any]:
    return sa.select(sa.literal(1)).where(runs.c.run_id == run_id)


def ledger_query(run_id: str) -> sa.Select[Any]:
    """A run's records, oldest first."""
    return (
        sa.select(sa.cast(ledger.c.record, sa.Text))
        .where(ledger.c.run_id == run_id)
        .order_by(ledger.c.seq)
    )


def ledger_tail_query(run_id: str) -> sa.Select[Any]:
    """A run's newest record."""
    return (
        sa.select(sa.cast(ledger.c.record, sa.Text))
        .where(ledger.c.run_id == run_id)
        .order_by(ledger.c.seq.desc())
        .limit(1)
    )


def find_effect_query(run_id: str, idempotency_key: str) -> sa.Select[Any]:
    """The newest completed record of ``run_id`` with ``idempotency_key``, by the ledger's
    (run_id, idempotency_key) index."""
    return (
        sa.select(sa.cast(ledger.c.record, sa.Text))
        .where(
            ledger.c.run_id == run_id,
            ledger.c.idempotency_key == idempotency_key,
            ledger.c.status == StepStatus.COMPLETED.value,
        )
        .order_by(ledger.c.seq.desc())
        .limit(1)
    )


#: The ledger's columns beside the record JSON: what a record's fields are indexed as, which
#: ``ledger verify`` compares with the hashed record (``ledger_scan_query(with_columns=True)``).
LEDGER_INDEXED_COLUMNS: tuple[str, ...] = tuple(name for name in LEDGER_COLUMNS if name != "record")


def ledger_scan_query(run_id: str | None = None, *, with_columns: bool = False) -> sa.Select[Any]:
    """Every run (or one) with its ledger head and its records in order, runs without records
    included (a LEFT JOIN row with no record); both primary keys give the order.

    A row is ``(run_id, ledger_seq, ledger_head, record)``, and ``with_columns`` adds the
    ledger row's ``LEDGER_INDEXED_COLUMNS`` after the record, in that order."""
    extra = [ledger.c[name].label(f"ledger_{name}") for name in LEDGER_INDEXED_COLUMNS]
    query = (
        sa.select(
            runs.c.run_id,
            runs.c.ledger_seq,
            runs.c.ledger_head,
            sa.cast(ledger.c.record, sa.Text).label("record"),
            *(extra if with_columns else ()),
        )
        .select_from(runs.outerjoin(ledger, ledger.c.run_id == runs.c.run_id))
        .order_by(runs.c.run_id, ledger.c.seq)
    )
    return query if run_id is None else query.where(runs.c.run_id == run_id)


def next_due_query(workflows: Served | None = None) -> sa.Select[Any]:
    """The earliest ``due_at`` (the first entry of the index) of the runs of ``workflows``
    (``(workflow_id, version)`` pairs; None: of every run)."""
    query = sa.select(sa.func.min(runs.c.due_at))
    if workflows is not None:
        query = query.where(
            sa.tuple_(runs.c.workflow_id, runs.c.workflow_version).in_(list(workflows))
        )
    return query


def list_runs_query(
    *,
    status: RunStatus | None,
    workflow_id: str | None,
    wait_reason: WaitReason | None,
    wait_key: str | None,
    parent_run_id: str | None,
    limit: int,
    due_by: datetime | None = None,
    deadline: bool | None = None,
    deadline_before: datetime | None = None,
    workflow_version: str | None = None,
    after: tuple[datetime, str] | None = None,
) -> sa.Select[Any]:
    """The states of the runs passing every given filter, most recently updated first (then
    by run id; ``after``: only the runs following that ``(updated_at, run_id)`` key); with
    ``due_by``, the runs waiting until a time at or before it, earliest first.

    ``deadline=True``: only runs with a deadline (``wait_until``: a wait's ``until`` or its
    ``timeout_at``), earliest first, at or before ``deadline_before`` if given (with
    ``status="waiting"``, a range of the ``(status, wait_until)`` index); ``deadline=False``:
    the runs without one, most recently updated first."""
    query = sa.select(sa.cast(runs.c.state, sa.Text))
    if status is not None:
        query = query.where(runs.c.status == RunStatus(status).value)
    if workflow_id is not None:
        query = query.where(runs.c.workflow_id == workflow_id)
    if workflow_version is not None:
        query = query.where(runs.c.workflow_version == workflow_version)
    if wait_reason is not None:
        query = query.where(runs.c.wait_reason == WaitReason(wait_reason).value)
    if wait_key is not None:
        query = query.where(runs.c.wait_key == wait_key)
    if parent_run_id is not None:
        query = query.where(runs.c.parent_run_id == parent_run_id)
    if due_by is not None:
        query = query.where(
            runs.c.status == RunStatus.WAITING.value,
            runs.c.wait_reason == WaitReason.UNTIL.value,
            runs.c.wait_until <= due_by,
        )
        return query.order_by(runs.c.wait_until, runs.c.run_id).limit(limit)
    if deadline is not None:
        if not deadline:
            query = query.where(runs.c.wait_until.is_(None))
        else:
            query = query.where(runs.c.wait_until.is_not(None))
            if deadline_before is not None:
                query = query.where(runs.c.wait_until <= deadline_before)
            # By the deadline alone, the index's order: a tie-breaker would make a sort.
            return query.order_by(runs.c.wait_until).limit(limit)
    if after is not None:
        query = query.where(
            sa.or_(
                runs.c.updated_at < after[0],
                sa.and_(runs.c.updated_at == after[0], runs.c.run_id > after[1]),
            )
        )
    return query.order_by(runs.c.updated_at.desc(), runs.c.run_id).limit(limit)


# Snapshots

_SNAPSHOT_COLUMNS = tuple(
    sa.cast(column, sa.Text).label(column.name) if column.name == "run_state" else column
    for column in snapshots.columns
    if not column.name.startswith("search_")
)


def upsert_snapshot(dialect: str, values: dict[str, Any]) -> sa.Insert:
    """Insert the snapshot, or replace every column but its id and ``created_at``; returns the
    ``created_at`` that is stored."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(snapshots).values(values)
    keep = {"snapshot_id", "created_at"}
    return statement.on_conflict_do_update(
        index_elements=[snapshots.c.snapshot_id],
        set_={name: statement.excluded[name] for name in values if name not in keep},
    ).returning(snapshots.c.created_at)


def delete_snapshot_tags(snapshot_id: str) -> sa.Delete:
    return snapshot_tags.delete().where(snapshot_tags.c.snapshot_id == snapshot_id)


def insert_snapshot_tags() -> sa.Insert:
    """Parameters: one ``{"snapshot_id", "tag"}`` per tag (an executemany)."""
    return snapshot_tags.insert()


def delete_snapshot(snapshot_id: str) -> sa.Delete:
    return snapshots.delete().where(snapshots.c.snapshot_id == snapshot_id)


def load_snapshot_query(snapshot_id: str) -> sa.Select[Any]:
    return sa.select(*_SNAPSHOT_COLUMNS).where(snapshots.c.snapshot_id == snapshot_id)


def list_snapshots_query(
    *,
    run_id: str | None = None,
    tag: str | None = None,
    query: str | None = None,
    limit: int | None = 100,
    after: tuple[datetime, str] | None = None,
) -> sa.Select[Any]:
    """The snapshots passing every given filter, newest first (after the keyset ``after``:
    ``(created_at, snapshot_id)``)."""
    select = sa.select(*_SNAPSHOT_COLUMNS)
    if after is not None:
        at, snapshot_id = after
        select = select.where(
            sa.or_(
                snapshots.c.created_at < at,
                sa.and_(snapshots.c.created_at == at, snapshots.c.snapshot_id < snapshot_id),
            )
        )
    if run_id is not None:
        select = select.where(snapshots.c.run_id == run_id)
    if tag is not None:
        tagged = sa.select(snapshot_tags.c.snapshot_id).where(
            snapshot_tags.c.tag == fold(tag.strip())
        )
        select = select.where(snapshots.c.snapshot_id.in_(tagged))
    if query is not None:
        # LIKE '%' || :needle || '%' ESCAPE '/', with '%', '_' and '/' escaped in :needle.
        needle = fold(query)
        select = select.where(
            sa.or_(
                snapshots.c.search_name.contains(needle, autoescape=True),
                snapshots.c.search_description.contains(needle, autoescape=True),
            )
        )
    select = select.order_by(snapshots.c.created_at.desc(), snapshots.c.snapshot_id.desc())
    return select if limit is None else select.limit(max(limit, 0))


# Schedules

#: What a new definition replaces (the fire state and ``created_at`` stay).
_SCHEDULE_DEFINITION = ("workflow_id", "cron", "timezone", "catch_up", "vars")


def schedule_values(schedule: Schedule) -> dict[str, Any]:
    """A schedule's row (version 0: a new row)."""
    return {
        "name": schedule.name,
        "workflow_id": schedule.workflow_id,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "catch_up": schedule.catch_up,
        "vars": schedule.vars_json,
        "next_fire_at": schedule.next_fire_at,
        "last_run_id": schedule.last_run_id,
        "last_fired_at": schedule.last_fired_at,
        "version": 0,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


def insert_schedule_if_absent(dialect: str, values: dict[str, Any]) -> sa.Insert:
    """Insert the schedule unless one has its name; returns the name when it inserted."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(schedules)
        .values(values)
        .on_conflict_do_nothing(index_elements=[schedules.c.name])
        .returning(schedules.c.name)
    )


def redefine_schedule(values: dict[str, Any]) -> sa.Update:
    """Replace the definition and the next fire time of the schedule named in ``values``, only
    if its stored definition differs (redeclaring the same one writes nothing)."""
    c = schedules.c
    return (
        schedules.update()
        .where(
            c.name == values["name"],
            sa.not_(sa.and_(*(c[name] == values[name] for name in _SCHEDULE_DEFINITION))),
        )
        .values(
            {
                **{name: values[name] for name in (*_SCHEDULE_DEFINITION, "next_fire_at")},
                "updated_at": values["updated_at"],
                "version": c.version + 1,
            }
        )
    )


def load_schedule_query(name: str) -> sa.Select[Any]:
    return sa.select(schedules).where(schedules.c.name == name)


def list_schedules_query() -> sa.Select[Any]:
    return sa.select(schedules).order_by(schedules.c.name)


def delete_schedule(name: str) -> sa.Delete:
    return schedules.delete().where(schedules.c.name == name)


def due_schedules_query(
    now: datetime, limit: int, workflow_ids: Sequence[str] | None = None
) -> sa.Select[Any]:
    """The schedules due at ``now``, earliest first: a range scan of the next_fire_at index."""
    select = sa.select(schedules).where(schedules.c.next_fire_at <= now)
    if workflow_ids is not None:
        select = select.where(schedules.c.workflow_id.in_(list(workflow_ids)))
    return select.order_by(schedules.c.next_fire_at).limit(max(limit, 0))


def next_fire_query(workflow_ids: Sequence[str] | None = None) -> sa.Select[Any]:
    select = sa.select(sa.func.min(schedules.c.next_fire_at))
    if workflow_ids is not None:
        select = select.where(schedules.c.workflow_id.in_(list(workflow_ids)))
    return select


def advance_schedule(
    name: str,
    version: int,
    next_fire_at: datetime,
    last_run_id: str | None,
    last_fired_at: datetime | None,
) -> sa.Update:
    """Move a schedule on, only if nobody wrote it since we read ``version``."""
    c = schedules.c
    return (
        schedules.update()
        .where(c.name == name, c.version == version)
        .values(
            next_fire_at=next_fire_at,
            last_run_id=last_run_id,
            last_fired_at=last_fired_at,
            version=c.version + 1,
        )
    )


# Artifacts

#: Every column but the content: what metadata reads select.
_ARTIFACT_META = tuple(column for column in artifacts.columns if column.name != "data")


def artifact_values(
    meta: ArtifactMetadata, data: bytes, sha256: str, created_at: datetime
) -> dict[str, Any]:
    """An artifact's row (its tags go to ``artifact_tags`` too)."""
    return {
        "artifact_id": meta.artifact_id,
        "content_type": meta.content_type,
        "size": meta.size_bytes,
        "created_at": created_at,
        "data": data,
        "run_id": meta.run_id,
        "tags": dict(meta.tags),
        "sha256": sha256,
    }


def insert_artifact_if_absent(dialect: str, values: dict[str, Any]) -> sa.Insert:
    """Insert the artifact unless a row with its id exists (race-safe on both dialects)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(artifacts)
        .values(values)
        .on_conflict_do_nothing(index_elements=[artifacts.c.artifact_id])
    )


def upsert_artifact(dialect: str, values: dict[str, Any]) -> sa.Insert:
    """Insert the artifact or replace every column of the row with its id. On Postgres the row
    stays locked until the commit, so concurrent stores of one id replace its tags in turn."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(artifacts).values(values)
    return statement.on_conflict_do_update(
        index_elements=[artifacts.c.artifact_id],
        set_={name: statement.excluded[name] for name in values if name != "artifact_id"},
    )


def delete_artifact_tags(artifact_id: str) -> sa.Delete:
    return artifact_tags.delete().where(artifact_tags.c.artifact_id == artifact_id)


def insert_artifact_tags() -> sa.Insert:
    """Parameters: one ``{"artifact_id", "key", "value"}`` per tag (an executemany)."""
    return artifact_tags.insert()


def artifact_query(artifact_id: str) -> sa.Select[Any]:
    """The whole row."""
    return sa.select(*artifacts.columns).where(artifacts.c.artifact_id == artifact_id)


def artifact_meta_query(artifact_id: str) -> sa.Select[Any]:
    """Everything but the content."""
    return sa.select(*_ARTIFACT_META).where(artifacts.c.artifact_id == artifact_id)


def artifact_exists_query(artifact_id: str) -> sa.Select[Any]:
    return sa.select(sa.literal(1)).where(artifacts.c.artifact_id == artifact_id)


def delete_artifact(artifact_id: str) -> sa.Delete:
    return artifacts.delete().where(artifacts.c.artifact_id == artifact_id)


def search_artifacts_query(
    *,
    run_id: str | None = None,
    content_type: str | None = None,
    tags: Mapping[str, str] | None = None,
    limit: int | None = 1000,
    oldest_first: bool = False,
) -> sa.Select[Any]:
    """The metadata of the artifacts passing every given filter (each tag is one lookup in the
    ``(key, value)`` index), newest first (or oldest first), ties broken by id."""
    select = sa.select(*_ARTIFACT_META)
    if run_id is not None:
        select = select.where(artifacts.c.run_id == run_id)
    if content_type is not None:
        select = select.where(artifacts.c.content_type == content_type)
    for key, value in (tags or {}).items():
        tagged = sa.select(artifact_tags.c.artifact_id).where(
            artifact_tags.c.key == key, artifact_tags.c.value == value
        )
        select = select.where(artifacts.c.artifact_id.in_(tagged))
    order = (artifacts.c.created_at, artifacts.c.artifact_id)
    select = select.order_by(*(order if oldest_first else (c.desc() for c in order)))
    return select if limit is None else select.limit(max(limit, 0))


def delete_run_artifact_tags(run_id: str) -> sa.Delete:
    of_run = sa.select(artifacts.c.artifact_id).where(artifacts.c.run_id == run_id)
    return artifact_tags.delete().where(artifact_tags.c.artifact_id.in_(of_run))


def delete_run_artifacts(run_id: str) -> sa.Delete:
    return artifacts.delete().where(artifacts.c.run_id == run_id)


# Buffered events and messages (``storage/sql/events.py``; see ``core/events.py``)


def insert_event(key: str, payload_json: str, now: datetime, expires_at: datetime) -> sa.Insert:
    """Returns the new event's id."""
    values = {"key": key, "payload": RawJSON(payload_json), "created_at": now}
    return events.insert().values(expires_at=expires_at, **values).returning(events.c.event_id)


def claim_emit_key(dialect: str, key: str, now: datetime) -> Any:
    """Insert the row of an emit's idempotency key; returns the key when this call made it
    (nothing when it was there)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(emits).values(idempotency_key=key, created_at=now)
    return statement.on_conflict_do_nothing(index_elements=[emits.c.idempotency_key]).returning(
        emits.c.idempotency_key
    )


def emit_key_query(key: str) -> sa.Select[Any]:
    return sa.select(emits.c.event_id, emits.c.resumed).where(emits.c.idempotency_key == key)


def set_emit_event(key: str, event_id: int) -> sa.Update:
    return sa.update(emits).where(emits.c.idempotency_key == key).values(event_id=event_id)


def set_emit_resumed(key: str, resumed: list[str]) -> sa.Update:
    return sa.update(emits).where(emits.c.idempotency_key == key).values(resumed=resumed)


def old_emit_keys_query(before: datetime) -> sa.Select[Any]:
    return sa.select(emits.c.idempotency_key).where(emits.c.created_at < before).limit(1)


def delete_old_emit_keys(before: datetime, limit: int) -> sa.Delete:
    old = (
        sa.select(emits.c.idempotency_key)
        .where(emits.c.created_at < before)
        .order_by(emits.c.created_at)
        .limit(limit)
    )
    return sa.delete(emits).where(emits.c.idempotency_key.in_(old.scalar_subquery()))


def insert_message(run_id: str, key: str, payload_json: str, now: datetime) -> sa.Insert:
    """Returns the new message's id."""
    values = {"run_id": run_id, "key": key, "payload": RawJSON(payload_json), "created_at": now}
    return messages.insert().values(values).returning(messages.c.message_id)


def next_message_query(run_id: str, key: str) -> sa.Select[Any]:
    """The oldest message to ``run_id`` on ``key`` (id, payload), by the (run_id, key, id)
    index."""
    return (
        sa.select(messages.c.message_id, sa.cast(messages.c.payload, sa.Text))
        .where(messages.c.run_id == run_id, messages.c.key == key)
        .order_by(messages.c.message_id)
        .limit(1)
    )


def buffered_event_query(run_id: str, key: str, now: datetime) -> sa.Select[Any]:
    """The oldest unexpired event of ``key`` that ``run_id`` has not received (id, payload), by
    the (key, event_id) index."""
    received = sa.select(sa.literal(1)).where(
        event_deliveries.c.event_id == events.c.event_id, event_deliveries.c.run_id == run_id
    )
    return (
        sa.select(events.c.event_id, sa.cast(events.c.payload, sa.Text))
        .where(events.c.key == key, events.c.expires_at > now, ~received.exists())
        .order_by(events.c.event_id)
        .limit(1)
    )


def delete_message(message_id: int, run_id: str) -> sa.Delete:
    """The delivery of a message: it matches no row when it was delivered already."""
    return messages.delete().where(messages.c.message_id == message_id, messages.c.run_id == run_id)


def insert_delivery(dialect: str, event_id: int, run_id: str) -> sa.Insert:
    """Note that ``run_id`` received the event: inserts no row when it had already, or when the
    event is gone (expired and cleaned up)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    existing = sa.select(events.c.event_id, sa.literal(run_id)).where(events.c.event_id == event_id)
    return (
        insert(event_deliveries)
        .from_select(["event_id", "run_id"], existing)
        .on_conflict_do_nothing(index_elements=["event_id", "run_id"])
    )


def update_run_query(run_id: str, version: int, values: Mapping[str, Any]) -> sa.Update:
    """A step's update of its run under the version check (``values``: ``STEP_COLUMNS``; the
    state as ``RawJSON``), for the steps that take the cold path (a delivery)."""
    return (
        runs.update()
        .where(runs.c.run_id == run_id, runs.c.version == version)
        .values(**values, version=runs.c.version + 1)
    )


def insert_records() -> sa.Insert:
    """Parameters: one ``record_values`` row per record, its ``record`` as ``RawJSON`` (an
    executemany)."""
    return ledger.insert()


def mark_parent_due(parent_run_id: str, now: datetime) -> sa.Update:
    """``_mark_parent_due`` on the cold path."""
    return (
        runs.update()
        .where(
            runs.c.run_id == parent_run_id,
            runs.c.status == RunStatus.WAITING.value,
            runs.c.wait_reason == WaitReason.SUBWORKFLOW.value,
        )
        .values(due_at=now, version=runs.c.version + 1)
    )


def wake_waiting(run_ids: Sequence[str], now: datetime) -> sa.Update:
    """Make the waiting, unclaimed runs of ``run_ids`` due now (bumping their version, as
    ``_mark_parent_due`` does); returns the ids woken."""
    return (
        runs.update()
        .where(
            runs.c.run_id.in_(list(run_ids)),
            runs.c.status == RunStatus.WAITING.value,
            sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at <= now),
        )
        .values(due_at=now, version=runs.c.version + 1)
        .returning(runs.c.run_id)
    )


def _wakeable(now: datetime) -> list[sa.ColumnElement[bool]]:
    """A run that waits on a key, unclaimed and not due (what ``wake_deliverable`` wakes)."""
    return [
        runs.c.status == RunStatus.WAITING.value,
        runs.c.wait_reason.in_([WaitReason.EVENT.value, WaitReason.USER.value]),
        runs.c.due_at.is_(None),
        sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at <= now),
    ]


def _waiting_for_messages(now: datetime, limit: int) -> sa.Select[Any]:
    """Runs waiting on a key they have a message for. Driven from the messages (few), each
    checked by a primary-key lookup of its run: never a pass over the waiting runs (many)."""
    waits_for_it = sa.select(sa.literal(1)).where(
        runs.c.run_id == messages.c.run_id, runs.c.wait_key == messages.c.key, *_wakeable(now)
    )
    return sa.select(messages.c.run_id).where(waits_for_it.exists()).limit(limit)


def live_event_keys(now: datetime, limit: int) -> sa.Select[Any]:
    """The keys of unexpired buffered events (few), by the expires_at index."""
    return (
        sa.select(events.c.key).where(events.c.expires_at > now).group_by(events.c.key).limit(limit)
    )


def _waiting_for_events(now: datetime, keys: Sequence[str], limit: int) -> sa.Select[Any]:
    """Runs waiting on one of ``keys`` (those of unexpired events: ``live_event_keys``) for an
    unexpired event they have not received. The keys are given as values, so that the runs
    are found by the wait_key index (a subquery of keys leads SQLite's planner to read every
    waiting run instead)."""
    received = sa.select(sa.literal(1)).where(
        event_deliveries.c.event_id == events.c.event_id,
        event_deliveries.c.run_id == runs.c.run_id,
    )
    unreceived = sa.select(sa.literal(1)).where(
        events.c.key == runs.c.wait_key, events.c.expires_at > now, ~received.exists()
    )
    return (
        sa.select(runs.c.run_id)
        .where(runs.c.wait_key.in_(list(keys)), unreceived.exists(), *_wakeable(now))
        .limit(limit)
    )


def messages_pending_query(now: datetime) -> sa.Select[Any]:
    """Whether ``wake_for_messages`` would wake a run (a read, so that the scheduler takes no
    write lock for nothing)."""
    return sa.select(_waiting_for_messages(now, 1).exists())


def wake_for_messages(now: datetime, limit: int) -> sa.Update:
    """Make due the runs waiting on a key they have a message for; returns their ids."""
    pending = _waiting_for_messages(now, limit)
    return (
        runs.update()
        .where(runs.c.run_id.in_(pending), *_wakeable(now))
        .values(due_at=now, version=runs.c.version + 1)
        .returning(runs.c.run_id)
    )


def wake_for_events(now: datetime, keys: Sequence[str], limit: int) -> sa.Update:
    """Make due the runs waiting on one of ``keys`` for an unexpired event they have not
    received; returns their ids."""
    pending = _waiting_for_events(now, keys, limit)
    return (
        runs.update()
        .where(runs.c.run_id.in_(pending), *_wakeable(now))
        .values(due_at=now, version=runs.c.version + 1)
        .returning(runs.c.run_id)
    )


def expired_events_query(now: datetime) -> sa.Select[Any]:
    """Whether an event has expired (a read, before ``delete_expired_events``)."""
    return sa.select(sa.select(events.c.event_id).where(events.c.expires_at <= now).exists())


def notify_due(run_id: str) -> sa.Select[Any]:
    """Postgres: wake idle workers for a run made due."""
    return sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, run_id))


def delete_expired_events(now: datetime, limit: int) -> sa.Delete:
    """Up to ``limit`` expired events (their deliveries go with them), by the expires_at
    index."""
    expired = (
        sa.select(events.c.event_id)
        .where(events.c.expires_at <= now)
        .order_by(events.c.expires_at)
        .limit(limit)
    )
    return events.delete().where(events.c.event_id.in_(expired))


# -- the schema and the connections ------------------------------------------------------------

#: Two processes upgrading one Postgres database at once take turns (a transaction lock).
PG_MIGRATION_LOCK = sa.text("SELECT pg_advisory_xact_lock(4152317201)")

#: ``PRAGMA application_id`` of SQLite files ``SqlStore`` created (ASCII "ARt1"): such a file
#: is the embedded default and is upgraded automatically when a newer version needs it.
SQLITE_APP_ID = 0x41527431
SQLITE_SET_APP_ID = f"PRAGMA application_id={SQLITE_APP_ID}"
SQLITE_GET_APP_ID = "PRAGMA application_id"
SQLITE_TABLE_COUNT = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
SQLITE_JOURNAL_MODE = "PRAGMA journal_mode"
SQLITE_WAL = "PRAGMA journal_mode=WAL"


def sqlite_busy_timeout(ms: int) -> str:
    return f"PRAGMA busy_timeout={int(ms)}"


def sqlite_settings(busy_timeout_ms: int, *, durable: bool) -> tuple[str, ...]:
    """What every SQLite connection sets: a commit on disk before the next step starts
    (``durable``; a private temporary file has nothing to keep), waits for the write lock,
    foreign keys enforced."""
    return (
        sqlite_busy_timeout(busy_timeout_ms),
        f"PRAGMA synchronous={'FULL' if durable else 'OFF'}",
        "PRAGMA foreign_keys=ON",
    )


# -- workers (cold path) -----------------------------------------------------------------------


def upsert_worker(
    dialect: str, owner: str, serves: list[list[str]], now: datetime, expires_at: datetime
) -> Any:
    """Insert or refresh a worker's row (its start time stays that of the first insert)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(workers).values(
        owner=owner, started_at=now, heartbeat_at=now, expires_at=expires_at, serves=serves
    )
    return statement.on_conflict_do_update(
        index_elements=[workers.c.owner],
        set_={
            "heartbeat_at": statement.excluded.heartbeat_at,
            "expires_at": statement.excluded.expires_at,
            "serves": statement.excluded.serves,
        },
    )


def delete_gone_workers(before: datetime) -> sa.Delete:
    return sa.delete(workers).where(workers.c.expires_at < before)


def delete_worker(owner: str) -> sa.Delete:
    return sa.delete(workers).where(workers.c.owner == owner)


def workers_query() -> sa.Select[Any]:
    return sa.select(workers).order_by(workers.c.owner)


def version_counts_query() -> sa.Select[Any]:
    """Unfinished runs by workflow, version and status."""
    count = sa.func.count()
    return (
        sa.select(runs.c.workflow_id, runs.c.workflow_version, runs.c.status, count)
        .where(runs.c.status.in_([s.value for s in (RunStatus.RUNNING, RunStatus.WAITING)]))
        .group_by(runs.c.workflow_id, runs.c.workflow_version, runs.c.status)
        .order_by(runs.c.workflow_id, runs.c.workflow_version, runs.c.status)
    )
