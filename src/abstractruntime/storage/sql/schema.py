"""The SQL schema (SQLAlchemy Core tables): the only place that defines tables and columns.

The migrations in ``migrations/versions`` must build exactly this schema; a test compares them.
``statements`` builds every statement's column list from these tables. The lengths of the columns
that project a run state's fields come from ``core.kernel`` (``COLUMN_LIMITS``,
``WAIT_KEY_LIMIT``), which checks them on every store.

``runs.state`` and ``ledger.record`` hold the canonical JSON text the runtime produced (declared
``JSON`` so operators can query them, and Postgres validates them; not JSONB, which would rewrite
numbers and break the byte-exact record that ``record_hash`` covers). The columns next to them
are projections for indexes: status and wait time for the scheduler, wait key for events, parent
run for subworkflows, lease columns for multi-worker claims.

Snapshots and artifacts have their tables too, each with its tags in a table of their own for
an indexed filter. Every name stays within Postgres' 63 characters.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ...core.kernel import COLUMN_LIMITS, WAIT_KEY_LIMIT
from ...core.models import DEFAULT_WORKFLOW_VERSION

#: The lengths of the columns that project a run state's fields, from the kernel, which refuses
#: longer values on every store (Postgres would refuse them; SQLite would keep them).
_LENGTH = {field: limit for field, limit, _required in COLUMN_LIMITS}

#: The condition of the purge index (and, word for word, of the purge's queries: SQLite uses a
#: partial index only for a query that repeats its condition).
FINISHED_RUNS = "status IN ('completed', 'failed', 'cancelled')"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite stores them as naive UTC text that sorts right."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)  # type: ignore[no-any-return]
        return value.astimezone(timezone.utc)  # type: ignore[no-any-return]


class RawJSON(str):
    """JSON text we already encoded; the engine's ``json_serializer`` passes it through."""


