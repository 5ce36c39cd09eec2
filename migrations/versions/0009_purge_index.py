"""An index for the purge: finished runs by status and end time.

Revision ID: 0009_purge_index
Revises: 0007_partial_wait_key_index
Create Date: 2026-11-29

``store.purge`` (and ``runs export``) pages through the runs of one status updated before a
cutoff, oldest first, keyset on ``(updated_at, run_id)``: with this index that is one range
read per page, not a scan and a sort of every finished run.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_purge_index"
down_revision: str | None = "0007_partial_wait_key_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_abstractruntime_runs_status_updated_at_run_id"
_RUNS = "abstractruntime_runs"


def upgrade() -> None:
    op.create_index(_INDEX, _RUNS, ["status", "updated_at", "run_id"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name=_RUNS)
