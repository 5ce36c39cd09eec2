"""An event emitted just before its run reaches the wait, with the emitting process killed
between the emit and the wait: the run, in another process, still receives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from abstractruntime import RunStatus, Runtime
from abstractruntime.storage import SqlStore
from tests.integration.test_events import gate

ROOT = Path(__file__).resolve().parents[2]


async def test_an_event_survives_its_emitter_being_killed(db_url: str) -> None:
    flow = gate("order:7")
    async with SqlStore(db_url) as store:
        rt = Runtime(store=store, workflow_registry=[flow])
        run_id = await rt.start(workflow=flow)  # running, one step before its wait
        env = {**os.environ, "ABSTRACTRUNTIME_CRASH_POINTS": "after_event_stored@1"}
        child = subprocess.run(
            [sys.executable, "-m", "tests.acceptance.event_child", db_url, "order:7"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        state = await rt.tick(workflow=flow, run_id=run_id)  # now it reaches the wait
        assert state.status is RunStatus.COMPLETED
        assert state.vars["event"] == {"from": "child"}
