"""Indexes for the purge: finished runs by status and end time; children by a partial index.

Revision ID: 0009_purge_index
Revises: 0008_workflow_versions
Create Date: 2026-11-29

``store.purge`` (and ``runs export``) pages through the runs of one status updated before a
cutoff, oldest first, keyset on ``(updated_at, run_id)``: with this index that is one range
read per page, not a scan and a sort of every finished run. It holds the finished runs only,
so that it is no candidate for the scheduler's queries of waiting runs.

It looks up the children of the runs it deletes: the parent index now holds only the runs that
have a parent (most have none; with them in, SQLite's statistics said a parent matches every
run, and it read the whole table to find a run's children), as 0007 did for wait keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_purge_index"
down_revision: str | None = "0008_workflow_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_abstractruntime_runs_status_updated_at_run_id"
_RUNS = "abstractruntime_runs"
_PARENT = "ix_abstractruntime_runs_parent_run_id"


#: Finished runs only (as ``schema.FINISHED_RUNS``, which the purge's queries repeat).
_FINISHED = "status IN ('completed', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_index(
        _INDEX,
        _RUNS,
        ["status", "updated_at", "run_id"],
        sqlite_where=sa.text(_FINISHED),
        postgresql_where=sa.text(_FINISHED),
    )
    op.drop_index(_PARENT, table_name=_RUNS)
    op.create_index(
        _PARENT,
        _RUNS,
        ["parent_run_id"],
        sqlite_where=sa.text("parent_run_id IS NOT NULL"),
        postgresql_where=sa.text("parent_run_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(_PARENT, table_name=_RUNS)
    op.create_index(_PARENT, _RUNS, ["parent_run_id"])
    op.drop_index(_INDEX, table_name=_RUNS)
