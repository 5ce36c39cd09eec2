"""The optional extra for real: AbstractCore itself (not a stand-in) drives the local client
against the scripted server, and runs tools through its own registry.

AbstractCore brings about a gigabyte of dependencies, so the default test environment leaves it
out and these tests skip there; ``scripts/test-abstractcore`` makes an environment with the
extra and runs them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from abstractruntime import Effect, EffectType, RunState, RunStatus, Runtime, StepPlan, WorkflowSpec
from abstractruntime.integrations.abstractcore import (
    AbstractCoreToolExecutor,
    LocalAbstractCoreLLMClient,
    create_local_runtime,
)
from abstractruntime.integrations.abstractcore.testing import (
    ScriptedChatServer,
    ScriptedReply,
)

abstractcore = pytest.importorskip(
    "abstractcore", reason="the abstractcore extra is not installed: scripts/test-abstractcore"
)

ADD_SPEC = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def broken() -> str:
    """Always fails."""
    raise RuntimeError("kaput")


def local_client(server: ScriptedChatServer) -> LocalAbstractCoreLLMClient:
    return LocalAbstractCoreLLMClient(
        provider="openai-compatible",
        model="scripted-model",
        base_url=f"{server.url}/v1",
        api_key="not-needed",
    )


async def test_the_local_client_generates_text_and_tool_calls_through_abstractcore() -> None:
    async with ScriptedChatServer(
        [
            ScriptedReply.text("hello from the script"),
            ScriptedReply.tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}]),
        ]
    ) as server:
        client = local_client(server)
        answer = await client.generate(prompt="hi", params={"temperature": 0.2})
        assert answer["content"] == "hello from the script"
        assert answer["model"] == "scripted-model"
        calls = await client.generate(prompt="add 1 and 2", tools=[ADD_SPEC])
        assert [(c["name"], c["arguments"]) for c in calls["tool_calls"]] == [
            ("add", {"a": 1, "b": 2})
        ]
        sent = [request.json for request in server.chat_requests]
        await client.aclose()
    assert sent[0]["messages"][-1] == {"role": "user", "content": "hi"}
    assert sent[0]["temperature"] == 0.2
    # Native tools, or described in the prompt: AbstractCore decides per model.
    assert '"add"' in json.dumps(sent[1]) or "add" in json.dumps(sent[1].get("messages"))


async def test_abstractcore_runs_the_tools_it_is_given() -> None:
    executor = AbstractCoreToolExecutor([abstractcore.tool(add), broken])
    outcome = await executor.execute(
        tool_calls=[
            {"name": "add", "arguments": {"a": 2, "b": 3}, "call_id": "c1"},
            {"name": "broken", "arguments": {}, "call_id": "c2"},
            {"name": "missing", "arguments": {}, "call_id": "c3"},
        ]
    )
    results = outcome["results"]
    assert outcome["mode"] == "executed"
    assert (results[0]["success"], results[0]["output"]) == (True, 5)
    assert results[1]["success"] is False and "kaput" in results[1]["error"]
    assert results[2]["success"] is False and "missing" in results[2]["error"]


async def test_a_local_runtime_runs_an_agent_turn_end_to_end(sqlite_url: str) -> None:
    def ask(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="ask",
            effect=Effect(
                EffectType.LLM_CALL, {"prompt": "add 2 and 3", "tools": [ADD_SPEC]}, "llm"
            ),
            next_node="act",
        )

    def act(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="act",
            effect=Effect(
                EffectType.TOOL_CALLS, {"tool_calls": run.vars["llm"]["tool_calls"]}, "tools"
            ),
            next_node="done",
        )

    def done(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"sum": run.vars["tools"]["results"]})

    wf = WorkflowSpec("ac_agent", "ask", {"ask": ask, "act": act, "done": done})
    async with ScriptedChatServer(
        [ScriptedReply.tool_calls([{"name": "add", "arguments": {"a": 2, "b": 3}}])]
    ) as server:
        rt: Runtime = await create_local_runtime(
            provider="openai-compatible",
            model="scripted-model",
            database_url=sqlite_url,
            tool_executor=AbstractCoreToolExecutor([add]),
            llm_kwargs={"base_url": f"{server.url}/v1", "api_key": "not-needed"},
        )
        async with rt:
            _, state = await rt.run(wf)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output is not None and state.output["sum"][0]["output"] == 5
