"""A ReAct agent on a durable runtime: ``python examples/agent.py ["your question"]``.

The agent alternates LLM calls and tool calls until the model answers; every step is committed
to the database with its hash-chained ledger, so a crash loses at most the step in flight.

The model: an OpenAI-compatible chat-completions server given by environment variables,

    ABSTRACTRUNTIME_LLM_BASE_URL   the server's root, without /v1 (an AbstractCore server,
                                   Ollama: http://localhost:11434, https://api.openai.com ...)
    ABSTRACTRUNTIME_LLM_MODEL      the model name (e.g. qwen3:4b, gpt-4o-mini)
    ABSTRACTRUNTIME_LLM_API_KEY    optional: sent as "Authorization: Bearer ..."

or, when no base URL is set, the bundled scripted server, started in this process, whose
scripted "model" answers the default question by calling the tools. Runs are stored in
ABSTRACTRUNTIME_DATABASE_URL (default: the SQLite file ./agent.db).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack

from abstractruntime import verify_ledger_chain
from abstractruntime.integrations.abstractcore import MappingToolExecutor, create_hybrid_runtime
from abstractruntime.integrations.abstractcore.agent import react_agent_workflow
from abstractruntime.integrations.abstractcore.testing import (
    RecordedRequest,
    ScriptedChatServer,
    ScriptedReply,
)

DEFAULT_TASK = "What is (17 + 25) * 3? Use the tools."


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


def _number_tool(name: str, description: str) -> dict[str, object]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }


TOOL_SPECS = [
    _number_tool("add", "Add two numbers a and b"),
    _number_tool("multiply", "Multiply two numbers a and b"),
]


def scripted_model(request: RecordedRequest) -> ScriptedReply:
    """Stands for a model, for the default question: add, then multiply, then answer."""
    messages = request.json["messages"]
    results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    if not results:
        return ScriptedReply.tool_calls([{"name": "add", "arguments": {"a": 17, "b": 25}}])
    if len(results) == 1:
        return ScriptedReply.tool_calls(
            [{"name": "multiply", "arguments": {"a": results[0], "b": 3}}]
        )
    return ScriptedReply.text(f"(17 + 25) * 3 = {results[-1]:g}")


async def main(task: str) -> int:
    base_url = os.environ.get("ABSTRACTRUNTIME_LLM_BASE_URL")
    model = os.environ.get("ABSTRACTRUNTIME_LLM_MODEL", "scripted-model")
    api_key = os.environ.get("ABSTRACTRUNTIME_LLM_API_KEY")
    database_url = os.environ.get("ABSTRACTRUNTIME_DATABASE_URL", "sqlite+aiosqlite:///./agent.db")

    async with AsyncExitStack() as stack:
        if not base_url:
            server = await stack.enter_async_context(ScriptedChatServer(fallback=scripted_model))
            base_url = server.url
            task = DEFAULT_TASK  # the scripted model only knows this one
            print(f"no ABSTRACTRUNTIME_LLM_BASE_URL: using the scripted model at {base_url}")
        runtime = await stack.enter_async_context(
            await create_hybrid_runtime(
                server_base_url=base_url,
                model=model,
                database_url=database_url,
                headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
                tool_executor=MappingToolExecutor.from_tools([add, multiply]),
                timeout_s=120.0,
            )
        )
        workflow = react_agent_workflow(tools=TOOL_SPECS, params={"temperature": 0})
        print(f"task: {task}")
        run_id, state = await runtime.run(workflow, {"task": task})
        ledger = await runtime.get_ledger(run_id)

    for record in ledger:
        effect = (record.get("effect") or {}).get("type", "-")
        print(f"  step {record['node_id']:<6} {effect:<11} {record['status']}")
    print(f"run {run_id}: {state.status} ({database_url})")
    print(f"ledger: {len(ledger)} records, hash chain ok: {verify_ledger_chain(ledger)['ok']}")
    if state.output is None:
        print(f"error: {state.error}")
        return 1
    print(f"answer ({state.output['llm_calls']} LLM calls): {state.output['answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(" ".join(sys.argv[1:]) or DEFAULT_TASK)))
