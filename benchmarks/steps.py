"""What a durable step costs, next to the raw-driver floor measured in the same process.

    python -m benchmarks.steps [--postgres URL] [--rounds 5] [--quick] [--only NAME ...]
                               [--pool-size N]

Postgres URL: --postgres, else $ABSTRACTRUNTIME_TEST_POSTGRES_URL (a database we may create
scratch databases next to); without one, SQLite only. Prints one JSON line per measurement, then
a table of medians with min-max over the rounds and the ratio to the floor. Rounds interleave the
workloads and backends, since this machine's speed drifts over minutes: only ratios within a run
are worth comparing.

Workloads (names for --only):
- ``sequential``: 100 runs one after another, each 20 nodes that perform a trivial effect, so
  every step commits its state and a ledger row. Floor: the same UPDATE of the run row plus
  INSERT of a ledger row in one transaction, with the raw driver (stdlib sqlite3 in one thread
  hop per transaction; asyncpg).
- ``pure``: a 20-node chain of pure transitions (plans with only ``next_node``): time per run
  and commits per run.
- ``roundtrip``: pause/resume round trip: ``resume`` of a waiting run until it is completed.
- ``concurrent``: 500 runs x 5 effectful steps started at once in one process; steps/s. Floor:
  the same transactions from 500 concurrent tasks on an asyncpg pool as large as the store's
  (``--pool-size``, default the store's default) or the one writer thread (sqlite3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    Runtime,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.urls import DEFAULT_POOL_SIZE
from benchmarks.scheduler import ScratchPostgres, emit

EFFECT = EffectType.TOOL_CALLS
STATE = json.dumps(
    {"run_id": "x" * 32, "vars": {"n": 1, "seen": list(range(10))}, "pad": "p" * 300}
)
RECORD = json.dumps({"step_id": "s" * 32, "node_id": "n1", "status": "completed", "pad": "q" * 300})


def effect_chain(steps: int, workflow_id: str) -> WorkflowSpec:
    """``steps`` nodes, each performing a trivial effect (so each step commits)."""

    def make(i: int) -> Any:
        def node(run: RunState, ctx: Any) -> StepPlan:
            last = i + 1 == steps
            return StepPlan(
                node_id=f"n{i}",
                effect=Effect(EFFECT, {"i": i}, result_key=f"r{i % 3}"),
                next_node=None if last else f"n{i + 1}",
                complete_output={"done": True} if last else None,
            )

        return node

    return WorkflowSpec(workflow_id, "n0", {f"n{i}": make(i) for i in range(steps)})


def pure_chain(steps: int) -> WorkflowSpec:
    def make(i: int) -> Any:
        def node(run: RunState, ctx: Any) -> StepPlan:
            run.vars["n"] = i
            if i + 1 < steps:
                return StepPlan(node_id=f"n{i}", next_node=f"n{i + 1}")
            return StepPlan(node_id=f"n{i}", complete_output={"n": i})

        return node

    return WorkflowSpec("bench_pure", "n0", {f"n{i}": make(i) for i in range(steps)})


def approval() -> WorkflowSpec:
    def ask(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="ask",
            effect=Effect(EffectType.ASK_USER, {"prompt": "ok?"}, result_key="answer"),
            next_node="done",
        )

    def done(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"answer": run.vars["answer"]})

    return WorkflowSpec("bench_approval", "ask", {"ask": ask, "done": done})


def trivial(run: RunState, effect: Effect, next_node: str | None) -> EffectOutcome:
    return EffectOutcome.completed({"ok": effect.payload.get("i")})


def runtime(store: SqlStore) -> Runtime:
    return Runtime(store=store, effect_handlers={EFFECT: trivial})


# -- the raw-driver floors ---------------------------------------------------------------------

UPDATE = (
    "UPDATE abstractruntime_runs SET state = {p1}, version = version + 1, ledger_seq = {p2}, "
    "updated_at = {p3} WHERE run_id = {p4}"
)
INSERT = (
    "INSERT INTO abstractruntime_ledger (run_id, seq, step_id, node_id, status, attempt, "
    "record_hash, created_at, record) "
    "VALUES ({p1}, {p2}, 's', 'n', 'completed', 1, 'h', {p3}, {p4})"
)


class SqliteFloor:
    """stdlib sqlite3 on its own thread, one hop per transaction, WAL + synchronous=FULL."""

    def __init__(self, path: str) -> None:
        self.pool = ThreadPoolExecutor(1)
        self.conn: sqlite3.Connection | None = None
        self.path = path

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        self.conn = conn

    async def hop(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def setup(self, runs: int) -> list[str]:
        await self.hop(self._open)
        ids = [uuid.uuid4().hex for _ in range(runs)]

        def insert() -> None:
            assert self.conn is not None
            self.conn.executemany(
                "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, created_at, "
                "updated_at, version, ledger_seq, state) VALUES (?, 'floor', 'running', "
                "'2026-01-01', '2026-01-01', 0, 0, ?)",
                [(run_id, STATE) for run_id in ids],
            )

        await self.hop(insert)
        return ids

    async def step(self, run_id: str, seq: int) -> None:
        def txn() -> None:
            assert self.conn is not None
            now = "2026-01-01 00:00:00"
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                UPDATE.format(p1="?", p2="?", p3="?", p4="?"), (STATE, seq, now, run_id)
            )
            self.conn.execute(
                INSERT.format(p1="?", p2="?", p3="?", p4="?"), (run_id, seq, now, RECORD)
            )
            self.conn.execute("COMMIT")

        await self.hop(txn)

    async def close(self) -> None:
        if self.conn is not None:
            await self.hop(self.conn.close)
        self.pool.shutdown()


class PostgresFloor:
    """asyncpg: the same two statements in one transaction (a pool for concurrent work)."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None

    async def setup(self, runs: int) -> list[str]:
        size = self.pool_size
        self.pool = await asyncpg.create_pool(self.dsn, min_size=size, max_size=size)
        ids = [uuid.uuid4().hex for _ in range(runs)]
        await self.pool.executemany(
            "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, created_at, "
            "updated_at, version, ledger_seq, state) VALUES ($1, 'floor', 'running', now(), "
            "now(), 0, 0, $2)",
            [(run_id, STATE) for run_id in ids],
        )
        return ids

    async def step(self, run_id: str, seq: int) -> None:
        assert self.pool is not None
        now = time_now()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                UPDATE.format(p1="$1", p2="$2", p3="$3", p4="$4"), STATE, seq, now, run_id
            )
            await conn.execute(
                INSERT.format(p1="$1", p2="$2", p3="$3", p4="$4"), run_id, seq, now, RECORD
            )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


