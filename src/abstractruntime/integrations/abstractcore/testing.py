"""Testing aids: a scripted OpenAI-compatible chat-completions server.

Import it to test your own workflows and agents against an LLM that answers what your test says,
with no model, no network and no mocked HTTP: point ``create_remote_runtime`` /
``create_hybrid_runtime`` (or a ``RemoteAbstractCoreLLMClient``) at ``server.url``, run, then
check the run's output and what was sent. This package's own tests and ``examples/agent.py`` use
it; like the rest of the integration, it needs nothing beyond abstractruntime.

The server listens on a real socket (``127.0.0.1``, a free port by default) with a minimal asyncio
HTTP/1.1 implementation (keep-alive, ``Content-Length`` bodies; no dependency, never blocking the
loop), answers ``POST /v1/chat/completions`` from a queue of scripted replies, and records every
request (method, path, headers, body) so that a test can check what a client sent::

    async with ScriptedChatServer([
        ScriptedReply.tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}]),
        ScriptedReply.text("3"),
        ScriptedReply.http_error(503, "overloaded"),
    ]) as server:
        client = RemoteAbstractCoreLLMClient(server_base_url=server.url, model="m")
        ...
        assert server.chat_requests[0].json["messages"][0]["content"] == "..."

A reply may also be a function of the request (a ``Responder``); ``fallback`` answers once the
queue is empty (without it, such a request gets a 500 saying that the script ran out). Replies
can be slow (``.slow(seconds)``), never answer (``hanging()``), drop the connection
(``dropped()``), or be any status and body (``http_error``, ``json_body``, ``raw_body``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
DEFAULT_MODEL = "scripted-model"

_ids = itertools.count(1)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received. ``headers`` has lower-case names (the values of a
    repeated header joined with ``", "``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def chat_completion(
    content: str | None = None,
    *,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    model: str | None = None,
    finish_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    response_id: str | None = None,
) -> dict[str, Any]:
    """An OpenAI chat-completion body.

    ``tool_calls`` are ``{"name", "arguments": dict or JSON string, "id"?}``; they are sent in
    the OpenAI shape, with the arguments as a JSON string. ``model`` None: the request's model.
    """
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": str(call.get("id") or f"call_{next(_ids)}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call.get("arguments"), str)
                    else json.dumps(call.get("arguments") or {}),
                },
            }
            for call in tool_calls
        ]
    return {
        "id": response_id or f"chatcmpl-scripted-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": dict(usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
    }


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted answer.

    Attributes:
        status: the HTTP status.
        payload: a JSON body (a chat completion with ``model`` None gets the request's model).
        raw: a body sent as is (instead of ``payload``).
        content_type: the ``Content-Type`` of ``raw``.
        headers: extra response headers.
        delay_s: how long to wait before answering (cut short when the server closes).
        hang: never answer (until the server closes).
        drop: close the connection without answering.
    """

    status: int = 200
    payload: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hang: bool = False
    drop: bool = False

    @classmethod
    def text(
        cls,
        content: str,
        *,
        model: str | None = None,
        usage: Mapping[str, int] | None = None,
        headers: Mapping[str, str] | None = None,
        response_id: str | None = None,
    ) -> ScriptedReply:
        """A plain assistant answer."""
        body = chat_completion(content, model=model, usage=usage, response_id=response_id)
        return cls(payload=body, headers=dict(headers or {}))

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[Mapping[str, Any]],
        *,
        content: str | None = None,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ScriptedReply:
        """An answer asking for tool calls (``{"name", "arguments", "id"?}``)."""
        body = chat_completion(content, tool_calls=calls, model=model)
        return cls(payload=body, headers=dict(headers or {}))

    @classmethod
    def json_body(
        cls, body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> ScriptedReply:
        """Any JSON body (e.g. one without ``choices``)."""
        return cls(status=status, payload=body, headers=dict(headers or {}))

    @classmethod
    def http_error(
        cls,
        status: int,
        message: str = "scripted error",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> ScriptedReply:
        """An error status with an OpenAI-style error body."""
        body = {"error": {"message": message, "type": "scripted_error", "code": status}}
        return cls(status=status, payload=body, headers=dict(headers or {}))

    @classmethod
    def raw_body(
        cls, body: bytes | str, *, status: int = 200, content_type: str = "text/plain"
    ) -> ScriptedReply:
        """A body sent as is (e.g. one that is not JSON)."""
        raw = body.encode() if isinstance(body, str) else body
        return cls(status=status, raw=raw, content_type=content_type)

    @classmethod
    def hanging(cls) -> ScriptedReply:
        """Never answer: the client times out."""
        return cls(hang=True)

    @classmethod
    def dropped(cls) -> ScriptedReply:
        """Close the connection without answering."""
        return cls(drop=True)

    def slow(self, seconds: float) -> ScriptedReply:
        """This reply, sent after ``seconds``."""
        return dataclasses.replace(self, delay_s=seconds)


#: A reply computed from the request (e.g. to answer according to the conversation so far).
Responder = Callable[[RecordedRequest], ScriptedReply]


class _BadRequest(Exception):
    pass


class ScriptedChatServer:
    """Serves scripted chat completions on ``url`` and records the requests it gets.

    Args:
        replies: the answers to the chat-completion requests, in order (replies or responders).
        fallback: answers when the queue is empty (it is not used up).
        host: the interface to listen on.
        port: the port (0: a free one; see ``url`` once started).
        model: the model listed by ``GET /v1/models`` and used when neither the reply nor the
            request names one.
    """

    def __init__(
        self,
        replies: Iterable[ScriptedReply | Responder] = (),
        *,
        fallback: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = DEFAULT_MODEL,
    ) -> None:
        self.host = host
        self.port = port
        self.model = model
        self.fallback = fallback
        #: Every request received, oldest first.
        self.requests: list[RecordedRequest] = []
        self._queue: deque[ScriptedReply | Responder] = deque(replies)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closing = asyncio.Event()
        self._received = asyncio.Condition()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> ScriptedChatServer:
        """Start listening; returns the server (``url`` tells where)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        """The server's root URL (``http://127.0.0.1:PORT``), to use as ``server_base_url``."""
        if self._server is None:
            raise RuntimeError("the scripted server is not started: await server.start()")
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening, cut the replies that still wait, and close every connection."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        # Closing the sockets ends each connection's task by itself (a read sees the end of
        # the stream, a delayed reply sees ``_closing``): cancelling the tasks instead would
        # make asyncio's stream machinery log their cancellation as an error.
        tasks = list(self._connections)
        for writer in self._connections.values():
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> ScriptedChatServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- script and records ---------------------------------------------------------------------

    def add(self, *replies: ScriptedReply | Responder) -> None:
        """Queue more replies."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are not used yet."""
        return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The chat-completion requests received, oldest first."""
        return [r for r in self.requests if r.path == CHAT_COMPLETIONS_PATH]

    async def wait_for_requests(self, count: int, *, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` chat-completion requests arrived (``TimeoutError`` if not)."""

        async def arrived() -> None:
            async with self._received:
                await self._received.wait_for(lambda: len(self.chat_requests) >= count)

        await asyncio.wait_for(arrived(), timeout_s)

    # -- HTTP -----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            while not self._closing.is_set():
                try:
                    request = await self._read(reader)
                except _BadRequest as exc:
                    writer.write(_encode(400, str(exc).encode(), "text/plain", {}, close=True))
                    await writer.drain()
                    return
                if request is None:
                    return
                async with self._received:
                    self.requests.append(request)
                    self._received.notify_all()
                if not await self._answer(request, writer):
                    return
                if request.headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> RecordedRequest | None:
        line = await reader.readline()
        if not line:
            return None  # the client closed the connection
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            raise _BadRequest(f"malformed request line: {line!r}")
        method, path, _version = parts
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            # A repeated header is joined with commas, as HTTP defines: a test sees both.
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest("chunked request bodies are not supported; send Content-Length")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError as exc:
            raise _BadRequest("invalid Content-Length") from exc
        body = await reader.readexactly(length) if length else b""
        return RecordedRequest(method=method, path=path, headers=headers, body=body)

    def _reply_for(self, request: RecordedRequest) -> ScriptedReply:
        if request.path == "/v1/models" and request.method == "GET":
            return ScriptedReply.json_body(
                {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            )
        if request.path != CHAT_COMPLETIONS_PATH or request.method != "POST":
            return ScriptedReply.http_error(404, f"no route {request.method} {request.path}")
        if self._queue:
            item = self._queue.popleft()
        elif self.fallback is not None:
            item = self.fallback
        else:
            count = len(self.chat_requests)
            return ScriptedReply.http_error(
                500, f"scripted server: no reply left for chat request #{count}"
            )
        return item if isinstance(item, ScriptedReply) else item(request)

    async def _answer(self, request: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        """Send the reply; False when the connection must be closed instead."""
        reply = self._reply_for(request)
        if reply.hang or reply.delay_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), None if reply.hang else reply.delay_s)
            if self._closing.is_set():
                return False
        if reply.drop:
            return False
        if reply.raw is not None:
            body, content_type = reply.raw, reply.content_type
        else:
            payload = reply.payload
            if isinstance(payload, dict) and "choices" in payload and payload.get("model") is None:
                asked = request.json
                model = asked.get("model") if isinstance(asked, dict) else None
                payload = {**payload, "model": model or self.model}
            body, content_type = json.dumps(payload).encode(), "application/json"
        writer.write(_encode(reply.status, body, content_type, reply.headers, close=False))
        await writer.drain()
        return True


def _encode(
    status: int, body: bytes, content_type: str, headers: Mapping[str, str], *, close: bool
) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Scripted"
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        f"Connection: {'close' if close else 'keep-alive'}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
