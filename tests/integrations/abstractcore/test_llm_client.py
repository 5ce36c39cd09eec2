"""The HTTP LLM client against a real (scripted) server: what it sends, what it returns, and
how every failure is reported."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from abstractruntime import AbstractRuntimeError
from abstractruntime.integrations.abstractcore import (
    LLMCallError,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    RemoteAbstractCoreLLMClient,
)
from abstractruntime.integrations.abstractcore.chat import normalize_tool_calls
from abstractruntime.integrations.abstractcore.testing import (
    ScriptedChatServer,
    ScriptedReply,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# -- the request ---------------------------------------------------------------------------------


async def test_request_body_carries_messages_tools_and_params(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("ok"))
    await client.generate(
        prompt="And in Paris?",
        messages=[
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": "Sunny."},
        ],
        system_prompt="Be brief.",
        tools=[WEATHER_TOOL],
        params={
            "base_url": "http://10.0.0.5:11434/v1",
            "temperature": 0.2,
            "max_tokens": 64,
            "stop": ["\n\n"],
            "seed": 7,
            "frequency_penalty": 0.5,
            "presence_penalty": 0.25,
            "top_p": None,  # None values are not sent
            "not_an_openai_field": 1,  # unknown params are not sent
        },
    )
    [request] = server.chat_requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And in Paris?"},
        ],
        "stream": False,
        "base_url": "http://10.0.0.5:11434/v1",
        "temperature": 0.2,
        "max_tokens": 64,
        "stop": ["\n\n"],
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "tools": [WEATHER_TOOL],
    }


async def test_model_override_and_minimal_body(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("ok"))
    result = await client.generate(prompt="hi", params={"model": "other-model"})
    body = server.chat_requests[0].json
    assert body == {
        "model": "other-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    assert result["model"] == "other-model"  # the scripted server echoes the model asked for


async def test_trace_headers_and_user_headers(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.text("ok"), ScriptedReply.text("ok"))
    async with RemoteAbstractCoreLLMClient(
        server_base_url=server.url + "/",  # a trailing slash is fine
        model="m",
        headers={"Authorization": "Bearer sk-test", "x-abstractcore-run-id": "static"},
    ) as client:
        await client.generate(
            prompt="hi",
            params={"trace_metadata": {"step": "plan", "city": "Zürich"}},
            trace={
                "run_id": "run-1",
                "actor_id": "alice",
                "session_id": "s-9",
                "parent_run_id": None,
            },
        )
        await client.generate(prompt="hi")
    first, second = server.chat_requests
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.headers["x-abstractcore-run-id"] == "run-1"  # the run's id wins
    assert first.headers["x-abstractcore-actor-id"] == "alice"
    assert first.headers["x-abstractcore-session-id"] == "s-9"
    assert "x-abstractcore-parent-run-id" not in first.headers
    metadata = first.headers["x-abstractcore-trace-metadata"]
    assert " " not in metadata  # compact
    assert json.loads(metadata) == {"step": "plan", "city": "Zürich"}
    # Without trace metadata no metadata header; the static headers are still sent.
    assert "x-abstractcore-trace-metadata" not in second.headers
    assert second.headers["x-abstractcore-run-id"] == "static"


async def test_trace_ids_from_trace_metadata_when_no_run(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("ok"))
    await client.generate(prompt="hi", params={"trace_metadata": {"run_id": "r7", "actor_id": "a"}})
    headers = server.chat_requests[0].headers
    assert headers["x-abstractcore-run-id"] == "r7"
    assert headers["x-abstractcore-actor-id"] == "a"


# -- the answer ----------------------------------------------------------------------------------


async def test_text_answer_is_normalised(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(
        ScriptedReply.text(
            "Paris is sunny.",
            usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            headers={"X-AbstractCore-Trace-Id": "trace-123"},
            response_id="chatcmpl-1",
        )
    )
    result = await client.generate(prompt="Weather in Paris?")
    assert result == {
        "content": "Paris is sunny.",
        "data": None,
        "tool_calls": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        "model": "test-model",
        "finish_reason": "stop",
        "metadata": {"response_id": "chatcmpl-1", "trace_id": "trace-123"},
        "trace_id": "trace-123",
    }
    json.dumps(result)  # JSON-safe, so it can be stored in a run


async def test_trace_id_falls_back_to_the_response_id(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("hi", response_id="chatcmpl-42"))
    assert (await client.generate(prompt="hi"))["trace_id"] == "chatcmpl-42"


async def test_tool_calls_are_normalised_with_parsed_arguments(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(
        ScriptedReply.tool_calls(
            [
                {"id": "call_a", "name": "weather", "arguments": {"city": "Paris"}},
                {"id": "call_b", "name": "weather", "arguments": '{"city": "Rome"}'},
            ]
        )
    )
    result = await client.generate(prompt="Weather in Paris and Rome?", tools=[WEATHER_TOOL])
    assert result["finish_reason"] == "tool_calls"
    assert result["content"] is None
    assert result["tool_calls"] == [
        {"id": "call_a", "name": "weather", "arguments": {"city": "Paris"}},
        {"id": "call_b", "name": "weather", "arguments": {"city": "Rome"}},
    ]


def test_malformed_tool_arguments_are_reported_not_raised() -> None:
    calls = normalize_tool_calls(
        [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "[1, 2]"}},
            {"function": {"name": "h", "arguments": ""}},
            {"name": "flat", "arguments": {"x": 1}, "call_id": "c4"},
        ]
    )
    assert calls[0]["name"] == "f" and calls[0]["arguments"] == {}
    assert "not valid JSON" in calls[0]["arguments_error"]
    assert "{oops" in calls[0]["arguments_error"]
    assert calls[1]["arguments"] == {}
    assert "must be a JSON object, got list" in calls[1]["arguments_error"]
    assert calls[2] == {"id": "call_2", "name": "h", "arguments": {}}
    assert calls[3] == {"id": "c4", "name": "flat", "arguments": {"x": 1}}


@pytest.mark.parametrize(
    ("where", "content", "data"),
    [
        ("argument", '{"city": "Paris", "temp": 21}', {"city": "Paris", "temp": 21}),
        ("params", '```json\n{"ok": true}\n```', {"ok": True}),
    ],
)
async def test_json_answers_are_parsed_into_data(
    server: ScriptedChatServer,
    client: RemoteAbstractCoreLLMClient,
    where: str,
    content: str,
    data: object,
) -> None:
    server.add(ScriptedReply.text(content))
    fmt = {"type": "json_object"}
    if where == "argument":
        result = await client.generate(prompt="as JSON", response_format=fmt)
    else:
        result = await client.generate(prompt="as JSON", params={"response_format": fmt})
    assert result["data"] == data
    assert result["content"] == content
    assert server.chat_requests[0].json["response_format"] == fmt


async def test_json_answer_that_is_not_json_keeps_the_content(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("Sorry, I cannot."))
    result = await client.generate(prompt="as JSON", response_format="json")
    assert result["data"] is None
    assert result["content"] == "Sorry, I cannot."
    assert "not JSON" in result["metadata"]["data_error"]
    assert server.chat_requests[0].json["response_format"] == {"type": "json_object"}


async def test_no_json_asked_means_no_data(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text('{"a": 1}'))
    assert (await client.generate(prompt="hi"))["data"] is None


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (408, True), (400, False),
     (401, False), (404, False), (422, False)],
)  # fmt: skip
async def test_http_error_statuses(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient, status: int, retryable: bool
) -> None:
    server.add(ScriptedReply.http_error(status, "the model said no " + "x" * 2000))
    with pytest.raises(LLMHTTPError) as caught:
        await client.generate(prompt="hi")
    error = caught.value
    assert isinstance(error, LLMCallError)
    assert isinstance(error, AbstractRuntimeError)
    assert error.status_code == status
    assert error.retryable is retryable
    assert error.url == f"{server.url}/v1/chat/completions"
    message = str(error)
    assert f"HTTP {status}" in message
    assert "the model said no" in message
    assert len(message) < 600  # the body is cut short
    assert len(error.body) <= 1100


async def test_retry_after_is_kept(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.http_error(429, "slow down", headers={"Retry-After": "12"}))
    with pytest.raises(LLMHTTPError) as caught:
        await client.generate(prompt="hi")
    assert caught.value.retryable
    assert caught.value.retry_after_s == 12.0


async def test_body_that_is_not_json(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.raw_body("<html>502 Bad Gateway</html>", content_type="text/html"))
    with pytest.raises(LLMResponseError) as caught:
        await client.generate(prompt="hi")
    assert not caught.value.retryable
    assert "not JSON" in str(caught.value)
    assert "text/html" in str(caught.value)
    assert "<html>502 Bad Gateway</html>" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"id": "x", "object": "chat.completion"}, "without 'choices'"),
        ({"choices": []}, "without 'choices'"),
        ({"error": {"message": "model not loaded"}}, "model not loaded"),
        ([1, 2, 3], "not an object"),
    ],
)
async def test_json_that_is_not_a_chat_completion(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient, body: object, said: str
) -> None:
    server.add(ScriptedReply.json_body(body))
    with pytest.raises(LLMResponseError) as caught:
        await client.generate(prompt="hi")
    assert not caught.value.retryable
    assert said in str(caught.value)


async def test_timeout(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.hanging())
    async with RemoteAbstractCoreLLMClient(
        server_base_url=server.url, model="m", timeout_s=0.2
    ) as client:
        with pytest.raises(LLMTimeoutError) as caught:
            await client.generate(prompt="hi")
    assert caught.value.retryable
    assert "timed out after 0.2s" in str(caught.value)


async def test_slow_answer_within_the_timeout_arrives(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.text("late but fine").slow(0.05))
    assert (await client.generate(prompt="hi"))["content"] == "late but fine"


async def test_connection_refused() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with RemoteAbstractCoreLLMClient(
        server_base_url=f"http://127.0.0.1:{port}", model="m"
    ) as client:
        with pytest.raises(LLMConnectionError) as caught:
            await client.generate(prompt="hi")
    assert caught.value.retryable
    assert f"cannot reach the LLM server at http://127.0.0.1:{port}" in str(caught.value)
    assert "ConnectError" in str(caught.value)


async def test_connection_dropped_without_answer(
    server: ScriptedChatServer, client: RemoteAbstractCoreLLMClient
) -> None:
    server.add(ScriptedReply.dropped(), ScriptedReply.text("back"))
    with pytest.raises(LLMConnectionError) as caught:
        await client.generate(prompt="hi")
    assert caught.value.retryable
    assert "RemoteProtocolError" in str(caught.value)
    assert (await client.generate(prompt="again"))["content"] == "back"  # client still usable


async def test_bad_url_is_not_retryable() -> None:
    async with RemoteAbstractCoreLLMClient(server_base_url="ftp://example.invalid", model="m") as c:
        with pytest.raises(LLMCallError) as caught:
            await c.generate(prompt="hi")
    assert not caught.value.retryable
    assert "ftp://example.invalid/v1/chat/completions" in str(caught.value)


async def test_httpx_errors_never_escape(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.hanging(), ScriptedReply.dropped())
    async with RemoteAbstractCoreLLMClient(
        server_base_url=server.url, model="m", timeout_s=0.1
    ) as client:
        for _ in range(2):
            with pytest.raises(LLMCallError) as caught:
                await client.generate(prompt="hi")
            assert not isinstance(caught.value, httpx.HTTPError)
            assert isinstance(caught.value.__cause__, httpx.HTTPError)


# -- the shared HTTP client ----------------------------------------------------------------------


async def test_one_client_is_shared_and_closed_by_aclose(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.text("1"), ScriptedReply.text("2"))
    client = RemoteAbstractCoreLLMClient(server_base_url=server.url, model="m")
    await client.generate(prompt="a")
    await client.generate(prompt="b")
    assert not client.is_closed
    await client.aclose()
    assert client.is_closed


async def test_injected_client_is_used_and_left_open(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.text("ok"))
    async with httpx.AsyncClient(headers={"X-Shared": "yes"}) as shared:
        client = RemoteAbstractCoreLLMClient(server_base_url=server.url, model="m", client=shared)
        await client.generate(prompt="hi")
        await client.aclose()
        assert not shared.is_closed
    assert server.chat_requests[0].headers["x-shared"] == "yes"


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        RemoteAbstractCoreLLMClient(server_base_url="http://x", model="m", timeout_s=0)