def time_now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


Floor = SqliteFloor | PostgresFloor


# -- workloads ---------------------------------------------------------------------------------


async def sequential(store: SqlStore, floor: Floor, runs: int, steps: int) -> tuple[float, float]:
    """µs per step: the runtime, then the floor."""
    rt, wf = runtime(store), effect_chain(steps, "bench_seq")
    started = time.perf_counter()
    for _ in range(runs):
        _, state = await rt.run(wf)
        assert state.status.value == "completed", state.error
    ours = (time.perf_counter() - started) / (runs * steps) * 1e6
    ids = await floor.setup(runs)
    started = time.perf_counter()
    for run_id in ids:
        for seq in range(steps):
            await floor.step(run_id, seq)
    raw = (time.perf_counter() - started) / (runs * steps) * 1e6
    return ours, raw


async def pure(store: SqlStore, runs: int, steps: int) -> tuple[float, float]:
    """µs per run of a pure chain, and commits per run (version bumps after creation)."""
    rt, wf = runtime(store), pure_chain(steps)
    started = time.perf_counter()
    commits = []
    for _ in range(runs):
        run_id, _ = await rt.run(wf)
        commits.append((await store.load_run(run_id)).version)
    return (time.perf_counter() - started) / runs * 1e6, statistics.mean(commits)


async def roundtrip(store: SqlStore, runs: int) -> tuple[float, None]:
    """ms from calling resume on a waiting run to holding its completed state."""
    rt, wf = runtime(store), approval()
    waiting = []
    for _ in range(runs):
        run_id, state = await rt.run(wf)
        assert state.waiting is not None
        waiting.append((run_id, state.waiting.wait_key))
    times = []
    for run_id, key in waiting:
        started = time.perf_counter()
        state = await rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={"ok": 1})
        times.append((time.perf_counter() - started) * 1000)
        assert state.status.value == "completed"
    return statistics.median(times), None


