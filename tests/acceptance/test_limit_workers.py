"""Shared limits across worker processes on one database (SQLite and Postgres).

Three ``abstractruntime worker`` processes drive runs of one ``llm_call`` effect, which writes
its start and end to an fsynced trace (``limits_app.py``). With ``max_concurrent=2`` the trace
never shows more than two effects at once, even when a worker is SIGKILLed in the middle of one
(its slot comes back when its lease expires); with ``rate=20`` per second and more demand than
that, the starts of ten seconds are within 10% of 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from abstractruntime import Runtime
from abstractruntime.core.throttle import Request
from abstractruntime.storage import SqlStore
from tests.acceptance.limits_app import LIMITED, MAX_CONCURRENT, RATE
from tests.acceptance.test_docs import BLOCK, _env
from tests.acceptance.test_workers import count_completed, wait_until_completed
from tests.helpers import EXE, cli, eventually

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0


def start_worker(url: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                EXE,
                "--database-url",
                url,
                "worker",
                "--app",
                "tests.acceptance.limits_app:app",
                "--poll-interval",
                "0.1",
                "--lease",
                str(LEASE_S),
                "--grace",
                "5",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def read_trace(path: Path) -> list[tuple[str, str, int, float]]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines() if line]
    return [(kind, run, int(pid), float(at)) for kind, run, pid, at in lines]


def peak_concurrency(trace: list[tuple[str, str, int, float]], deaths: dict[int, float]) -> int:
    """Most effects in flight at once; an effect of a killed worker ends at its death."""
    events: list[tuple[float, int]] = []
    open_: dict[tuple[str, int], float] = {}
    for kind, run, pid, at in trace:
        if kind == "start":
            open_[(run, pid)] = at
            events.append((at, 1))
        else:
            del open_[(run, pid)]
            events.append((at, -1))
    for (run, pid), _at in open_.items():
        assert pid in deaths, f"run {run}'s effect in worker {pid} never ended, yet it lives"
        events.append((deaths[pid], -1))
    peak = current = 0
    for _at, delta in sorted(events):  # at one time, an end (-1) sorts before a start
        current += delta
        peak = max(peak, current)
    return peak


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_max_concurrent_holds_across_workers_and_a_kill(
    db: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    trace = tmp_path / "trace.log"
    env = {"LIMITS_TRACE": str(trace), "LIMITS_MODE": "concurrent", "LIMITS_EFFECT_S": "0.3"}
    runs = 16
    async with SqlStore(url) as store:
        rt = Runtime(store=store)
        run_ids = [await rt.start(workflow=LIMITED) for _ in range(runs)]
        workers = [start_worker(url, tmp_path / f"w{i}.log", env) for i in range(3)]
        deaths: dict[int, float] = {}
        try:

            def mid_effect() -> int | None:
                open_: dict[tuple[str, int], bool] = {}
                for kind, run, pid, _at in read_trace(trace):
                    if kind == "start":
                        open_[(run, pid)] = True
                    else:
                        open_.pop((run, pid), None)
                return next(iter(pid for _run, pid in open_), None)

            victim_pid = await eventually(mid_effect, "no effect ever started", timeout=30)
            victim = next(w for w in workers if w.pid == victim_pid)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
            deaths[victim_pid] = time.time()
            await wait_until_completed(store, runs, timeout=90)
        finally:
            stop(workers)
        for run_id in run_ids:
            state = await rt.get_state(run_id)
            assert state.output is not None and state.output["answer"]["pid"] != victim_pid
        assert await count_completed(store) == runs
    events = read_trace(trace)
    assert peak_concurrency(events, deaths) == MAX_CONCURRENT  # never more; and it was used
    killed = [(run, pid) for kind, run, pid, _ in events if kind == "start" and pid == victim_pid]
    assert killed, "the victim ran no effect"
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(3))
    assert "Traceback" not in logs


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_rate_limit_holds_within_ten_percent_over_ten_seconds(
    db: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    trace = tmp_path / "trace.log"
    env = {"LIMITS_TRACE": str(trace), "LIMITS_MODE": "rate", "LIMITS_EFFECT_S": "0"}
    seconds = 10.0
    workers = [start_worker(url, tmp_path / f"w{i}.log", env) for i in range(3)]
    try:

        def all_up() -> bool:
            return all("up to" in (tmp_path / f"w{i}.log").read_text() for i in range(3))

        await eventually(all_up, "the workers never started", timeout=30, interval=0.1)
        async with SqlStore(url) as store:
            rt = Runtime(store=store)
            # Demand above the budget the whole time: 40 at once, then 1.25 times the rate.
            for _ in range(2 * RATE):
                await rt.start(workflow=LIMITED)
            began = time.monotonic()
            started = 2 * RATE

            def ten_seconds_traced() -> bool:
                starts = [at for kind, *_, at in read_trace(trace) if kind == "start"]
                return bool(starts) and max(starts) - min(starts) >= seconds

            while not ten_seconds_traced():
                assert time.monotonic() - began < 60, "the workers stalled"
                due = 2 * RATE + int((time.monotonic() - began) * RATE * 1.25)
                for _ in range(due - started):
                    await rt.start(workflow=LIMITED)
                started = max(started, due)
                await asyncio.sleep(0.05)  # the feed's pace; nothing waits on it
    finally:
        stop(workers)
    trace_starts = {run: at for kind, run, _pid, at in read_trace(trace) if kind == "start"}
    starts = sorted(trace_starts.values())
    first = starts[0]
    in_ten = sum(1 for at in starts if at < first + seconds)
    budget = RATE * seconds
    per_second = [sum(1 for at in starts if first + i <= at < first + i + 1) for i in range(11)]
    # The limit holds: never more than the budget (and a tenth: a grant is taken up after its
    # time), wherever the ten seconds start.
    busiest = max(
        sum(1 for other in starts[i:] if other < at + seconds) for i, at in enumerate(starts)
    )
    assert busiest <= budget * 1.1, f"{busiest} starts in {seconds:g} s: {per_second}"
    # And it is held, not undershot: the grants the budget scheduled (a run's reserved time,
    # or its start when it found room at once) are within 10% of the budget. Effects start when
    # their workers take them up, which on a loaded machine can be later.
    async with SqlStore(url) as store:
        rt = Runtime(store=store)
        scheduled = []
        for run_id, at in trace_starts.items():
            waits = [r for r in await rt.get_ledger(run_id) if r["status"] == "waiting"]
            if waits:
                at = datetime.fromisoformat(waits[-1]["result"]["retry_at"]).timestamp()
            scheduled.append(at)
    scheduled.sort()
    granted = sum(1 for at in scheduled if at < scheduled[0] + seconds)
    assert abs(granted - budget) <= budget * 0.1, (
        f"{granted} grants scheduled in {seconds:g} s ({in_ten} started: {per_second})"
    )
    # Not for lack of demand: more runs than that were waiting for the budget all along.
    assert started >= budget * 1.1


async def test_the_limits_command_shows_each_budgets_use(db_url: str, tmp_path: Path) -> None:
    assert cli("limits", cwd=tmp_path, url=db_url).stdout.strip() == "(no limit has been used)"
    slot = Request("concurrent:llm_call", "acme", "concurrent", "effect", 2)
    rate = Request("rate:llm_call", "", "rate", "effect", 20, 3600.0)  # outlives the command
    async with SqlStore(db_url) as store:
        rt = Runtime(store=store)
        run_id = await rt.start(workflow=LIMITED)
        now = datetime.now(timezone.utc)
        handle = await store.claim_run(run_id, "w", now, now + timedelta(seconds=60))
        assert (await store.acquire_limits(run_id, handle.version, [slot, rate], now)).granted
    result = cli("--json", "limits", cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["concurrent:llm_call"] == {
        "name": "concurrent:llm_call",
        "key": "acme",
        "kind": "concurrent",
        "scope": "effect",
        "capacity": 2,
        "per_s": None,
        "used": 1,
        "waiting": 0,
    }
    assert (rows["rate:llm_call"]["used"], rows["rate:llm_call"]["per_s"]) == (1, 3600.0)
    table = cli("limits", cwd=tmp_path, url=db_url).stdout
    assert "concurrent:llm_call  acme" in table and "20/3600s" in table


def test_the_limits_section_of_operations_md_runs(tmp_path: Path) -> None:
    section = (ROOT / "docs" / "operations.md").read_text().split("## Limits", 1)[1]
    (tmp_path / "page.md").write_text(section.split("\n## ", 1)[0])
    code = [c for lang, c in BLOCK.findall((tmp_path / "page.md").read_text()) if lang == "python"]
    shell = "set -euo pipefail\n" + "\n".join(
        c for lang, c in BLOCK.findall((tmp_path / "page.md").read_text()) if lang == "bash"
    )
    assert code, "the Limits section has no python example"
    ran = subprocess.run(
        [sys.executable, "-c", code[0]],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    # Two calls at once at most (how many did overlap depends on timing: not asserted).
    assert re.search(r"^all done; at most [12] calls at once$", ran.stdout, re.MULTILINE)
    shown = subprocess.run(
        ["bash", "-c", shell],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "rate:llm_call" in shown.stdout and "60/60s" in shown.stdout
    assert "runs@summarise" in shown.stdout
