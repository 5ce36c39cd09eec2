"""The scripted server: routes, script exhaustion, malformed requests, closing mid-request."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from abstractruntime.integrations.abstractcore.testing import (
    RecordedRequest,
    ScriptedChatServer,
    ScriptedReply,
)


async def test_routes_and_exhausted_script(server: ScriptedChatServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        models = await http.get("/v1/models")
        assert models.json()["data"][0]["id"] == "scripted-model"
        assert (await http.get("/nope")).status_code == 404
        exhausted = await http.post("/v1/chat/completions", json={"messages": []})
        assert exhausted.status_code == 500
        assert "no reply left for chat request #1" in exhausted.text
    assert [r.path for r in server.requests] == ["/v1/models", "/nope", "/v1/chat/completions"]
    assert len(server.chat_requests) == 1


async def test_responders_and_fallback(server: ScriptedChatServer) -> None:
    def echo(request: RecordedRequest) -> ScriptedReply:
        return ScriptedReply.text(request.json["messages"][-1]["content"].upper())

    server.add(echo)
    server.fallback = lambda request: ScriptedReply.text("fallback")
    async with httpx.AsyncClient(base_url=server.url) as http:
        texts = []
        for word in ("hi", "again", "more"):
            body = {"model": "m", "messages": [{"role": "user", "content": word}]}
            answer = (await http.post("/v1/chat/completions", json=body)).json()
            texts.append(answer["choices"][0]["message"]["content"])
            assert answer["model"] == "m"
    assert texts == ["HI", "fallback", "fallback"]
    assert server.pending == 0


async def test_malformed_request_gets_400(server: ScriptedChatServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"NONSENSE\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status.startswith(b"HTTP/1.1 400")


async def test_close_cuts_a_hanging_reply() -> None:
    server = await ScriptedChatServer([ScriptedReply.hanging()]).start()
    async with httpx.AsyncClient(base_url=server.url) as http:
        request = asyncio.create_task(http.post("/v1/chat/completions", json={}))
        await server.wait_for_requests(1)
        await asyncio.wait_for(server.close(), 5)
        with pytest.raises(httpx.RemoteProtocolError):
            await request


async def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = ScriptedChatServer().url
