"""Shared concurrency and rate limits: budgets and their slots (issue 13, limits).

Revision ID: 0010_limits
Revises: 0009_purge_index
Create Date: 2026-11-29

New tables only: nothing existing changes, and downgrading drops them (with the slots held and
the queues of waiting runs: those runs then find the budgets empty when they look again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_limits"
down_revision: str | None = "0009_purge_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "abstractruntime_limit_budgets",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("per_s", sa.Float(), nullable=False),
        sa.Column("grants", sa.Text(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", "key", name="pk_abstractruntime_limit_budgets"),
    )
    op.create_table(
        "abstractruntime_limit_slots",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("since", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["abstractruntime_runs.run_id"],
            ondelete="CASCADE",
            name="fk_abstractruntime_limit_slots_run",
        ),
        sa.PrimaryKeyConstraint("name", "key", "run_id", name="pk_abstractruntime_limit_slots"),
    )
    op.create_index(
        "ix_abstractruntime_limit_slots_run_id", "abstractruntime_limit_slots", ["run_id"]
    )


def downgrade() -> None:
    op.drop_table("abstractruntime_limit_slots")
    op.drop_table("abstractruntime_limit_budgets")
