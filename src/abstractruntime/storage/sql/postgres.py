"""The Postgres hot path: a step's commit as ONE statement on a raw asyncpg connection.

SQLAlchemy stays for the schema, migrations and cold paths; the per-step commit is what a durable
runtime pays all the time, so it goes straight to asyncpg: one prepared statement (asyncpg caches
it per connection) whose data-modifying CTEs update the run under the version check, append the
ledger rows, mark a waiting parent due and NOTIFY idle workers. A single statement is its own
transaction: one round trip per step instead of BEGIN / UPDATE / INSERT / COMMIT, and no pool
reset round trip when the connection goes back (our statements leave no session state behind).

The column lists here must match ``schema.runs`` / ``schema.ledger``; every Postgres integration
test runs through this path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

#: Channel of the NOTIFY sent when a run becomes due; idle Postgres workers LISTEN on it.
NOTIFY_CHANNEL = "abstractruntime_due"

COMMIT_STEP = """
WITH upd AS (
    UPDATE abstractruntime_runs SET
        workflow_id = $2, status = $3, current_node = $4, wait_reason = $5, wait_key = $6,
        wait_until = $7, parent_run_id = $8, actor_id = $9, session_id = $10, updated_at = $11,
        state = $12::json, version = version + 1, ledger_seq = $13, ledger_head = $14,
        lease_owner = $15, lease_expires_at = $16, due_at = $17
    WHERE run_id = $1 AND version = $18
    RETURNING run_id
), ins AS (
    INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, status, attempt,
        idempotency_key, prev_hash, record_hash, created_at, record)
    SELECT upd.run_id, r.seq, r.step_id, r.node_id, r.status, r.attempt, r.idempotency_key,
        r.prev_hash, r.record_hash, r.created_at, r.record::json
    FROM upd, unnest($19::bigint[], $20::text[], $21::text[], $22::text[], $23::int[],
        $24::text[], $25::text[], $26::text[], $27::timestamptz[], $28::text[])
        AS r(seq, step_id, node_id, status, attempt, idempotency_key, prev_hash, record_hash,
             created_at, record)
    RETURNING 1
), parent AS (
    UPDATE abstractruntime_runs SET due_at = $29, version = version + 1
    WHERE run_id = $30 AND status = 'waiting' AND wait_reason = 'subworkflow'
        AND EXISTS (SELECT 1 FROM upd)
    RETURNING run_id
), woken AS (
    SELECT pg_notify($31, w.run_id)
    FROM (SELECT run_id FROM upd WHERE $32::boolean UNION ALL SELECT run_id FROM parent) AS w
)
SELECT (SELECT count(*) FROM upd) AS updated, (SELECT count(*) FROM woken) AS woken
"""


class _NoResetConnection(asyncpg.Connection):  # type: ignore[misc]
    """Skips the pool's reset query on release: the hot path runs single statements only."""

    def get_reset_query(self) -> str:
        return ""


class PostgresHotPath:
    """A small asyncpg pool for the statements every step runs."""

    def __init__(self, url: URL, max_size: int = 10) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._max_size,
                        connection_class=_NoResetConnection,
                    )
        return self._pool

    async def commit_step(
        self,
        run_id: str,
        version: int,
        run: dict[str, Any],
        rows: Sequence[dict[str, Any]],
        *,
        notify: bool,
        parent_due: tuple[str, datetime] | None,
    ) -> bool:
        """Apply one step; False (and nothing written) when the version check fails."""
        pool = await self._get_pool()
        parent_id, parent_at = parent_due if parent_due is not None else (None, None)
        updated = await pool.fetchval(
            COMMIT_STEP,
            run_id,
            run["workflow_id"],
            run["status"],
            run["current_node"],
            run["wait_reason"],
            run["wait_key"],
            run["wait_until"],
            run["parent_run_id"],
            run["actor_id"],
            run["session_id"],
            run["updated_at"],
            run["state"],
            run["ledger_seq"],
            run["ledger_head"],
            run["lease_owner"],
            run["lease_expires_at"],
            run["due_at"],
            version,
            [row["seq"] for row in rows],
            [row["step_id"] for row in rows],
            [row["node_id"] for row in rows],
            [row["status"] for row in rows],
            [row["attempt"] for row in rows],
            [row["idempotency_key"] for row in rows],
            [row["prev_hash"] for row in rows],
            [row["record_hash"] for row in rows],
            [row["created_at"] for row in rows],
            [row["record"] for row in rows],
            parent_at,
            parent_id,
            NOTIFY_CHANNEL,
            notify,
        )
        return bool(updated)

    async def run_exists(self, run_id: str) -> bool:
        pool = await self._get_pool()
        found = await pool.fetchval("SELECT 1 FROM abstractruntime_runs WHERE run_id = $1", run_id)
        return found is not None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
