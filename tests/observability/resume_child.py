"""Child process of the cross-process trace test: answers a waiting run (as an HTTP handler
would, in a span of its own trace) and exports its spans as JSON lines to a file."""

from __future__ import annotations

import asyncio
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from abstractruntime import Runtime
from abstractruntime.observability import instrument
from abstractruntime.observability.export import JsonLinesSpanExporter
from abstractruntime.storage import SqlStore
from tests.workflows import APPROVAL


async def main(url: str, run_id: str, wait_key: str, spans_file: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "resumer"}))
    provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(spans_file)))
    instrument(provider)
    try:
        async with SqlStore(url) as store, Runtime(store=store) as rt:
            with provider.get_tracer("child").start_as_current_span("POST /answer"):
                await rt.resume(
                    workflow=APPROVAL, run_id=run_id, wait_key=wait_key, payload={"answer": "ok"}
                )
    finally:
        provider.shutdown()  # flushes the batch to the file


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
