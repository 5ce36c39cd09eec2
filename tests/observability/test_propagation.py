"""Propagation out (the LLM call's ``traceparent``, the tools' context) and in
(``continue_trace``), against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace

from abstractruntime import Effect, EffectType, RunState, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.integrations.abstractcore import MappingToolExecutor, create_remote_runtime
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer, ScriptedReply
from abstractruntime.observability import continue_trace
from tests.helpers import eventually
from tests.observability.conftest import Otel, hex_trace


@pytest.fixture
async def server() -> AsyncIterator[ScriptedChatServer]:
    async with ScriptedChatServer() as started:
        yield started


def _ask(run: RunState, ctx: object) -> StepPlan:
    return StepPlan(
        node_id="ask",
        effect=Effect(EffectType.LLM_CALL, {"prompt": "hello"}, result_key="answer"),
        next_node="tools",
    )


def _tools(run: RunState, ctx: object) -> StepPlan:
    calls = [{"name": "where_am_i", "arguments": {}, "call_id": "c1"}]
    return StepPlan(
        node_id="tools",
        effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": calls}, result_key="tools"),
        next_node="end",
    )


WF = WorkflowSpec(
    "chatty",
    "ask",
    {
        "ask": _ask,
        "tools": _tools,
        "end": lambda run, ctx: StepPlan(node_id="end", complete_output={}),
    },
)


async def test_the_llm_request_carries_the_runs_traceparent_and_tools_see_its_context(
    otel: Otel, server: ScriptedChatServer, sqlite_url: str
) -> None:
    seen: list[tuple[str, str]] = []

    def where_am_i() -> str:  # a plain function: the executor runs it in a worker thread
        span = trace.get_current_span()
        context = span.get_span_context()
        seen.append((f"{context.trace_id:032x}", getattr(span, "name", "")))
        return "here"

    server.add(ScriptedReply.text("hi there"))
    async with await create_remote_runtime(
        server_base_url=server.url,
        model="m",
        database_url=sqlite_url,
        tool_executor=MappingToolExecutor({"where_am_i": where_am_i}),
    ) as rt:
        run_id, state = await rt.run(WF)
    assert state.status is RunStatus.COMPLETED, state.error
    (request,) = server.chat_requests
    traceparent = request.headers["traceparent"]
    version, trace_id, span_id, flags = traceparent.split("-")
    run_trace = hex_trace(otel.steps(run_id)[0])
    assert (version, trace_id) == ("00", run_trace)
    assert int(flags, 16) & 1  # sampled
    (llm_span,) = otel.spans("abstractruntime.effect llm_call")
    assert span_id == f"{llm_span.get_span_context().span_id:016x}"  # the effect's span
    assert request.headers["x-abstractcore-run-id"] == run_id  # still sent
    assert seen == [(run_trace, "abstractruntime.effect tool_calls")]


async def test_without_telemetry_no_traceparent_is_sent(
    server: ScriptedChatServer, sqlite_url: str
) -> None:
    server.add(ScriptedReply.text("hi"))
    async with await create_remote_runtime(
        server_base_url=server.url,
        model="m",
        database_url=sqlite_url,
        tool_executor=MappingToolExecutor({"where_am_i": lambda: "here"}),
    ) as rt:
        _, state = await rt.run(WF)
    assert state.status is RunStatus.COMPLETED, state.error
    (request,) = server.chat_requests
    assert "traceparent" not in request.headers
    assert "x-abstractcore-run-id" in request.headers


async def test_continue_trace_makes_a_callers_headers_the_runs_trace(
    otel: Otel, sqlite_url: str
) -> None:
    from abstractruntime import Runtime
    from abstractruntime.storage import SqlStore
    from tests.workflows import counter

    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    wf = counter(1)
    async with SqlStore(sqlite_url) as store, Runtime(store=store) as rt:
        with continue_trace({"traceparent": caller}):
            run_id = await rt.start(workflow=wf)
        await rt.tick(workflow=wf, run_id=run_id)
    (start,) = otel.spans("abstractruntime.start")
    assert hex_trace(start) == "0af7651916cd43dd8448eb211c80319c"
    assert start.parent is not None and f"{start.parent.span_id:016x}" == "b7ad6b7169203331"
    assert {hex_trace(s) for s in otel.steps(run_id)} == {"0af7651916cd43dd8448eb211c80319c"}


async def test_an_http_callers_traceparent_is_the_trace_of_the_run_it_starts(
    otel: Otel, sqlite_url: str
) -> None:
    from tests.web.conftest import AUTH, served  # the web extra: imported by this test only

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", **AUTH}
    async with served(sqlite_url) as web:
        started = await web.client.post(
            "/api/v1/workflows/approval/runs", json={"vars": {}}, headers=caller
        )
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]

        async def waiting() -> bool:
            state = (await web.client.get(f"/api/v1/runs/{run_id}", headers=AUTH)).json()
            return state["status"] == "waiting"

        await eventually(waiting, "the run never waited")
    steps = otel.steps(run_id)
    assert steps and {hex_trace(span) for span in steps} == {trace_id}
