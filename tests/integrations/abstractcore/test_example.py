"""``examples/agent.py`` runs, with the bundled scripted model and against a given endpoint."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from abstractruntime.integrations.abstractcore.testing import (
    ScriptedChatServer,
    ScriptedReply,
)

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "agent.py"


async def _run_example(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_LLM_")}
    clean["ABSTRACTRUNTIME_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        cwd=tmp_path,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_example_with_the_bundled_scripted_model(tmp_path: Path) -> None:
    code, out = await _run_example(tmp_path)
    assert code == 0, out
    assert "using the scripted model" in out
    assert "answer (3 LLM calls): (17 + 25) * 3 = 126" in out
    assert "hash chain ok: True" in out
    assert (tmp_path / "agent.db").exists()


async def test_example_against_a_given_endpoint(tmp_path: Path) -> None:
    async with ScriptedChatServer(
        [
            ScriptedReply.tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}]),
            ScriptedReply.text("1 + 2 = 3"),
        ]
    ) as server:
        code, out = await _run_example(
            tmp_path,
            "What is 1 + 2?",
            ABSTRACTRUNTIME_LLM_BASE_URL=server.url,
            ABSTRACTRUNTIME_LLM_MODEL="qwen3:4b",
            ABSTRACTRUNTIME_LLM_API_KEY="sk-example",
        )
    assert code == 0, out
    assert "answer (2 LLM calls): 1 + 2 = 3" in out
    first, second = server.chat_requests
    assert first.json["model"] == "qwen3:4b"
    assert first.json["messages"][-1] == {"role": "user", "content": "What is 1 + 2?"}
    assert first.headers["authorization"] == "Bearer sk-example"
    assert second.json["messages"][-1]["content"] == "3"
