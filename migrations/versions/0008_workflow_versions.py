"""Workflow versions: the version each run started on, and the live workers' versions.

Revision ID: 0008_workflow_versions
Revises: 0007_partial_wait_key_index
Create Date: 2026-11-29

Existing runs get version "1", the default of ``WorkflowSpec.version``, so code that names no
version keeps driving them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_workflow_versions"
down_revision: str | None = "0007_partial_wait_key_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("abstractruntime_runs") as batch:
        batch.add_column(
            sa.Column("workflow_version", sa.String(64), nullable=False, server_default="1")
        )
    op.create_table(
        "abstractruntime_workers",
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("serves", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_abstractruntime_workers"),
    )


def downgrade() -> None:
    op.drop_table("abstractruntime_workers")
    with op.batch_alter_table("abstractruntime_runs") as batch:
        batch.drop_column("workflow_version")
