"""The runs' wait_key index holds only the runs that wait on a key.

Revision ID: 0007_partial_wait_key_index
Revises: 0006_events
Create Date: 2026-11-29

Runs waiting until a time, running or finished have no wait key; indexed, they made SQLite's
statistics say that a key matches every run, so its planner read the whole table to find the
runs waiting on a buffered event's key (the scheduler does that every cycle).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_partial_wait_key_index"
down_revision: str | None = "0006_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_abstractruntime_runs_wait_key"
_RUNS = "abstractruntime_runs"


def upgrade() -> None:
    op.drop_index(_INDEX, table_name=_RUNS)
    op.create_index(
        _INDEX,
        _RUNS,
        ["wait_key"],
        sqlite_where=sa.text("wait_key IS NOT NULL"),
        postgresql_where=sa.text("wait_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name=_RUNS)
    op.create_index(_INDEX, _RUNS, ["wait_key"])
