"""Runs get ``due_at``: when a worker should next look at them (scheduler and leases).

Revision ID: 0002_due_at
Revises: 0001_initial
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_due_at"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "abstractruntime_runs", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_abstractruntime_runs_due_at", "abstractruntime_runs", ["due_at"])
    # Existing runs: running ones are due now (at their last update), timers at their time.
    op.execute("UPDATE abstractruntime_runs SET due_at = updated_at WHERE status = 'running'")
    op.execute(
        "UPDATE abstractruntime_runs SET due_at = wait_until "
        "WHERE status = 'waiting' AND wait_reason = 'until'"
    )


def downgrade() -> None:
    with op.batch_alter_table("abstractruntime_runs") as batch:
        batch.drop_index("ix_abstractruntime_runs_due_at")
        batch.drop_column("due_at")
