"""The original's ``tests/test_trace_context_propagation.py``, ported to ``await``.

The original's remote client took a ``request_sender`` to stub the HTTP call; ours is built on
``httpx.AsyncClient``, so the port talks to the scripted chat-completions server instead (a real
server on 127.0.0.1). ``abstractcore`` is an optional extra: the local-response test uses its
``GenerateResponse`` when it is installed, and a stand-in of the same shape otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from abstractruntime import Effect, EffectType, RunState, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.integrations.abstractcore import (
    AbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
)
from abstractruntime.integrations.abstractcore._util import abstractcore_available
from abstractruntime.integrations.abstractcore.chat import normalize_local_response
from abstractruntime.integrations.abstractcore.effect_handlers import make_llm_call_handler
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer, ScriptedReply
from tests.parity.conftest import RuntimeFactory


class _StubLLM:
    """The original's stub: a synchronous client of the original's protocol."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.threads: list[int] = []

    def generate(
        self,
        *,
        prompt: str,
        messages: list[dict[str, str]] | None = None,
        system_prompt: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.threads.append(threading.get_ident())
        self.calls.append(
            {
                "prompt": prompt,
                "messages": messages,
                "system_prompt": system_prompt,
                "tools": tools,
                "params": dict(params or {}),
            }
        )
        return {"content": "ok", "trace_id": "tr_test", "metadata": {"trace_id": "tr_test"}}


def _workflow() -> WorkflowSpec:
    def ask(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="ask",
            effect=Effect(
                type=EffectType.LLM_CALL,
                payload={"prompt": "hello", "params": {"max_tokens": 5}},
                result_key="llm",
            ),
            next_node="done",
        )

    def done(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"llm": run.vars.get("llm")})

    return WorkflowSpec(
        workflow_id="trace_inject", entry_node="ask", nodes={"ask": ask, "done": done}
    )


async def test_llm_call_injects_trace_metadata(rt_factory: RuntimeFactory) -> None:
    stub = _StubLLM()
    client: AbstractCoreLLMClient = stub  # the original's protocol, as a type
    runtime = rt_factory(effect_handlers={EffectType.LLM_CALL: make_llm_call_handler(llm=client)})
    workflow = _workflow()

    run_id = await runtime.start(workflow=workflow, actor_id="ar_test", session_id="sess_test")
    state = await runtime.tick(workflow=workflow, run_id=run_id)

    assert state.status == RunStatus.COMPLETED
    assert stub.calls, "Expected stub LLM to be called"
    call = stub.calls[-1]
    trace = call["params"].get("trace_metadata") or {}
    assert trace.get("run_id") == run_id
    assert trace.get("actor_id") == "ar_test"
    assert trace.get("session_id") == "sess_test"
    assert "parent_run_id" not in trace  # unset ids are left out, as in the original
    assert call["params"]["max_tokens"] == 5
    assert call["prompt"] == "hello"
    # a synchronous client runs in a worker thread, not on the event loop
    assert stub.threads and stub.threads[-1] != threading.get_ident()
    assert state.output == {
        "llm": {"content": "ok", "trace_id": "tr_test", "metadata": {"trace_id": "tr_test"}}
    }


@dataclass
class _GenerateResponseShape:
    """The fields of AbstractCore's ``GenerateResponse`` that normalisation reads."""

    content: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    tool_calls: Any = None
    usage: Any = None
    model: str | None = None
    finish_reason: str | None = None


def _generate_response(content: str, metadata: dict[str, Any]) -> Any:
    if abstractcore_available():  # pragma: no cover - the extra is not installed in CI
        from abstractcore.core.types import GenerateResponse  # type: ignore[import-not-found]

        return GenerateResponse(content=content, metadata=metadata)
    return _GenerateResponseShape(content=content, metadata=metadata)


def test_normalize_local_response_extracts_trace_id() -> None:
    resp = _generate_response("hi", {"trace_id": "tr_123"})
    out = normalize_local_response(resp, requested_model="m", want_json=False)
    assert out.get("trace_id") == "tr_123"
    assert isinstance(out.get("metadata"), dict)
    assert out["metadata"].get("trace_id") == "tr_123"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedChatServer]:
    async with ScriptedChatServer() as started:
        yield started


async def test_remote_client_sends_trace_headers_and_reads_trace_id(
    server: ScriptedChatServer,
) -> None:
    server.add(ScriptedReply.text("ok", headers={"X-AbstractCore-Trace-Id": "tr_remote"}))
    async with RemoteAbstractCoreLLMClient(
        server_base_url=server.url, model="m", headers={"User-Agent": "test"}
    ) as client:
        out = await client.generate(
            prompt="hi", params={"trace_metadata": {"run_id": "r1", "actor_id": "a1"}}
        )
    assert out.get("trace_id") == "tr_remote"
    headers = server.chat_requests[0].headers
    assert headers.get("x-abstractcore-trace-metadata")
    assert headers.get("x-abstractcore-run-id") == "r1"
    assert headers.get("x-abstractcore-actor-id") == "a1"
    assert headers.get("user-agent") == "test"
