"""The ``llm_call`` and ``tool_calls`` effect handlers, alone and driven by a ``Runtime``."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RetryPolicy,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    WaitReason,
    WorkflowSpec,
)
from abstractruntime.integrations.abstractcore import (
    MappingToolExecutor,
    PassthroughToolExecutor,
    RemoteAbstractCoreLLMClient,
    build_effect_handlers,
    create_remote_runtime,
    make_llm_call_handler,
    make_tool_calls_handler,
)
from abstractruntime.integrations.abstractcore.testing import (
    ScriptedChatServer,
    ScriptedReply,
)


def _run(**fields: Any) -> RunState:
    return RunState(
        run_id="run-1", workflow_id="wf", status=RunStatus.RUNNING, current_node="n", **fields
    )


def one_effect(effect: Effect, workflow_id: str = "one_effect") -> WorkflowSpec:
    """A workflow that performs ``effect`` then completes with what it gave."""

    def node(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(node_id="n", effect=effect, next_node="done")

    def done(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"out": run.vars.get("out")})

    return WorkflowSpec(workflow_id, "n", {"n": node, "done": done})


# -- llm_call ------------------------------------------------------------------------------------


async def test_llm_call_completes_with_the_answer_and_sends_the_run_ids(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("hello"))
    handler = make_llm_call_handler(client)
    run = _run(actor_id="alice", session_id="s1", parent_run_id="parent-9")
    effect = Effect(
        EffectType.LLM_CALL,
        {"prompt": "hi", "system_prompt": "sys", "params": {"trace_metadata": {"k": "v"}}},
    )
    outcome = await handler(run, effect, "next")  # type: ignore[misc]
    assert outcome.status == "completed"
    assert outcome.result["content"] == "hello"
    headers = server.chat_requests[0].headers
    assert headers["x-abstractcore-run-id"] == "run-1"
    assert headers["x-abstractcore-actor-id"] == "alice"
    assert headers["x-abstractcore-session-id"] == "s1"
    assert headers["x-abstractcore-parent-run-id"] == "parent-9"
    # As in the original, the run's ids join the payload's trace metadata.
    assert headers["x-abstractcore-trace-metadata"] == (
        '{"k":"v","run_id":"run-1","actor_id":"alice","session_id":"s1","parent_run_id":"parent-9"}'
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "requires payload['prompt'] or payload['messages']"),
        ({"prompt": 3}, "'prompt'] must be a string"),
        ({"messages": "hi"}, "'messages'] must be a list"),
        ({"prompt": "hi", "tools": {"a": 1}}, "'tools'] must be a list"),
        ({"prompt": "hi", "params": [1]}, "'params'] must be a dict"),
        ({"prompt": "hi", "params": {"trace_metadata": "x"}}, "trace_metadata'] must be a dict"),
        ({"prompt": "hi", "response_format": 3}, "response_format must be"),
    ],
)
async def test_llm_call_with_a_bad_payload_fails_without_retry(
    server: ScriptedChatServer,
    client: RemoteAbstractCoreLLMClient,
    payload: dict[str, Any],
    message: str,
) -> None:
    outcome = await make_llm_call_handler(client)(  # type: ignore[misc]
        _run(), Effect(EffectType.LLM_CALL, payload), None
    )
    assert outcome.status == "failed"
    assert message in outcome.error
    assert outcome.retryable is False
    assert server.chat_requests == []  # nothing was sent


@pytest.mark.parametrize(
    ("reply", "retryable", "said"),
    [
        (ScriptedReply.http_error(503, "overloaded"), True, "HTTP 503"),
        (ScriptedReply.http_error(429, "slow down"), True, "HTTP 429"),
        (ScriptedReply.http_error(500, "oops"), True, "HTTP 500"),
        (ScriptedReply.http_error(400, "bad request"), False, "HTTP 400"),
        (ScriptedReply.http_error(401, "bad key"), False, "HTTP 401"),
        (ScriptedReply.http_error(404, "no such model"), False, "HTTP 404"),
        (ScriptedReply.http_error(422, "invalid field"), False, "HTTP 422"),
        (ScriptedReply.raw_body("nope"), False, "not JSON"),
        (ScriptedReply.json_body({"id": "x"}), False, "without 'choices'"),
        (ScriptedReply.dropped(), True, "cannot reach"),
    ],
)
async def test_llm_errors_become_failed_outcomes(
    server: ScriptedChatServer,
    client: RemoteAbstractCoreLLMClient,
    reply: ScriptedReply,
    retryable: bool,
    said: str,
) -> None:
    server.add(reply)
    outcome = await make_llm_call_handler(client)(  # type: ignore[misc]
        _run(), Effect(EffectType.LLM_CALL, {"prompt": "hi"}), None
    )
    assert outcome.status == "failed"
    assert outcome.retryable is retryable
    assert said in outcome.error


async def test_a_failing_llm_fails_the_run_with_a_readable_error(
    server: ScriptedChatServer,
) -> None:
    server.add(ScriptedReply.http_error(401, "invalid API key"))
    async with await create_remote_runtime(server_base_url=server.url, model="m") as rt:
        wf = one_effect(Effect(EffectType.LLM_CALL, {"prompt": "hi"}, result_key="out"))
        run_id, state = await rt.run(wf)
        assert state.status is RunStatus.FAILED
        assert state.error is not None
        assert "HTTP 401" in state.error and "invalid API key" in state.error
        ledger = await rt.get_ledger(run_id)
        assert ledger[-1]["status"] == "failed"


async def test_retry_policy_retries_a_5xx_then_succeeds(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.http_error(503, "overloaded"), ScriptedReply.text("fine now"))
    policy = RetryPolicy(llm_max_attempts=3, backoff_base=0.0)
    async with await create_remote_runtime(
        server_base_url=server.url, model="m", effect_policy=policy
    ) as rt:
        wf = one_effect(Effect(EffectType.LLM_CALL, {"prompt": "hi"}, result_key="out"))
        _, state = await rt.run(wf)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output is not None and state.output["out"]["content"] == "fine now"
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_retry_policy_does_not_retry_a_4xx(server: ScriptedChatServer, status: int) -> None:
    server.add(ScriptedReply.http_error(status, "bad"), ScriptedReply.text("never asked"))
    policy = RetryPolicy(llm_max_attempts=3, backoff_base=0.0)
    async with await create_remote_runtime(
        server_base_url=server.url, model="m", effect_policy=policy
    ) as rt:
        wf = one_effect(Effect(EffectType.LLM_CALL, {"prompt": "hi"}, result_key="out"))
        _, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert len(server.chat_requests) == 1


# -- tool_calls ----------------------------------------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


async def test_tool_calls_completes_with_the_results() -> None:
    rt = Runtime(
        effect_handlers={
            EffectType.TOOL_CALLS: make_tool_calls_handler(MappingToolExecutor.from_tools([add]))
        }
    )
    calls = [{"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "c1"}, {"name": "nope"}]
    wf = one_effect(Effect(EffectType.TOOL_CALLS, {"tool_calls": calls}, result_key="out"))
    _, state = await rt.run(wf)
    assert state.status is RunStatus.COMPLETED
    results = state.output["out"]["results"]  # type: ignore[index]
    assert results[0] == {
        "call_id": "c1",
        "name": "add",
        "success": True,
        "output": 3,
        "error": None,
    }
    assert results[1]["success"] is False and "unknown tool 'nope'" in results[1]["error"]


@pytest.mark.parametrize("executor", [MappingToolExecutor({}), PassthroughToolExecutor()])
async def test_a_malformed_tool_calls_payload_fails_the_run(executor: Any) -> None:
    rt = Runtime(effect_handlers={EffectType.TOOL_CALLS: make_tool_calls_handler(executor)})
    wf = one_effect(Effect(EffectType.TOOL_CALLS, {"tool_calls": {"name": "add"}}))
    _, state = await rt.run(wf)
    assert state.status is RunStatus.FAILED
    assert state.error is not None
    assert "tool_calls payload: tool_calls must be a list" in state.error


async def test_a_synchronous_executor_is_accepted_and_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    class SyncExecutor:  # the original AbstractRuntime's executors were synchronous
        def execute(self, *, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
            threads.append(threading.get_ident())
            return {"mode": "executed", "results": [{"call_id": "c", "output": len(tool_calls)}]}

    rt = Runtime(effect_handlers={EffectType.TOOL_CALLS: make_tool_calls_handler(SyncExecutor())})  # type: ignore[arg-type]
    wf = one_effect(
        Effect(EffectType.TOOL_CALLS, {"tool_calls": [{"name": "x"}]}, result_key="out")
    )
    _, state = await rt.run(wf)
    assert state.output == {"out": {"mode": "executed", "results": [{"call_id": "c", "output": 1}]}}
    assert threads and threads[0] != threading.get_ident()


async def test_tool_calls_without_an_executor_fails_saying_what_to_configure() -> None:
    rt = Runtime(effect_handlers={EffectType.TOOL_CALLS: make_tool_calls_handler()})
    _, state = await rt.run(one_effect(Effect(EffectType.TOOL_CALLS, {"tool_calls": []})))
    assert state.status is RunStatus.FAILED
    assert state.error is not None and "needs a tool executor" in state.error


async def test_passthrough_waits_and_resume_delivers_the_results() -> None:
    async with RemoteAbstractCoreLLMClient(server_base_url="http://unused", model="m") as llm:
        handlers = build_effect_handlers(llm=llm, tools=PassthroughToolExecutor())
    rt = Runtime(effect_handlers=handlers)
    calls = [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1"}]
    wf = one_effect(Effect(EffectType.TOOL_CALLS, {"tool_calls": calls}, result_key="out"))
    run_id, state = await rt.run(wf)
    assert state.status is RunStatus.WAITING
    waiting = state.waiting
    assert waiting is not None
    assert waiting.reason is WaitReason.EVENT
    assert waiting.wait_key == f"tool_calls:{run_id}:n"
    assert waiting.resume_to_node == "done"
    assert waiting.details == {
        "mode": "passthrough",
        "tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1", "call_id": "c1"}],
    }
    results = {"results": [{"call_id": "c1", "name": "add", "success": True, "output": 3}]}
    state = await rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.wait_key, payload=results)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"out": results}


async def test_passthrough_with_a_wait_key_and_resume_node() -> None:
    rt = Runtime(
        effect_handlers={EffectType.TOOL_CALLS: make_tool_calls_handler(PassthroughToolExecutor())}
    )

    def node(run: RunState, ctx: object) -> StepPlan:
        payload = {"tool_calls": [{"name": "x"}], "wait_key": "tools:42", "resume_to_node": "alt"}
        return StepPlan(
            node_id="n",
            effect=Effect(EffectType.TOOL_CALLS, payload, result_key="r"),
            next_node="done",
        )

    def end(name: str) -> Any:
        return lambda run, ctx: StepPlan(
            node_id=name, complete_output={"at": name, "r": run.vars["r"]}
        )

    wf = WorkflowSpec("pt", "n", {"n": node, "done": end("done"), "alt": end("alt")})
    run_id, state = await rt.run(wf)
    assert state.waiting is not None and state.waiting.wait_key == "tools:42"
    with pytest.raises(ValueError):  # the wrong key
        await rt.resume(workflow=wf, run_id=run_id, wait_key=f"tool_calls:{run_id}:n", payload={})
    state = await rt.resume(
        workflow=wf, run_id=run_id, wait_key="tools:42", payload={"results": []}
    )
    assert state.output == {"at": "alt", "r": {"results": []}}


# -- clients written for the original (a synchronous generate) -----------------------------------


class SyncHttpClient:
    """An LLM client as one was written for the original: a blocking ``generate`` posting
    with httpx's synchronous API and passing ``trace_metadata`` on as a header. Called on the
    event loop's thread it would deadlock against the scripted server that runs on that loop,
    so the test also proves it runs in a worker thread."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.prompts: list[Any] = []
        self.params: list[dict[str, Any]] = []

    def generate(
        self,
        *,
        prompt: str,
        messages: list[dict[str, str]] | None = None,
        system_prompt: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.prompts.append(prompt)
        params = dict(params or {})
        self.params.append(params)
        out_messages = [*(messages or []), {"role": "user", "content": prompt}]
        response = httpx.post(
            f"{self.base_url}/v1/chat/completions",
            json={"model": "m", "messages": out_messages},
            headers={"X-AbstractCore-Trace-Metadata": json.dumps(params["trace_metadata"])},
            timeout=5.0,
        )
        response.raise_for_status()
        choice = response.json()["choices"][0]
        return {"content": choice["message"]["content"], "model": "m"}


async def test_a_synchronous_client_of_the_original_works(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.text("from a sync client"))
    client = SyncHttpClient(server.url)
    rt = Runtime(effect_handlers=build_effect_handlers(llm=client))
    wf = one_effect(
        Effect(
            EffectType.LLM_CALL,
            {"prompt": "hi", "params": {"trace_metadata": {"step": "s"}}},
            result_key="out",
        )
    )
    run_id, state = await asyncio.wait_for(rt.run(wf, actor_id="alice"), 10)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"out": {"content": "from a sync client", "model": "m"}}
    sent = json.loads(server.chat_requests[0].headers["x-abstractcore-trace-metadata"])
    assert sent == {"step": "s", "run_id": run_id, "actor_id": "alice"}


