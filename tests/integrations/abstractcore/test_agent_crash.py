"""Kill -9 a process in the middle of an agent run; a new process finishes it, and the LLM call
the dead process had completed (and committed) is not made again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer
from abstractruntime.storage import SqlStore
from tests.helpers import eventually
from tests.integrations.abstractcore import agent_app

ROOT = Path(__file__).resolve().parents[3]
CHILD = "tests.integrations.abstractcore.agent_child"


async def _spawn(
    db_url: str, server_url: str, run_id: str, mode: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        CHILD,
        db_url,
        server_url,
        run_id,
        mode,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_killed_agent_finishes_in_a_new_process_without_repeating_the_llm_call(
    server: ScriptedChatServer, db_url: str
) -> None:
    server.add(*agent_app.script())
    wf = agent_app.workflow()
    async with SqlStore(db_url) as store:
        rt = Runtime(store=store)
        run_id = await rt.start(workflow=wf, vars={"task": agent_app.TASK})

        # Process 1 asks the LLM (committed), then hangs in a tool: kill it there.
        child = await _spawn(db_url, server.url, run_id, "hang")

        async def committed() -> list[dict[str, Any]]:
            if child.returncode is not None:  # fail now, not at the timeout
                pytest.fail("the child died before its first step")
            return await rt.get_ledger(run_id)

        try:
            await eventually(committed, "the child committed no step", timeout=30, interval=0.02)
        finally:
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
        assert len(server.chat_requests) == 1
        killed = await rt.get_state(run_id)
        assert killed.status is RunStatus.RUNNING
        assert killed.current_node == "act"  # the LLM's answer is committed; the tools are not
        assert killed.vars["llm"]["tool_calls"][0]["name"] == "add"

    # Process 2 takes the run over (once the dead process's lease expired) and finishes it.
    finisher = await _spawn(db_url, server.url, run_id, "finish")
    out, err = await asyncio.wait_for(finisher.communicate(), 60)
    assert finisher.returncode == 0, err.decode()
    final = json.loads(out.decode().strip().splitlines()[-1])
    assert final["status"] == "completed", final
    assert final["output"] == {"answer": "2 + 3 = 5, and Paris is sunny at 21 °C.", "llm_calls": 2}

    # Two LLM calls in all: the first one was not repeated by the new process.
    first, second = server.chat_requests
    assert (
        first.headers["x-abstractcore-run-id"] == second.headers["x-abstractcore-run-id"] == run_id
    )
    assert second.json["messages"][-1]["tool_call_id"] == "call_weather"
    async with SqlStore(db_url) as store:
        ledger = await Runtime(store=store).get_ledger(run_id)
    assert [r["node_id"] for r in ledger] == ["think", "act", "think", "act"]
    assert verify_ledger_chain(ledger)["ok"]
