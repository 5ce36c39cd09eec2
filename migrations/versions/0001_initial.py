"""Initial schema: runs and their hash-chained ledger.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "abstractruntime_runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_node", sa.String(255), nullable=True),
        sa.Column("wait_reason", sa.String(16), nullable=True),
        sa.Column("wait_key", sa.String(512), nullable=True),
        sa.Column("wait_until", utc, nullable=True),
        sa.Column("parent_run_id", sa.String(64), nullable=True),
        sa.Column("actor_id", sa.String(255), nullable=True),
        sa.Column("session_id", sa.String(255), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
        sa.Column("ledger_head", sa.String(64), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", utc, nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_abstractruntime_runs"),
    )
    op.create_index(
        "ix_abstractruntime_runs_status_wait_until",
        "abstractruntime_runs",
        ["status", "wait_until"],
    )
    op.create_index("ix_abstractruntime_runs_wait_key", "abstractruntime_runs", ["wait_key"])
    op.create_index(
        "ix_abstractruntime_runs_parent_run_id", "abstractruntime_runs", ["parent_run_id"]
    )
    op.create_index(
        "ix_abstractruntime_runs_workflow_id_status",
        "abstractruntime_runs",
        ["workflow_id", "status"],
    )
    op.create_table(
        "abstractruntime_ledger",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=True),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["abstractruntime_runs.run_id"],
            name="fk_abstractruntime_ledger_run_id_abstractruntime_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_abstractruntime_ledger"),
    )
    op.create_index(
        "ix_abstractruntime_ledger_run_id_idempotency_key",
        "abstractruntime_ledger",
        ["run_id", "idempotency_key"],
    )


def downgrade() -> None:
    op.drop_table("abstractruntime_ledger")
    op.drop_table("abstractruntime_runs")
