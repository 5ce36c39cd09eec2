"""A scheduler process watching 100,000 waiting runs: its memory, and what one poll cycle reads.

    python -m benchmarks.memory [--postgres URL] [--runs 100000] [--seconds 10]

Fills a database (a SQLite file, and a scratch Postgres database when a URL is given) with
``--runs`` runs waiting until tomorrow, half as many waiting for an event, and 50 runs due now;
then starts ``abstractruntime worker`` as a separate process (poll interval 0.1 s) and samples its
RSS from /proc for ``--seconds``. Prints JSON lines and a table: the worker's peak RSS, the RSS
of an idle worker on an empty database for comparison, and the poll cycles it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from abstractruntime import Runtime
from abstractruntime.storage import SqlStore
from benchmarks.app import CHAIN
from benchmarks.scheduler import ScratchPostgres, emit

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("abstractruntime"))
DUE = 50


async def fill(url: str, waiting: int) -> None:
    """``waiting`` runs waiting for tomorrow, ``waiting // 2`` for an event, ``DUE`` due now."""
    async with SqlStore(url) as store:
        await store.check()
        if store.dialect == "postgresql":
            series = "generate_series(1, :n) AS g(x)"
            tomorrow, now = "now() + interval '1 day'", "now()"
        else:
            series = (
                "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
                "SELECT x FROM c)"
            )
            stamp = "strftime('%Y-%m-%d %H:%M:%S', 'now'{}) || '.000000'"
            tomorrow, now = stamp.format(", '+1 day'"), stamp.format("")
        state = "CAST('{}' AS JSON)" if store.dialect == "postgresql" else "'{}'"
        insert = (
            "INSERT INTO abstractruntime_runs (run_id, workflow_id, status, current_node, "
            "wait_reason, wait_key, wait_until, created_at, updated_at, version, ledger_seq, "
            "state, due_at) SELECT :prefix || CAST(x AS TEXT), :wf, 'waiting', 'n0', :reason, "
            "CAST(:key AS TEXT), {until}, {now}, {now}, 1, 0, {state}, {until} FROM {series}"
        )
        async with store.engine.begin() as conn:
            for prefix, n, reason, until in [
                ("later-", waiting, "until", tomorrow),
                ("event-", waiting // 2, "event", "NULL"),
            ]:
                sql = insert.format(until=until, now=now, state=state, series=series)
                key = "evt:x" if reason == "event" else None
                params = {"prefix": prefix, "n": n, "reason": reason, "key": key}
                await conn.execute(sa.text(sql), {**params, "wf": CHAIN.workflow_id})
        rt = Runtime(store=store)
        for _ in range(DUE):
            await rt.start(workflow=CHAIN)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def watch(url: str, seconds: float) -> tuple[int, int]:
    """Peak RSS (KiB) of a worker process over ``seconds``, and its final RSS."""
    proc = subprocess.Popen(
        [
            EXE,
            "--database-url",
            url,
            "worker",
            "--app",
            "benchmarks.app:app",
            "--poll-interval",
            "0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = last = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with status {proc.returncode}")
            last = rss_kib(proc.pid)
            peak = max(peak, last)
    finally:
        proc.terminate()
        proc.wait(30)
    return peak, last


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("ABSTRACTRUNTIME_TEST_POSTGRES_URL"))
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    table: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = ScratchPostgres(args.postgres) if args.postgres else None
        try:
            cases = [("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'full.db'}")]
            empty = [("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'empty.db'}")]
            if scratch is not None:
                cases.append(("postgres", await scratch.create()))
                empty.append(("postgres", await scratch.create()))
            for (backend, url), (_, empty_url) in zip(cases, empty, strict=True):
                await fill(url, args.runs)
                async with SqlStore(empty_url) as store:
                    await store.check()
                idle_peak, _ = await watch(empty_url, args.seconds)
                peak, last = await watch(url, args.seconds)
                emit(
                    bench="worker_rss_kib",
                    backend=backend,
                    waiting_runs=args.runs + args.runs // 2,
                    peak=peak,
                    last=last,
                    idle_empty_db_peak=idle_peak,
                )
                table.append(
                    f"{backend:<9} worker watching {args.runs + args.runs // 2:,} waiting runs: "
                    f"peak RSS {peak / 1024:.1f} MiB (empty database: {idle_peak / 1024:.1f} MiB)"
                )
        finally:
            if scratch is not None:
                await scratch.drop_all()
    print()
    print("\n".join(table))


if __name__ == "__main__":
    asyncio.run(main())
