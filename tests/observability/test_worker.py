"""``abstractruntime worker --otel --log-format json``: a real worker process continues the
trace of a run started here, exports its spans (to a file, via the standard SDK set-up), and
logs JSON lines carrying the run id, the node id and the trace id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from abstractruntime import RunStatus, Runtime
from abstractruntime.observability.export import read_spans
from abstractruntime.storage import SqlStore
from tests.acceptance.worker_app import TEN_STEPS
from tests.helpers import EXE, eventually
from tests.observability.conftest import Otel, hex_trace

ROOT = Path(__file__).resolve().parents[2]


async def test_a_worker_with_otel_continues_the_runs_trace_and_logs_json(
    otel: Otel, db_url: str, tmp_path: Path
) -> None:
    async with SqlStore(db_url) as store, Runtime(store=store) as rt:
        with otel.tracer.start_as_current_span("POST /runs"):
            run_id = await rt.start(workflow=TEN_STEPS)
    (start,) = otel.spans("abstractruntime.start")
    run_trace = hex_trace(start)

    spans_file, log = tmp_path / "spans.jsonl", tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "none",  # no collector here: the file below gets the spans
        "OTEL_METRICS_EXPORTER": "none",
        "ABSTRACTRUNTIME_OTEL_SPANS_FILE": str(spans_file),
    }
    command = [
        EXE,
        "--database-url",
        db_url,
        "worker",
        "--app",
        "tests.acceptance.worker_app:registry",
        "--poll-interval",
        "0.2",
        "--otel",
        "--log-format",
        "json",
        "-v",
    ]
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with SqlStore(db_url) as store, Runtime(store=store) as rt:

            async def completed() -> bool:
                return (await rt.get_state(run_id)).status is RunStatus.COMPLETED

            await eventually(completed, "the worker never completed the run", timeout=30)
            ledger = await rt.get_ledger(run_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()

    spans = read_spans(spans_file)  # flushed when the worker stopped
    steps = sorted(
        (s for s in spans if s["name"] == "abstractruntime.step"),
        key=lambda s: s["attributes"]["abstractruntime.ledger_seq"],
    )
    assert [s["attributes"]["abstractruntime.ledger_seq"] for s in steps] == list(
        range(len(ledger))
    )
    assert {s["trace_id"] for s in steps} == {run_trace}
    assert {s["service"] for s in steps} == {"abstractruntime-worker"}
    polls = {s["span_id"] for s in spans if s["name"] == "abstractruntime.scheduler.poll"}
    assert polls and all(link["span_id"] in polls for s in steps for link in s["links"])

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    step_lines = [x for x in lines if x["logger"] == "abstractruntime.step"]
    assert len(step_lines) == len(ledger)
    assert {x["run_id"] for x in step_lines} == {run_id}
    assert [x["node_id"] for x in step_lines] == [r["node_id"] for r in ledger]
    assert {x["trace_id"] for x in step_lines} == {run_trace}


async def test_a_verbose_worker_without_otel_logs_each_step_as_json(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with SqlStore(sqlite_url) as store, Runtime(store=store) as rt:
        run_id = await rt.start(workflow=TEN_STEPS)
    log = tmp_path / "worker.log"
    command = [
        EXE,
        "--database-url",
        sqlite_url,
        "worker",
        "--app",
        "tests.acceptance.worker_app:registry",
        "--poll-interval",
        "0.2",
        "--log-format",
        "json",
        "-v",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with SqlStore(sqlite_url) as store, Runtime(store=store) as rt:

            async def completed() -> bool:
                return (await rt.get_state(run_id)).status is RunStatus.COMPLETED

            await eventually(completed, "the worker never completed the run", timeout=30)
            ledger = await rt.get_ledger(run_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    step_lines = [x for x in lines if x["logger"] == "abstractruntime.step"]
    assert [(x["run_id"], x["ledger_seq"], x["node_id"]) for x in step_lines] == [
        (run_id, seq, record["node_id"]) for seq, record in enumerate(ledger)
    ]
    assert not any("trace_id" in x for x in lines)  # no OpenTelemetry: no ids
    assert "opentelemetry" not in log.read_text()
