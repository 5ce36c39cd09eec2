"""Purge benchmark: how fast ``store.purge`` deletes, and what it costs a worker meanwhile.

    python -m benchmarks.purge [--database-url URL] [--rows 1000000] [--per-run 100]
                               [--batch 1000] [--idle-s 5] [--workers-runs 4]

Without --database-url: a SQLite file in a temporary directory. With a Postgres URL, that
database is used as is (give a scratch one: the benchmark fills it and deletes from it).

1. fill: ``--rows`` ledger rows in runs of ``--per-run`` records, all completed 60 days ago
   (bulk ``INSERT ... SELECT``, not the runtime: only the purge is measured);
2. a ``Scheduler`` drives ``--workers-runs`` endless runs whose every step performs an effect
   (so every step commits its state and a ledger row) that waits ``THINK_MS``; the step latency
   is the time between two steps of one run, less that wait. ``--idle-s`` seconds of it
   without a purge give the idle figures;
3. then ``store.purge(older_than=30 days, batch=--batch)`` runs on a store of its own (another
   pool, in this process, as the scheduler's retention runs), while the worker goes on; the
   latencies meanwhile are the "during" figures.

Prints one JSON line per figure, then a summary: purge rate (ledger rows/s and runs/s), the
step latency p50/p99 idle and during the purge, and the ratio of the p99s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    StepPlan,
    WorkflowSpec,
    create_scheduled_runtime,
)
from abstractruntime.storage import SqlStore

#: The effect of each step waits this long, so the worker is busy but not saturating a core.
THINK_MS = 2.0

_GAPS: list[float] = []
_LAST: dict[str, float] = {}
_STOP = False


def emit(**row: Any) -> None:
    print(json.dumps(row), flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _loop_node(run: RunState, ctx: Any) -> StepPlan:
    now = time.perf_counter()
    last = _LAST.get(run.run_id)
    if last is not None:
        _GAPS.append((now - last) * 1000 - THINK_MS)
    _LAST[run.run_id] = now
    if _STOP:
        return StepPlan(node_id="loop", complete_output={"stopped": True})
    return StepPlan(
        node_id="loop",
        effect=Effect(EffectType.TOOL_CALLS, {}, result_key="last"),
        next_node="loop",
    )


async def _think(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
    await asyncio.sleep(THINK_MS / 1000)
    return EffectOutcome.completed(None)


LOOP = WorkflowSpec("bench_purge_loop", "loop", {"loop": _loop_node})


def _when(store: SqlStore, at: datetime) -> Any:
    """A timestamp as the store writes it (SQLite: naive UTC text with microseconds)."""
    if store.dialect == "sqlite":
        return f"{at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}.{at.microsecond:06d}"
    return at


async def fill(store: SqlStore, rows: int, per_run: int) -> int:
    """``rows`` ledger rows in completed runs of ``per_run`` records; returns the run count."""
    runs = -(-rows // per_run)
    if store.dialect == "postgresql":
        series = "generate_series(0, :n - 1) AS g(x)"
        json_type = "JSON"
    else:
        series = (
            "(WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < :n - 1) "
            "SELECT x FROM c)"
        )
        json_type = "TEXT"
    ended = _when(store, datetime.now(timezone.utc) - timedelta(days=60))
    record = (
        'CAST(\'{"node_id": "n", "status": "completed", "result": \' || CAST(x AS TEXT) '
        f"|| '}}' AS {json_type})"
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node, "
                "created_at, updated_at, version, ledger_seq, state) "
                f"SELECT 'old' || CAST(x AS TEXT), 'old', 'completed', NULL, :at, :at, 1, "
                f":per_run, CAST('{{}}' AS {json_type}) FROM {series}"
            ),
            {"n": runs, "per_run": per_run, "at": ended},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, status, "
                "attempt, idempotency_key, prev_hash, record_hash, created_at, record) "
                "SELECT 'old' || CAST(x / :per_run AS TEXT), x % :per_run, 's', 'n', "
                f"'completed', 1, NULL, NULL, 'h', :at, {record} FROM {series}"
            ),
            {"n": runs * per_run, "per_run": per_run, "at": ended},
        )
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("ANALYZE"))
    return runs


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    global _STOP
    async with SqlStore(url) as store:
        await store.upgrade()
        started = time.perf_counter()
        runs = await fill(store, args.rows, args.per_run)
        emit(
            event="filled",
            runs=runs,
            rows=args.rows,
            seconds=round(time.perf_counter() - started, 1),
        )

    sr = await create_scheduled_runtime(
        database_url=url,
        workflows=[LOOP],
        effect_handlers={EffectType.TOOL_CALLS: _think},
        poll_interval_s=0.2,
        auto_start=True,
    )
    purger = SqlStore(url)
    try:
        for _ in range(args.workers_runs):
            await sr.start(workflow=LOOP)
        await asyncio.sleep(1.0)  # warm up
        _GAPS.clear()
        await asyncio.sleep(args.idle_s)
        idle = list(_GAPS)
        _GAPS.clear()
        t0 = time.perf_counter()
        result = await purger.purge(
            older_than=timedelta(days=30), batch=args.batch, pause_ratio=args.pause_ratio
        )
        elapsed = time.perf_counter() - t0
        during = list(_GAPS)
    finally:
        _STOP = True
        await asyncio.sleep(0.2)
        await sr.stop()
        await purger.close()
    assert result.runs == runs, result
    out = {
        "backend": "postgres" if url.startswith("postgres") else "sqlite",
        "rows": args.rows,
        "per_run": args.per_run,
        "batch": args.batch,
        "pause_ratio": args.pause_ratio,
        "purged_runs": result.runs,
        "purged_rows": result.ledger_records,
        "purge_s": round(elapsed, 2),
        "rows_per_s": round(result.ledger_records / elapsed),
        "runs_per_s": round(result.runs / elapsed),
        "steps_idle": len(idle),
        "steps_during": len(during),
        "idle_p50_ms": round(statistics.median(idle), 2),
        "idle_p99_ms": round(pct(idle, 0.99), 2),
        "during_p50_ms": round(statistics.median(during), 2),
        "during_p99_ms": round(pct(during, 0.99), 2),
    }
    out["p99_ratio"] = round(out["during_p99_ms"] / out["idle_p99_ms"], 2)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger rows to purge")
    parser.add_argument("--per-run", type=int, default=100, help="ledger rows per run")
    parser.add_argument("--batch", type=int, default=1000, help="store.purge(batch=...)")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle measurement time")
    parser.add_argument(
        "--pause-ratio", type=float, default=0.0, help="store.purge(pause_ratio=...)"
    )
    parser.add_argument("--workers-runs", type=int, default=4, help="runs the worker drives")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'purge.db'}"
        figures = await measure(url, args)
    emit(**figures)
    print(
        f"\n{figures['backend']}: purged {figures['purged_rows']:,} ledger rows "
        f"({figures['purged_runs']:,} runs) in {figures['purge_s']} s = "
        f"{figures['rows_per_s']:,} rows/s\n"
        f"worker step latency  idle p50 {figures['idle_p50_ms']} ms, p99 "
        f"{figures['idle_p99_ms']} ms | during the purge p50 {figures['during_p50_ms']} ms, "
        f"p99 {figures['during_p99_ms']} ms | p99 ratio {figures['p99_ratio']}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
