"""The original's ``tests/test_durable_toolsets.py``, ported: a ``tool_calls`` step's results
are durable, and a runtime started afterwards continues from them.

The original ran it on its JSON file stores, with a stub LLM client that failed the test if
called. Here it runs on the in-memory pair and on a SQLite file (reopened for the restart); the
LLM client is a real ``RemoteAbstractCoreLLMClient`` pointed at the integration's scripted
server with nothing scripted, and the test checks that the server received no request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from abstractruntime import Effect, EffectType, RunStatus, Runtime, StepPlan, WorkflowSpec
from abstractruntime.integrations.abstractcore import RemoteAbstractCoreLLMClient
from abstractruntime.integrations.abstractcore.effect_handlers import build_effect_handlers
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer
from abstractruntime.integrations.abstractcore.tool_executor import MappingToolExecutor
from tests.parity.backends import Backend, backend_fixture

backend = backend_fixture()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedChatServer]:
    async with ScriptedChatServer() as scripted:  # nothing scripted: no LLM call expected
        yield scripted


async def test_tool_calls_persist_and_continue_across_restart(
    backend: Backend, server: ScriptedChatServer
) -> None:
    def add(x: int, y: int) -> int:
        return x + y

    executor = MappingToolExecutor.from_tools([add])
    llm = RemoteAbstractCoreLLMClient(server_base_url=server.url, model="unused")
    wf = WorkflowSpec(
        workflow_id="wf_tools_file",
        entry_node="ACT",
        nodes={
            "ACT": lambda run, ctx: StepPlan(
                node_id="ACT",
                effect=Effect(
                    type=EffectType.TOOL_CALLS,
                    payload={
                        "tool_calls": [
                            {"name": "add", "arguments": {"x": 2, "y": 3}, "call_id": "c1"}
                        ]
                    },
                    result_key="tool_results",
                ),
                next_node="DONE",
            ),
            "DONE": lambda run, ctx: StepPlan(
                node_id="DONE",
                complete_output={"tool_results": run.vars.get("tool_results")},
            ),
        },
    )
    try:
        rt1 = Runtime(
            **backend.kwargs, effect_handlers=build_effect_handlers(llm=llm, tools=executor)
        )
        run_id = await rt1.start(workflow=wf, vars={"task": "add 2 + 3"})
        state1 = await rt1.tick(workflow=wf, run_id=run_id, max_steps=1)
        assert state1.status is RunStatus.RUNNING
        assert state1.current_node == "DONE"

        # A new runtime instance on the same storage: a process restart.
        rt2 = Runtime(
            **backend.reopen(), effect_handlers=build_effect_handlers(llm=llm, tools=executor)
        )
        state2 = await rt2.get_state(run_id)
        assert state2.status is RunStatus.RUNNING
        assert state2.vars["tool_results"]["mode"] == "executed"
        assert state2.vars["tool_results"]["results"][0]["name"] == "add"
        assert state2.vars["tool_results"]["results"][0]["output"] == 5

        final = await rt2.tick(workflow=wf, run_id=run_id)
        assert final.status is RunStatus.COMPLETED
        assert final.output is not None
        assert final.output["tool_results"]["results"][0]["output"] == 5
    finally:
        await llm.aclose()
    assert server.requests == []  # the LLM was never called
