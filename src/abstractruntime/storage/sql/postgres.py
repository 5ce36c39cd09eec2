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

#: The run's columns that project its state, in the order the statements below take them.
PROJECTED = (
    "workflow_id",
    "status",
    "current_node",
    "wait_reason",
    "wait_key",
    "wait_until",
    "parent_run_id",
    "actor_id",
    "session_id",
)
#: A ledger row's columns (but ``run_id``), in the order the statements below take them.
RECORD_COLUMNS = (
    "seq",
    "step_id",
    "node_id",
    "status",
    "attempt",
    "idempotency_key",
    "prev_hash",
    "record_hash",
    "created_at",
    "record",
)

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
            *(run[column] for column in PROJECTED),
            run["updated_at"],
            run["state"],
            run["ledger_seq"],
            run["ledger_head"],
            run["lease_owner"],
            run["lease_expires_at"],
            run["due_at"],
            version,
            *([row[column] for row in rows] for column in RECORD_COLUMNS),
            parent_at,
            parent_id,
            NOTIFY_CHANNEL,
            notify,
        )
        return bool(updated)

    async def create_run(
        self, run_id: str, created_at: datetime, run: dict[str, Any], *, notify: bool
    ) -> None:
        pool = await self._get_pool()
        await pool.execute(
            INSERT_RUN,
            run_id,
            *(run[column] for column in PROJECTED),
            created_at,
            run["updated_at"],
            run["lease_owner"],
            run["lease_expires_at"],
            run["state"],
            run["due_at"],
            NOTIFY_CHANNEL,
            notify,
        )

    async def claim_run(
        self, run_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> asyncpg.Record | tuple[str | None, datetime | None] | None:
        """The claimed run's handle row; else its live lease ``(owner, until)``; else None."""
        pool = await self._get_pool()
        row = await pool.fetchrow(CLAIM_RUN, run_id, owner, lease_until, now)
        if row is not None:
            return row
        lease = await pool.fetchrow(LEASE_OF, run_id)
        return None if lease is None else (lease[0], lease[1])

    async def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        workflow_ids: Sequence[str] | None,
    ) -> list[asyncpg.Record]:
        pool = await self._get_pool()
        args: list[Any] = [owner, lease_until, now, limit]
        if workflow_ids is not None:
            args.append(list(workflow_ids))
        return list(await pool.fetch(claim_due_sql(workflow_ids is not None), *args))

    async def release(
        self, run_id: str, owner: str | None, version: int, due: datetime | None
    ) -> None:
        pool = await self._get_pool()
        await pool.execute(RELEASE, run_id, owner, version, due, NOTIFY_CHANNEL)

    async def renew(self, owner: str, run_ids: Sequence[str], lease_until: datetime) -> None:
        pool = await self._get_pool()
        await pool.execute(RENEW, owner, list(run_ids), lease_until)

    async def run_exists(self, run_id: str) -> bool:
        pool = await self._get_pool()
        found = await pool.fetchval("SELECT 1 FROM abstractruntime_runs WHERE run_id = $1", run_id)
        return found is not None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


_HANDLE = "state::text AS state_json, version, ledger_seq, ledger_head"


def _claim(owner: str, until: str, now: str) -> str:
    """The start of a claim, its parameters numbered as given, and the lease test."""
    return (
        f"UPDATE abstractruntime_runs SET lease_owner = {owner}, lease_expires_at = {until}, "
        f"due_at = {until}, version = version + 1 WHERE "
        f"(lease_expires_at IS NULL OR lease_expires_at <= {now}) AND "
    )


INSERT_RUN = """
WITH ins AS (
    INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node, wait_reason,
        wait_key, wait_until, parent_run_id, actor_id, session_id, created_at, updated_at,
        version, ledger_seq, ledger_head, lease_owner, lease_expires_at, state, due_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, 0, NULL, $13, $14, $15::json,
        $16)
    RETURNING run_id
)
SELECT pg_notify($17, run_id) FROM ins WHERE $18::boolean
"""
CLAIM_RUN = f"{_claim('$2', '$3', '$4')}run_id = $1 RETURNING {_HANDLE}"
LEASE_OF = "SELECT lease_owner, lease_expires_at FROM abstractruntime_runs WHERE run_id = $1"


def claim_due_sql(filtered: bool) -> str:
    """Claim up to ``$4`` due, unclaimed runs (oldest due first) by the ``due_at`` index;
    SKIP LOCKED: concurrent workers take disjoint batches instead of queueing on row locks.
    Parameters: owner, lease until, now, limit (and the workflow ids when ``filtered``)."""
    only = " AND workflow_id = ANY($5::text[])" if filtered else ""
    return (
        f"{_claim('$1', '$2', '$3')}run_id IN (SELECT run_id FROM abstractruntime_runs "
        f"WHERE due_at <= $3 AND (lease_expires_at IS NULL OR lease_expires_at <= $3){only} "
        f"ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING {_HANDLE}"
    )


RELEASE = """
WITH rel AS (
    UPDATE abstractruntime_runs SET lease_owner = NULL, lease_expires_at = NULL,
        due_at = CASE WHEN version = $3 THEN $4 ELSE due_at END
    WHERE run_id = $1 AND lease_owner = $2
    RETURNING run_id
)
SELECT pg_notify($5, run_id) FROM rel WHERE $4::timestamptz IS NOT NULL
"""
RENEW = (
    "UPDATE abstractruntime_runs SET lease_expires_at = $3, due_at = $3 "
    "WHERE lease_owner = $1 AND run_id = ANY($2::text[])"
)