async def test_an_original_client_gets_only_the_original_arguments() -> None:
    client = SyncHttpClient("http://unused")
    client.generate = _recording(client)  # type: ignore[method-assign]
    handler = make_llm_call_handler(llm=client)
    messages = [{"role": "user", "content": "earlier"}]
    effect = Effect(
        EffectType.LLM_CALL, {"messages": messages, "response_format": "json", "tools": []}
    )
    outcome = await handler(_run(), effect, None)  # type: ignore[misc]
    assert outcome.status == "completed"
    [call] = client.params
    # no trace= or response_format= for a client that does not take them; prompt is a string
    assert set(call) == {"prompt", "messages", "system_prompt", "tools", "params"}
    assert call["prompt"] == "" and call["messages"] == messages
    assert call["params"]["response_format"] == "json"
    assert call["params"]["trace_metadata"] == {"run_id": "run-1"}


def _recording(client: SyncHttpClient) -> Any:
    def generate(
        *,
        prompt: str,
        messages: list[dict[str, str]] | None = None,
        system_prompt: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        client.params.append(
            {
                "prompt": prompt,
                "messages": messages,
                "system_prompt": system_prompt,
                "tools": tools,
                "params": params,
            }
        )
        return {"content": "ok"}

    return generate


async def test_a_client_taking_any_keyword_gets_everything() -> None:
    seen: list[dict[str, Any]] = []

    class Anything:
        async def generate(self, **kwargs: Any) -> dict[str, Any]:
            seen.append(kwargs)
            return {"content": "ok"}

    handler = make_llm_call_handler(Anything())  # type: ignore[arg-type]
    outcome = await handler(  # type: ignore[misc]
        _run(session_id="s1"), Effect(EffectType.LLM_CALL, {"prompt": "hi"}), None
    )
    assert outcome.status == "completed"
    [kwargs] = seen
    assert kwargs["prompt"] == "hi" and kwargs["response_format"] is None
    assert kwargs["trace"] == {
        "run_id": "run-1",
        "actor_id": None,
        "session_id": "s1",
        "parent_run_id": None,
    }
    assert kwargs["params"] == {"trace_metadata": {"run_id": "run-1", "session_id": "s1"}}


async def test_an_exception_of_a_custom_client_is_retried_by_the_policy() -> None:
    calls = 0

    class Flaky:
        def generate(self, *, prompt: str, **kwargs: Any) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("reset")
            return {"content": "ok"}

    rt = Runtime(
        effect_handlers=build_effect_handlers(llm=Flaky()),  # type: ignore[arg-type]
        effect_policy=RetryPolicy(llm_max_attempts=2, backoff_base=0.0),
    )
    wf = one_effect(Effect(EffectType.LLM_CALL, {"prompt": "hi"}, result_key="out"))
    _, state = await rt.run(wf)
    assert state.status is RunStatus.COMPLETED and calls == 2


def test_a_handler_needs_a_client() -> None:
    with pytest.raises(TypeError, match="needs an LLM client"):
        make_llm_call_handler()
