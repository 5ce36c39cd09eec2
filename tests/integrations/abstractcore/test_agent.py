"""The ReAct agent end to end: llm_call -> tool_calls -> llm_call -> answer, on SQLite."""

from __future__ import annotations

import json

from abstractruntime import RunStatus, Runtime, verify_ledger_chain
from abstractruntime.integrations.abstractcore import (
    MappingToolExecutor,
    create_hybrid_runtime,
    create_remote_runtime,
)
from abstractruntime.integrations.abstractcore.agent import react_agent_workflow
from abstractruntime.integrations.abstractcore.testing import (
    ScriptedChatServer,
    ScriptedReply,
)
from abstractruntime.storage import SqlStore
from tests.integrations.abstractcore import agent_app


async def test_agent_end_to_end_on_sqlite(server: ScriptedChatServer, sqlite_url: str) -> None:
    server.add(*agent_app.script())
    wf = agent_app.workflow()
    async with await create_hybrid_runtime(
        server_base_url=server.url,
        model="test-model",
        database_url=sqlite_url,
        tool_executor=agent_app.tools(),
    ) as rt:
        run_id, state = await rt.run(wf, {"task": agent_app.TASK}, actor_id="alice")

    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"answer": "2 + 3 = 5, and Paris is sunny at 21 °C.", "llm_calls": 2}

    first, second = (r.json for r in server.chat_requests)
    assert first["tools"] == agent_app.TOOL_SPECS
    assert first["temperature"] == 0
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][1:] == [{"role": "user", "content": agent_app.TASK}]
    # The second call sees the model's tool calls and the tools' outputs.
    assistant, *tool_messages = second["messages"][2:]
    assert assistant["role"] == "assistant"
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["add", "weather"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"a": 2, "b": 3}
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "call_add", "content": "5"},
        {
            "role": "tool",
            "tool_call_id": "call_weather",
            "content": json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21}),
        },
    ]
    for request in server.chat_requests:
        assert request.headers["x-abstractcore-run-id"] == run_id
        assert request.headers["x-abstractcore-actor-id"] == "alice"

    # Everything is in the database, for any later process.
    async with SqlStore(sqlite_url) as store:
        rt2 = Runtime(store=store)
        saved = await rt2.get_state(run_id)
        assert saved.status is RunStatus.COMPLETED
        assert [m["role"] for m in saved.vars["messages"]] == [
            "user", "assistant", "tool", "tool", "assistant",
        ]  # fmt: skip
        ledger = await rt2.get_ledger(run_id)
    assert [(r["node_id"], r["status"]) for r in ledger] == [
        ("think", "completed"), ("act", "completed"), ("think", "completed"), ("act", "completed"),
    ]  # fmt: skip
    assert ledger[0]["effect"]["type"] == "llm_call"
    assert ledger[0]["result"]["tool_calls"][0]["name"] == "add"
    assert ledger[1]["effect"]["type"] == "tool_calls"
    assert ledger[1]["result"]["results"][0]["output"] == 5
    assert verify_ledger_chain(ledger)["ok"]


async def test_the_model_sees_a_failing_tool_and_recovers(server: ScriptedChatServer) -> None:
    def flaky(city: str) -> str:
        raise ConnectionError(f"weather service for {city} is down")

    server.add(
        ScriptedReply.tool_calls([{"id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}]),
        ScriptedReply.tool_calls([{"id": "c2", "name": "forecast", "arguments": {}}]),
        ScriptedReply.text("I could not get the weather."),
    )
    async with await create_hybrid_runtime(
        server_base_url=server.url,
        model="m",
        tool_executor=MappingToolExecutor({"weather": flaky}),
    ) as rt:
        _, state = await rt.run(agent_app.workflow(), {"task": "Weather in Oslo?"})
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"answer": "I could not get the weather.", "llm_calls": 3}
    second, third = server.chat_requests[1].json, server.chat_requests[2].json
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "error: tool 'weather' raised ConnectionError: weather service for Oslo is down",
    }
    assert third["messages"][-1]["content"].startswith("error: unknown tool 'forecast'")


async def test_remote_agent_waits_for_the_host_to_run_the_tools(
    server: ScriptedChatServer, db_url: str
) -> None:
    server.add(*agent_app.script())
    wf = agent_app.workflow()
    async with await create_remote_runtime(
        server_base_url=server.url, model="m", database_url=db_url
    ) as rt:
        run_id, state = await rt.run(wf, {"task": agent_app.TASK})
    assert state.status is RunStatus.WAITING
    assert state.waiting is not None
    assert state.waiting.wait_key == f"tool_calls:{run_id}:act"
    calls = state.waiting.details["tool_calls"]  # type: ignore[index]
    assert [c["name"] for c in calls] == ["add", "weather"]

    # The host, in a new runtime, runs the tools and resumes the run.
    results = await agent_app.tools().execute(tool_calls=calls)
    async with await create_remote_runtime(
        server_base_url=server.url, model="m", database_url=db_url
    ) as rt:
        state = await rt.resume(
            workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload=results
        )
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output is not None and state.output["llm_calls"] == 2
    assert server.chat_requests[1].json["messages"][-1]["tool_call_id"] == "call_weather"


async def test_an_agent_that_never_answers_fails(server: ScriptedChatServer) -> None:
    loop_call = {"id": "c", "name": "add", "arguments": {"a": 1, "b": 1}}
    server.fallback = lambda request: ScriptedReply.tool_calls([loop_call])
    async with await create_hybrid_runtime(
        server_base_url=server.url, model="m", tool_executor=agent_app.tools()
    ) as rt:
        wf = react_agent_workflow(tools=agent_app.TOOL_SPECS, max_llm_calls=3)
        _, state = await rt.run(wf, {"task": "loop"})
    assert state.status is RunStatus.FAILED
    assert state.error is not None
    assert "made 3 LLM calls without an answer (max_llm_calls=3)" in state.error
    assert len(server.chat_requests) == 3


async def test_an_agent_without_a_task_fails(server: ScriptedChatServer) -> None:
    async with await create_hybrid_runtime(
        server_base_url=server.url, model="m", tool_executor=agent_app.tools()
    ) as rt:
        _, state = await rt.run(agent_app.workflow(), {})
    assert state.status is RunStatus.FAILED
    assert state.error is not None and "vars['task']" in state.error
    assert server.chat_requests == []
