"""Artifacts get the original's metadata: a run, tags (indexed), any id, and a content digest.

Revision ID: 0004_artifact_metadata
Revises: 0003_snapshots_artifacts
Create Date: 2026-11-25

Existing rows keep working: their ids (the SHA-256 of their content) stay valid, their digest is
that id, their run is none and their tags are ``{}``. Downgrading gives back what 0003 can hold:
the artifacts whose id is the SHA-256 of their content (``put``); the others (``store()``'s ids,
ids callers chose) and every artifact's run and tags are dropped, as 0003's code cannot read them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_artifact_metadata"
down_revision: str | None = "0003_snapshots_artifacts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ARTIFACTS = "abstractruntime_artifacts"
_TAGS = "abstractruntime_artifact_tags"
_INDEXES = {
    "ix_abstractruntime_artifacts_run_id_created_at": ["run_id", "created_at"],
    "ix_abstractruntime_artifacts_created_at": ["created_at"],
    "ix_abstractruntime_artifacts_content_type_created_at": ["content_type", "created_at"],
}


def upgrade() -> None:
    op.add_column(_ARTIFACTS, sa.Column("run_id", sa.String(64), nullable=True))
    op.add_column(_ARTIFACTS, sa.Column("tags", sa.JSON(), nullable=True))
    op.add_column(_ARTIFACTS, sa.Column("sha256", sa.String(64), nullable=True))
    # Every id of revision 0003 is the SHA-256 of its row's content.
    op.execute(f"UPDATE {_ARTIFACTS} SET tags = '{{}}', sha256 = artifact_id")
    with op.batch_alter_table(_ARTIFACTS) as batch:
        batch.alter_column(
            "artifact_id", existing_type=sa.String(64), type_=sa.String(255), nullable=False
        )
        batch.alter_column("tags", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("sha256", existing_type=sa.String(64), nullable=False)
    for name, columns in _INDEXES.items():
        op.create_index(name, _ARTIFACTS, columns)
    op.create_table(
        _TAGS,
        sa.Column("artifact_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            [f"{_ARTIFACTS}.artifact_id"],
            name="fk_abstractruntime_artifact_tags_artifact_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("artifact_id", "key", name="pk_abstractruntime_artifact_tags"),
    )
    op.create_index(
        "ix_abstractruntime_artifact_tags_key_value_artifact_id",
        _TAGS,
        ["key", "value", "artifact_id"],
    )


def downgrade() -> None:
    op.drop_table(_TAGS)
    op.execute(f"DELETE FROM {_ARTIFACTS} WHERE artifact_id <> sha256")
    for name in _INDEXES:
        op.drop_index(name, table_name=_ARTIFACTS)
    with op.batch_alter_table(_ARTIFACTS) as batch:
        batch.drop_column("sha256")
        batch.drop_column("tags")
        batch.drop_column("run_id")
        batch.alter_column(
            "artifact_id", existing_type=sa.String(255), type_=sa.String(64), nullable=False
        )