async def concurrent(store: SqlStore, floor: Floor, runs: int, steps: int) -> tuple[float, float]:
    """steps/s with ``runs`` runs started at once: the runtime, then the floor."""
    rt, wf = runtime(store), effect_chain(steps, "bench_conc")
    started = time.perf_counter()
    states = await asyncio.gather(*(rt.run(wf) for _ in range(runs)))
    ours = runs * steps / (time.perf_counter() - started)
    assert all(state.status.value == "completed" for _, state in states)
    ids = await floor.setup(runs)

    async def drive(run_id: str) -> None:
        for seq in range(steps):
            await floor.step(run_id, seq)

    started = time.perf_counter()
    await asyncio.gather(*(drive(run_id) for run_id in ids))
    raw = runs * steps / (time.perf_counter() - started)
    return ours, raw


# -- driver ------------------------------------------------------------------------------------


async def fresh(
    backend: str, tmp: Path, scratch: ScratchPostgres | None, pool_size: int
) -> tuple[SqlStore, Floor]:
    if backend == "sqlite":
        path = tmp / f"{uuid.uuid4().hex}.db"
        store = SqlStore(f"sqlite+aiosqlite:///{path}", pool_size=pool_size)
        await store.check()  # creates and migrates the file
        return store, SqliteFloor(str(path))
    assert scratch is not None
    url = await scratch.create()
    return SqlStore(url, pool_size=pool_size), PostgresFloor(url, pool_size)


async def measure(
    results: dict[tuple[str, str], list[tuple[float, float | None]]],
    key: tuple[str, str],
    work: Awaitable[tuple[float, float | None]],
) -> None:
    value, ref = await work
    results.setdefault(key, []).append((value, ref))
    emit(bench=key[1], backend=key[0], value=value, floor_or_extra=ref)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("ABSTRACTRUNTIME_TEST_POSTGRES_URL"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument(
        "--only", nargs="*", default=["sequential", "pure", "roundtrip", "concurrent"]
    )
    parser.add_argument(
        "--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="the store's pool_size"
    )
    args = parser.parse_args()
    runs = 20 if args.quick else 100
    conc_runs = 100 if args.quick else 500
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    results: dict[tuple[str, str], list[tuple[float, float | None]]] = {}

    with tempfile.TemporaryDirectory() as tmp:
        scratch = ScratchPostgres(args.postgres) if args.postgres else None
        try:
            for _ in range(args.rounds):
                for backend in backends:
                    store, floor = await fresh(backend, Path(tmp), scratch, args.pool_size)
                    try:
                        if "sequential" in args.only:
                            await measure(
                                results,
                                (backend, "sequential_us_per_step"),
                                sequential(store, floor, runs, 20),
                            )
                        if "pure" in args.only:
                            await measure(
                                results,
                                (backend, "pure_chain_us_per_run"),
                                pure(store, runs, 20),
                            )
                        if "roundtrip" in args.only:
                            await measure(
                                results, (backend, "roundtrip_ms"), roundtrip(store, runs)
                            )
                    finally:
                        await store.close()
                        await floor.close()
                    if "concurrent" in args.only:
                        store, floor = await fresh(backend, Path(tmp), scratch, args.pool_size)
                        try:
                            await measure(
                                results,
                                (backend, "concurrent_steps_per_s"),
                                concurrent(store, floor, conc_runs, 5),
                            )
                        finally:
                            await store.close()
                            await floor.close()
        finally:
            if scratch is not None:
                await scratch.drop_all()

    print()
    for (backend, bench), values in results.items():
        ours = [v for v, _ in values]
        line = (
            f"{bench:<26} {backend:<9} median {statistics.median(ours):>10,.1f} "
            f"(min {min(ours):,.1f}, max {max(ours):,.1f})"
        )
        refs = [r for _, r in values if r is not None]
        if bench == "pure_chain_us_per_run":
            line += f"; commits per run {statistics.median(refs):.1f}"
        elif refs:
            ratios = [v / r for v, r in values if r]
            line += f"; floor {statistics.median(refs):,.1f}; ratio {statistics.median(ratios):.2f}"
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
