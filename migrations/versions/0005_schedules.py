"""Cron schedules: one row per schedule, its next fire time indexed for the scheduler's poll.

Revision ID: 0005_schedules
Revises: 0004_artifact_metadata
Create Date: 2026-11-29

A new table only: runs, ledgers, snapshots and artifacts are untouched. Downgrading drops the
schedules (the runs they started stay).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_schedules"
down_revision: str | None = "0004_artifact_metadata"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEDULES = "abstractruntime_schedules"


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        _SCHEDULES,
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("vars", sa.Text(), nullable=False),
        sa.Column("next_fire_at", utc, nullable=False),
        sa.Column("last_run_id", sa.String(64), nullable=True),
        sa.Column("last_fired_at", utc, nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_abstractruntime_schedules"),
    )
    op.create_index("ix_abstractruntime_schedules_next_fire_at", _SCHEDULES, ["next_fire_at"])


def downgrade() -> None:
    op.drop_index("ix_abstractruntime_schedules_next_fire_at", table_name=_SCHEDULES)
    op.drop_table(_SCHEDULES)
