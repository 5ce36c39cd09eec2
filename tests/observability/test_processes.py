"""One trace across processes: a run started and driven here waits; a real subprocess resumes
it and exports its spans to a file; both halves assemble into one trace, a span per ledger
record in order. On SQLite and Postgres."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from abstractruntime import RunStatus, Runtime
from abstractruntime.observability.export import read_spans
from abstractruntime.storage import SqlStore
from tests.observability.conftest import Otel, hex_trace
from tests.workflows import APPROVAL

ROOT = Path(__file__).resolve().parents[2]


async def test_a_run_resumed_by_another_process_is_one_trace(
    otel: Otel, db_url: str, tmp_path: Path
) -> None:
    async with SqlStore(db_url) as store, Runtime(store=store) as rt:
        with otel.tracer.start_as_current_span("POST /runs"):
            run_id = await rt.start(workflow=APPROVAL)
        state = await rt.tick(workflow=APPROVAL, run_id=run_id)
    assert state.waiting is not None

    spans_file = tmp_path / "spans.jsonl"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.observability.resume_child",
        db_url,
        run_id,
        state.waiting.wait_key,
        str(spans_file),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()

    async with SqlStore(db_url) as store, Runtime(store=store) as rt:
        assert (await rt.get_state(run_id)).status is RunStatus.COMPLETED
        ledger = await rt.get_ledger(run_id)

    (start,) = otel.spans("abstractruntime.start")
    run_trace = hex_trace(start)
    start_id = f"{start.get_span_context().span_id:016x}"
    here = [
        {
            "trace_id": hex_trace(s),
            "parent_span_id": f"{s.parent.span_id:016x}" if s.parent else None,
            "attributes": dict(s.attributes or {}),
            "pid": os.getpid(),
        }
        for s in otel.steps(run_id)
    ]
    there = [s for s in read_spans(spans_file) if s["name"] == "abstractruntime.step"]
    assert {s["pid"] for s in there} == {child.pid}
    steps = sorted(here + there, key=lambda s: s["attributes"]["abstractruntime.ledger_seq"])
    assert [s["attributes"]["abstractruntime.ledger_seq"] for s in steps] == list(
        range(len(ledger))
    )
    assert [s["attributes"]["abstractruntime.node_id"] for s in steps] == [
        r["node_id"] for r in ledger
    ]
    assert [s["pid"] for s in steps] == [os.getpid(), child.pid, child.pid]
    assert {s["trace_id"] for s in steps} == {run_trace}  # one trace
    assert {s["parent_span_id"] for s in steps} == {start_id}  # under the run's start span
    # The child's steps link to the request that answered, in the child's own trace.
    (answer,) = [s for s in read_spans(spans_file) if s["name"] == "POST /answer"]
    assert answer["trace_id"] != run_trace
    assert all(
        s["links"] == [{"trace_id": answer["trace_id"], "span_id": answer["span_id"]}]
        for s in there
    )
    commits = [s for s in read_spans(spans_file) if s["name"] == "abstractruntime.commit"]
    assert commits and {c["trace_id"] for c in commits} == {run_trace}
