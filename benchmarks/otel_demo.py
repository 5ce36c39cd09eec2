"""The demo's trace: the README's expense approval, started by one process and answered by
another, each exporting its spans to one JSON-lines file; then drawn as a waterfall.

    python -m benchmarks.otel_demo OUT_DIR      # writes OUT_DIR/spans.jsonl and demo-trace.svg

Each process sets OpenTelemetry up with ``configure_sdk()`` from the ``OTEL_*`` variables (no
collector here: ``OTEL_TRACES_EXPORTER=none`` and ``ABSTRACTRUNTIME_OTEL_SPANS_FILE``), as
``abstractruntime worker --otel`` does, and handles its request inside a span of its own, as
an instrumented web framework would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from abstractruntime import Runtime
from abstractruntime.demo import DEMO_WORKFLOW
from abstractruntime.observability import configure_sdk
from abstractruntime.storage import SqlStore

ROOT = Path(__file__).resolve().parents[1]


async def start(url: str) -> None:
    from opentelemetry import trace

    async with SqlStore(url) as store, Runtime(store=store) as rt:
        with trace.get_tracer("expenses-api").start_as_current_span("POST /expenses"):
            await rt.run(DEMO_WORKFLOW, vars={"employee": "ada", "amount": 420})


async def answer(url: str) -> None:
    from opentelemetry import trace

    async with SqlStore(url) as store, Runtime(store=store) as rt:
        (run,) = await store.list_runs(workflow_id=DEMO_WORKFLOW.workflow_id)
        assert run.waiting is not None
        tracer = trace.get_tracer("approvals-api")
        with tracer.start_as_current_span(f"POST /expenses/{run.run_id[:8]}/answer"):
            await rt.resume(
                workflow=DEMO_WORKFLOW,
                run_id=run.run_id,
                wait_key=run.waiting.wait_key,
                payload={"answer": "yes"},
            )


async def _upgrade(url: str) -> None:
    async with SqlStore(url) as store:
        await store.upgrade()


def child(role: str, url: str) -> None:
    shutdown = configure_sdk(f"demo-{role}")
    try:
        asyncio.run(start(url) if role == "start" else answer(url))
    finally:
        shutdown()


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    spans, db = out_dir / "spans.jsonl", out_dir / "demo.db"
    for path in (spans, db):
        path.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{db}"
    asyncio.run(_upgrade(url))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "ABSTRACTRUNTIME_OTEL_SPANS_FILE": str(spans),
    }
    for role in ("start", "answer"):
        command = [sys.executable, "-m", "benchmarks.otel_demo", "--child", role, url]
        subprocess.run(command, check=True, cwd=ROOT, env=env)
    svg = out_dir / "demo-trace.svg"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "waterfall.py"),
            str(spans),
            str(svg),
            "--title",
            "abstractruntime demo: an expense approval across two processes",
        ],
        check=True,
    )


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main(Path(sys.argv[1]))
