"""Idempotency keys of emit_event: the event a key buffered and the runs it resumed.

Revision ID: 0011_emit_keys
Revises: 0010_limits
Create Date: 2026-11-29

A new table only. (start's keys are derived run ids and answers' keys live in the ledger's
idempotency column: nothing else changes.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_emit_keys"
down_revision: str | None = "0010_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "abstractruntime_emits",
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("event_id", _SERIAL, nullable=True),
        sa.Column("resumed", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name="pk_abstractruntime_emits"),
    )
    op.create_index("ix_abstractruntime_emits_created_at", "abstractruntime_emits", ["created_at"])


def downgrade() -> None:
    op.drop_table("abstractruntime_emits")