runs = sa.Table(
    "abstractruntime_runs",
    metadata,
    sa.Column("run_id", sa.String(_LENGTH["run_id"]), primary_key=True),
    sa.Column("workflow_id", sa.String(_LENGTH["workflow_id"]), nullable=False),
    # The version of the workflow's code that drives the run (claims filter on it).
    sa.Column(
        "workflow_version",
        sa.String(_LENGTH["workflow_version"]),
        nullable=False,
        server_default=DEFAULT_WORKFLOW_VERSION,
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("current_node", sa.String(_LENGTH["current_node"]), nullable=True),
    sa.Column("wait_reason", sa.String(16), nullable=True),
    sa.Column("wait_key", sa.String(WAIT_KEY_LIMIT), nullable=True),
    sa.Column("wait_until", UTCDateTime(), nullable=True),
    sa.Column("parent_run_id", sa.String(_LENGTH["parent_run_id"]), nullable=True),
    sa.Column("actor_id", sa.String(_LENGTH["actor_id"]), nullable=True),
    sa.Column("session_id", sa.String(_LENGTH["session_id"]), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Optimistic concurrency: every committed step bumps it; a commit names the one it read.
    sa.Column("version", sa.BigInteger(), nullable=False),
    # The ledger's length and head, so a step appends without reading the ledger back.
    sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
    sa.Column("ledger_head", sa.String(64), nullable=True),
    # Multi-worker claims: who drives the run, and until when the claim holds.
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("state", sa.JSON(), nullable=False),
    # When a worker should next look at the run (see core.ports); NULL: not by itself.
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Index(None, "status", "wait_until"),
    # Only the runs that wait on a key: a run waiting until a time (or not waiting) has none,
    # and with those left out the index is small and its statistics say what a key lookup
    # costs (SQLite's planner otherwise reads every run to find the few waiting on a key).
    sa.Index(
        None,
        "wait_key",
        sqlite_where=sa.text("wait_key IS NOT NULL"),
        postgresql_where=sa.text("wait_key IS NOT NULL"),
    ),
    # Only the runs that have a parent (0009): most have none, and with those in it SQLite's
    # statistics said a parent matches every run, so it read the whole table to find children.
    sa.Index(
        None,
        "parent_run_id",
        sqlite_where=sa.text("parent_run_id IS NOT NULL"),
        postgresql_where=sa.text("parent_run_id IS NOT NULL"),
    ),
    sa.Index(None, "workflow_id", "status"),
    sa.Index(None, "due_at"),
    # The purge's pages: one status's runs that ended before a cutoff, oldest first (0009).
    # Finished runs only: the index is no candidate for the scheduler's queries of waiting
    # runs (with it, SQLite's planner read every run to find those waiting on an event key).
    sa.Index(
        None,
        "status",
        "updated_at",
        "run_id",
        sqlite_where=sa.text(FINISHED_RUNS),
        postgresql_where=sa.text(FINISHED_RUNS),
    ),
)

ledger = sa.Table(
    "abstractruntime_ledger",
    metadata,
    sa.Column(
        "run_id",
        sa.String(_LENGTH["run_id"]),
        sa.ForeignKey(runs.c.run_id, ondelete="CASCADE"),
        primary_key=True,
    ),
    # 0-based position in the run's chain; the primary key makes a forked ledger impossible.
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("node_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=True),
    sa.Column("record_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("record", sa.JSON(), nullable=False),
    sa.Index(None, "run_id", "idempotency_key"),
)

snapshots = sa.Table(
    "abstractruntime_snapshots",
    metadata,
    sa.Column("snapshot_id", sa.String(64), primary_key=True),
    # No foreign key: a snapshot outlives the run it copies, and can still be forked from.
    sa.Column("run_id", sa.String(_LENGTH["run_id"]), nullable=False),
    sa.Column("step_id", sa.String(64), nullable=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    # As spelled by the user; snapshot_tags holds them folded, for the filter.
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Name and description case-folded by Python (``snapshot.fold``), so that search is
    # case-insensitive the same way on every backend (SQLite's lower() only folds ASCII).
    sa.Column("search_name", sa.Text(), nullable=False),
    sa.Column("search_description", sa.Text(), nullable=True),
    sa.Column("run_state", sa.JSON(), nullable=False),
    sa.Index(None, "created_at"),
    sa.Index(None, "run_id", "created_at"),
)

snapshot_tags = sa.Table(
    "abstractruntime_snapshot_tags",
    metadata,
    sa.Column(
        "snapshot_id",
        sa.String(64),
        sa.ForeignKey(
            snapshots.c.snapshot_id,
            ondelete="CASCADE",
            # Named by hand: the convention's name is longer than Postgres' 63 characters.
            name="fk_abstractruntime_snapshot_tags_snapshot_id",
        ),
        primary_key=True,
    ),
    # Case-folded, so that the tag filter is an index lookup.
    sa.Column("tag", sa.String(255), primary_key=True),
    sa.Index(None, "tag", "snapshot_id"),
)

artifacts = sa.Table(
    "abstractruntime_artifacts",
    metadata,
    # core.artifacts: the content's SHA-256 (put), its first 32 hex digits (store), or an id the
    # caller chose; 1 to 250 letters, digits, '-' or '_'.
    sa.Column("artifact_id", sa.String(255), primary_key=True),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    # The run it belongs to. No foreign key: an artifact may outlive its run, as a snapshot does.
    sa.Column("run_id", sa.String(_LENGTH["run_id"]), nullable=True),
    # As given; artifact_tags holds them again, one row each, for the filter.
    sa.Column("tags", sa.JSON(), nullable=False),
    # SHA-256 of ``data``, whatever the id, so a read can tell altered bytes.
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Index(None, "run_id", "created_at"),
    sa.Index(None, "created_at"),
    sa.Index(None, "content_type", "created_at"),
)

artifact_tags = sa.Table(
    "abstractruntime_artifact_tags",
    metadata,
    sa.Column(
        "artifact_id",
        sa.String(255),
        sa.ForeignKey(
            artifacts.c.artifact_id,
            ondelete="CASCADE",
            # Named by hand: the convention's name is longer than Postgres' 63 characters.
            name="fk_abstractruntime_artifact_tags_artifact_id",
        ),
        primary_key=True,
    ),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
    # ``search(tags={k: v})``: one index lookup per tag.
    sa.Index(None, "key", "value", "artifact_id"),
)

schedules = sa.Table(
    "abstractruntime_schedules",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("workflow_id", sa.String(_LENGTH["workflow_id"]), nullable=False),
    sa.Column("cron", sa.String(255), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("catch_up", sa.String(16), nullable=False),
    # Canonical JSON text, not JSON: redeclaring a schedule compares it with ``=``, which
    # Postgres' json type does not have.
    sa.Column("vars", sa.Text(), nullable=False),
    sa.Column("next_fire_at", UTCDateTime(), nullable=False),
    sa.Column("last_run_id", sa.String(_LENGTH["run_id"]), nullable=True),
    sa.Column("last_fired_at", UTCDateTime(), nullable=True),
    # Bumped by every write; ``advance`` is conditional on the one read (core.schedules).
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The scheduler's poll reads only the due schedules, by this index.
    sa.Index(None, "next_fire_at"),
)

#: An id that counts up: SQLite makes only an ``INTEGER PRIMARY KEY`` its rowid alias (and
#: ``sqlite_autoincrement`` keeps it from reusing ids).
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "abstractruntime_events",
    metadata,
    # Buffered events (``emit_event(buffer_s=...)``), kept until ``expires_at`` for the runs that
    # start waiting on ``key`` before then; the scheduler deletes expired ones in small batches.
    sa.Column("event_id", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(WAIT_KEY_LIMIT), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    # A run that starts waiting on a key: the events of the key in the order emitted (the
    # expired ones among them are few: the scheduler deletes them).
    sa.Index(None, "key", "event_id"),
    # The scheduler's clean-up: the expired events.
    sa.Index(None, "expires_at"),
    # Ids are never reused (SQLite would reuse the highest after a delete): a delivery names
    # the event or message it read, and must never match a newer one under the same id.
    sqlite_autoincrement=True,
)

#: ``emit_event(idempotency_key=...)``: the event a key buffered, and the runs it resumed.
emits = sa.Table(
    "abstractruntime_emits",
    metadata,
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    # The buffered event made with the key (None: not buffered). No foreign key: the event
    # expires long before the key does.
    sa.Column("event_id", _SERIAL, nullable=True),
    # The ids of the runs it resumed (None until the call finished).
    sa.Column("resumed", sa.JSON(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "created_at"),
)

event_deliveries = sa.Table(
    "abstractruntime_event_deliveries",
    metadata,
    # Which run received which buffered event: each run receives an event once, even when it
    # waits on its key again. Rows go with their event, and with their run.
    sa.Column(
        "event_id",
        _SERIAL,
        sa.ForeignKey(
            events.c.event_id, ondelete="CASCADE", name="fk_abstractruntime_deliveries_event"
        ),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column(
        "run_id",
        sa.String(_LENGTH["run_id"]),
        sa.ForeignKey(runs.c.run_id, ondelete="CASCADE", name="fk_abstractruntime_deliveries_run"),
        primary_key=True,
    ),
    sa.Index(None, "run_id"),
)

messages = sa.Table(
    "abstractruntime_messages",
    metadata,
    # Messages to one run (``send``), kept until it waits on ``key``; the resume that delivers
    # one deletes it. A message goes with its run (a purge of the run deletes its messages).
    sa.Column("message_id", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id",
        sa.String(_LENGTH["run_id"]),
        sa.ForeignKey(runs.c.run_id, ondelete="CASCADE", name="fk_abstractruntime_messages_run"),
        nullable=False,
    ),
    sa.Column("key", sa.String(WAIT_KEY_LIMIT), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # A run that starts waiting on a key: its oldest message there.
    sa.Index(None, "run_id", "key", "message_id"),
    sqlite_autoincrement=True,  # see events
)

#: The live workers: each scheduler upserts its row (what it serves) every few seconds, so an
#: operator sees which workflow versions some worker drives, and which runs none can
#: (``runs list --orphaned``). Rows of workers gone for long are deleted by the others.
workers = sa.Table(
    "abstractruntime_workers",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    # Counted alive until then (a few heartbeats after the last one).
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    # [[workflow_id, version], ...]
    sa.Column("serves", sa.JSON(), nullable=False),
)

limit_budgets = sa.Table(
    "abstractruntime_limit_budgets",
    metadata,
    # One row per shared budget (``core.throttle``): a limit's name and key value. Every
    # acquisition and release locks it first (``SELECT ... FOR UPDATE``; SQLite's one writer),
    # so the decisions on one budget are serial across processes. A rate budget keeps the
    # grant times of its current window (epoch seconds, a JSON list of at most ``capacity``).
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    # As the newest process to use it declared it (for ``abstractruntime limits``).
    sa.Column("capacity", sa.Integer(), nullable=False),
    sa.Column("per_s", sa.Float(), nullable=False),
    sa.Column("grants", sa.Text(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

limit_slots = sa.Table(
    "abstractruntime_limit_slots",
    metadata,
    # A run's slot in a budget (``kind`` "held") or its place in the budget's queue ("waiting",
    # in the order of ``since``). A held effect slot lives while its run's claim at ``version``
    # holds its lease; a run's slot (``max_concurrent_runs``) until the run ends. Rows go with
    # their run.
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column(
        "run_id",
        sa.String(_LENGTH["run_id"]),
        sa.ForeignKey(runs.c.run_id, ondelete="CASCADE", name="fk_abstractruntime_limit_slots_run"),
        primary_key=True,
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    # A run's rows, to drop its waiter rows elsewhere when it is granted or waits anew.
    sa.Index(None, "run_id"),
)
