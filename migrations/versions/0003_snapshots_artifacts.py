"""Snapshots (with their tags) and content-addressed artifacts.

Revision ID: 0003_snapshots_artifacts
Revises: 0002_due_at
Create Date: 2026-11-24

New tables only: runs and ledgers of earlier revisions are untouched by the upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_snapshots_artifacts"
down_revision: str | None = "0002_due_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "abstractruntime_snapshots",
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("search_name", sa.Text(), nullable=False),
        sa.Column("search_description", sa.Text(), nullable=True),
        sa.Column("run_state", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_id", name="pk_abstractruntime_snapshots"),
    )
    op.create_index(
        "ix_abstractruntime_snapshots_created_at", "abstractruntime_snapshots", ["created_at"]
    )
    op.create_index(
        "ix_abstractruntime_snapshots_run_id_created_at",
        "abstractruntime_snapshots",
        ["run_id", "created_at"],
    )
    op.create_table(
        "abstractruntime_snapshot_tags",
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["abstractruntime_snapshots.snapshot_id"],
            name="fk_abstractruntime_snapshot_tags_snapshot_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "tag", name="pk_abstractruntime_snapshot_tags"),
    )
    op.create_index(
        "ix_abstractruntime_snapshot_tags_tag_snapshot_id",
        "abstractruntime_snapshot_tags",
        ["tag", "snapshot_id"],
    )
    op.create_table(
        "abstractruntime_artifacts",
        sa.Column("artifact_id", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", name="pk_abstractruntime_artifacts"),
    )


def downgrade() -> None:
    op.drop_table("abstractruntime_artifacts")
    op.drop_table("abstractruntime_snapshot_tags")
    op.drop_table("abstractruntime_snapshots")
