"""Serving the web app over real HTTP: uvicorn on 127.0.0.1 on a free port, in this process
(``served``) or as ``abstractruntime serve`` processes (``serve_process``)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from abstractruntime import RuntimeConfig, create_scheduled_runtime
from abstractruntime.scheduler import ScheduledRuntime
from abstractruntime.storage import SqlStore
from abstractruntime.web import create_app
from tests.web.app import registry

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    sr: ScheduledRuntime
    client: httpx.AsyncClient


@asynccontextmanager
async def served(
    db_url: str,
    *,
    config: RuntimeConfig | None = None,
    scheduler: bool = True,
    mount: str | None = None,
    **app_kwargs: Any,
) -> AsyncIterator[Served]:
    """The app on a ``SqlStore(db_url)`` served by uvicorn in this event loop."""
    store = SqlStore(db_url)
    sr = await create_scheduled_runtime(
        store=store,
        workflows=registry(),
        config=config,
        auto_start=scheduler,
        poll_interval_s=0.2,
    )
    app_kwargs.setdefault("token", TOKEN)
    app: Any = create_app(sr, stream_poll_s=0.1, **app_kwargs)
    if mount is not None:  # as a service embeds it
        app = Starlette(routes=[Mount(mount, app=app)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Served(url, sr, client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        await sr.stop()
        await store.close()


@contextmanager
def serve_process(db_url: str, *extra: str, token: str | None = TOKEN) -> Iterator[str]:
    """``abstractruntime serve`` as a process of its own; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ABSTRACTRUNTIME_TOKEN", None)
    args = [
        sys.executable,
        "-m",
        "abstractruntime.cli",
        "--database-url",
        db_url,
        "serve",
        "--app",
        "tests.web.app:registry",
        "--port",
        str(port),
        "--poll-interval",
        "0.2",
        *extra,
    ]
    if token is not None:
        args += ["--token", token]
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"serve exited: {log.read()}")
            try:
                if httpx.get(f"{url}/login", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start within 30s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise AssertionError("serve did not stop within 15s of SIGTERM") from None
        finally:
            log.close()
