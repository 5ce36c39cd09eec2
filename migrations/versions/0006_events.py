"""Buffered events, which runs received them, and messages to one run (issue 12).

Revision ID: 0006_events
Revises: 0005_schedules
Create Date: 2026-11-29

New tables only: nothing existing changes, and downgrading drops them (with the events and
messages not delivered yet).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_events"
down_revision: str | None = "0005_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "abstractruntime_events",
        sa.Column("event_id", _SERIAL, nullable=False, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_abstractruntime_events"),
        sqlite_autoincrement=True,  # ids never reused: see schema.events
    )
    op.create_index(
        "ix_abstractruntime_events_key_event_id", "abstractruntime_events", ["key", "event_id"]
    )
    op.create_index(
        "ix_abstractruntime_events_expires_at", "abstractruntime_events", ["expires_at"]
    )
    op.create_table(
        "abstractruntime_event_deliveries",
        sa.Column("event_id", _SERIAL, nullable=False, autoincrement=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["abstractruntime_events.event_id"],
            ondelete="CASCADE",
            name="fk_abstractruntime_deliveries_event",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["abstractruntime_runs.run_id"],
            ondelete="CASCADE",
            name="fk_abstractruntime_deliveries_run",
        ),
        sa.PrimaryKeyConstraint("event_id", "run_id", name="pk_abstractruntime_event_deliveries"),
    )
    op.create_index(
        "ix_abstractruntime_event_deliveries_run_id", "abstractruntime_event_deliveries", ["run_id"]
    )
    op.create_table(
        "abstractruntime_messages",
        sa.Column("message_id", _SERIAL, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["abstractruntime_runs.run_id"],
            ondelete="CASCADE",
            name="fk_abstractruntime_messages_run",
        ),
        sa.PrimaryKeyConstraint("message_id", name="pk_abstractruntime_messages"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_abstractruntime_messages_run_id_key_message_id",
        "abstractruntime_messages",
        ["run_id", "key", "message_id"],
    )


def downgrade() -> None:
    op.drop_table("abstractruntime_messages")
    op.drop_table("abstractruntime_event_deliveries")
    op.drop_table("abstractruntime_events")
