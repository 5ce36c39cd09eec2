"""Scheduler benchmarks: wake-up latency and multi-worker throughput.

    python -m benchmarks.scheduler [--postgres URL] [--rounds 5] [--quick]

Postgres URL: --postgres, else $ABSTRACTRUNTIME_TEST_POSTGRES_URL (a database we may create
scratch databases next to). Prints one JSON line per measurement, then a table.

- wake-up latency: another store (another connection pool, as another process would) commits a
  new runnable run; we time until an idle scheduler has executed its first step. With Postgres
  LISTEN/NOTIFY, and with polling only (poll interval 1 s; 0.1 s too), on Postgres and SQLite.
- throughput: 1, 2 and 4 `abstractruntime worker` processes on one Postgres database drive
  pre-started runs of a 10-step chain whose every node performs a (trivial) effect, so every
  step commits; steps per second from first claim to last completion.
  Rounds are interleaved (1, 2, 4, 1, 2, 4, ...) since this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from abstractruntime import Runtime, create_scheduled_runtime
from abstractruntime.storage import SqlStore
from benchmarks.app import CHAIN, EFFECTS, FIRST_STEP_AT, STEPS

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("abstractruntime"))


def emit(**row: Any) -> None:
    print(json.dumps(row), flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ScratchPostgres:
    def __init__(self, url: str) -> None:
        self.url = url
        self.names: list[str] = []

    def _dsn(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)

    async def create(self) -> str:
        name = f"abstractruntime_bench_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self._dsn())
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        self.names.append(name)
        url = make_url(self.url).set(database=name).render_as_string(False)
        async with SqlStore(url) as store:
            await store.upgrade()
        return url

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self._dsn())
        for name in self.names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def wake_latency(url: str, *, listen: bool, poll_s: float, samples: int) -> list[float]:
    """ms from a run's commit by another pool until an idle scheduler ran its first step."""
    producer = SqlStore(url)
    sr = await create_scheduled_runtime(
        database_url=url,
        workflows=[CHAIN],
        effect_handlers=EFFECTS,
        poll_interval_s=poll_s,
        auto_start=False,
    )
    sr.scheduler.listen = listen
    await sr.scheduler.start()
    rt = Runtime(store=producer)
    latencies = []
    try:
        await asyncio.sleep(0.3)  # let the scheduler go idle (and LISTEN)
        for _ in range(samples):
            committed = time.perf_counter()
            run_id = await rt.start(workflow=CHAIN)
            while run_id not in FIRST_STEP_AT:
                await asyncio.sleep(0.0005)
            latencies.append((FIRST_STEP_AT[run_id] - committed) * 1000)
            # the next event comes at a random phase of the scheduler's poll clock
            await asyncio.sleep(random.uniform(0.05, poll_s + 0.05))
    finally:
        await sr.stop()
        await producer.close()
    return latencies


def start_workers(url: str, n: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        with (log_dir / f"w{n}-{i}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        EXE,
                        "--database-url",
                        url,
                        "worker",
                        "--app",
                        "benchmarks.app:app",
                        "--poll-interval",
                        "0.2",
                        "--max-concurrency",
                        "100",
                    ],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


async def throughput(url: str, workers: int, runs: int, log_dir: Path) -> float:
    """Steps per second of ``workers`` processes draining ``runs`` pre-started runs."""
    async with SqlStore(url) as store:
        rt = Runtime(store=store)
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM abstractruntime_runs"))
        for _ in range(runs):
            await rt.start(workflow=CHAIN)
        procs = start_workers(url, workers, log_dir)
        try:
            started = None
            while True:
                async with store.engine.connect() as conn:
                    row = (
                        await conn.execute(
                            sa.text(
                                "SELECT count(*) FILTER (WHERE status = 'completed'), "
                                "count(*) FILTER (WHERE ledger_seq > 0) FROM abstractruntime_runs"
                            )
                        )
                    ).one()
                if started is None and row[1] > 0:
                    started = time.perf_counter()
                if row[0] == runs:
                    break
                await asyncio.sleep(0.02)
            assert started is not None
            elapsed = time.perf_counter() - started
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
    return runs * STEPS / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("ABSTRACTRUNTIME_TEST_POSTGRES_URL"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer samples and runs")
    args = parser.parse_args()
    samples = 15 if args.quick else 40
    runs = 200 if args.quick else 500
    table: list[tuple[str, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
        cases = [("sqlite", sqlite_url, False, 1.0), ("sqlite", sqlite_url, False, 0.1)]
        scratch = ScratchPostgres(args.postgres) if args.postgres else None
        try:
            if scratch is not None:
                pg_url = await scratch.create()
                cases += [
                    ("postgres", pg_url, True, 1.0),
                    ("postgres", pg_url, False, 1.0),
                    ("postgres", pg_url, False, 0.1),
                ]
            for backend, url, listen, poll_s in cases:
                values = await wake_latency(url, listen=listen, poll_s=poll_s, samples=samples)
                mode = "LISTEN/NOTIFY" if listen else f"polling {poll_s:g}s"
                emit(
                    bench="wake_latency_ms",
                    backend=backend,
                    mode=mode,
                    median=statistics.median(values),
                    p99=pct(values, 0.99),
                    min=min(values),
                    max=max(values),
                    samples=len(values),
                )
                table.append(
                    (
                        f"wake-up latency, {backend}, {mode}",
                        f"median {statistics.median(values):.1f} ms, "
                        f"p99 {pct(values, 0.99):.1f} ms",
                    )
                )

            if scratch is not None:
                tp_url = await scratch.create()
                results: dict[int, list[float]] = {1: [], 2: [], 4: []}
                for _ in range(args.rounds):
                    for workers in (1, 2, 4):
                        rate = await throughput(tp_url, workers, runs, tmp_path)
                        results[workers].append(rate)
                        emit(
                            bench="throughput_steps_per_s",
                            backend="postgres",
                            workers=workers,
                            runs=runs,
                            steps_per_run=STEPS,
                            value=rate,
                        )
                base = statistics.median(results[1])
                for workers, values in results.items():
                    med = statistics.median(values)
                    table.append(
                        (
                            f"throughput, postgres, {workers} worker(s)",
                            f"{med:,.0f} steps/s (min {min(values):,.0f}, max "
                            f"{max(values):,.0f}; x{med / base:.2f} of 1 worker)",
                        )
                    )
        finally:
            if scratch is not None:
                await scratch.drop_all()

    width = max(len(name) for name, _ in table)
    print()
    for name, value in table:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    asyncio.run(main())
