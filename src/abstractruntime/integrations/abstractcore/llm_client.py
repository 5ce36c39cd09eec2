"""LLM clients: one over HTTP (any OpenAI-compatible chat-completions server, such as an
AbstractCore server) and one in process (AbstractCore's providers, in a worker thread).

Both take the inputs of an ``llm_call`` effect payload and return the same JSON-safe dict::

    {"content": str | None, "data": Any, "tool_calls": [{"id", "name", "arguments": dict}],
     "usage": dict | None, "model": str | None, "finish_reason": str | None,
     "metadata": dict, "trace_id": str | None}

Building the request and reading the answer are plain functions in ``chat.py``, shared by both
clients and testable without I/O; only ``RemoteAbstractCoreLLMClient.generate`` touches the
network, and httpx's exceptions become ours at one boundary (``_map_httpx_errors``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio.to_thread
import httpx

from ...core import telemetry
from ._util import excerpt, import_abstractcore, jsonable, require_abstractcore
from .chat import (
    CHAT_COMPLETIONS_PATH,
    FORWARDED_PARAMS,
    build_chat_request,
    json_response_format,
    normalize_chat_completion,
    normalize_local_response,
    wants_json,
)
from .errors import (
    AbstractCoreNotInstalledError,
    LLMCallError,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    status_is_retryable,
)


class LLMClient(Protocol):
    """What the ``llm_call`` effect handler needs from an LLM client."""

    async def generate(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | str | None = None,
        trace: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Perform one chat completion; return the normalised answer (see the module doc)."""
        ...


class AbstractCoreLLMClient(Protocol):
    """The original AbstractRuntime's LLM client protocol: a synchronous ``generate``.

    A client written for the original keeps working: ``make_llm_call_handler`` runs its
    blocking ``generate`` in a worker thread, with ``prompt`` as a string and the run's ids in
    ``params["trace_metadata"]``. Our own clients implement the async ``LLMClient``.
    """

    def generate(
        self,
        *,
        prompt: str,
        messages: list[dict[str, str]] | None = None,
        system_prompt: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Return a JSON-safe dict with at least ``content``, ``tool_calls``, ``usage``,
        ``model``."""
        ...


# -- the HTTP client -------------------------------------------------------------------------------


@contextlib.contextmanager
def _map_httpx_errors(url: str, timeout_s: float) -> Iterator[None]:
    """The one place where httpx's exceptions become ours (like httpx's own
    ``map_httpcore_exceptions``): callers never see an httpx exception."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise LLMTimeoutError(
            f"LLM call to {url} timed out after {timeout_s:g}s ({type(exc).__name__}); "
            "the server may be overloaded or the model slow: raise timeout_s if it is expected",
            url=url,
        ) from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        # Our request cannot be sent as it is (a bad URL): sending it again will not help.
        raise LLMCallError(
            f"cannot send the LLM call to {url}: {type(exc).__name__}: {exc}",
            retryable=False,
            url=url,
        ) from exc
    except httpx.DecodingError as exc:
        raise LLMResponseError(
            f"LLM server {url} sent a body that cannot be decoded: {exc}", url=url
        ) from exc
    except httpx.TransportError as exc:  # ConnectError, ReadError, RemoteProtocolError ...
        reason = str(exc) or "the connection was closed without an answer"
        raise LLMConnectionError(
            f"cannot reach the LLM server at {url}: {type(exc).__name__}: {reason}", url=url
        ) from exc
    except httpx.HTTPError as exc:  # anything else httpx may add later
        raise LLMCallError(
            f"LLM call to {url} failed: {type(exc).__name__}: {exc}", retryable=True, url=url
        ) from exc


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare for LLM servers, and only a hint
        return None


def _read_response(response: httpx.Response, *, url: str) -> HttpResponse:
    """Check the status and body of a chat-completions response; its JSON body and headers."""
    status = response.status_code
    if not 200 <= status <= 299:
        phrase = response.reason_phrase or ""
        hint = " (worth retrying)" if status_is_retryable(status) else ""
        raise LLMHTTPError(
            f"LLM server {url} answered HTTP {status} {phrase}{hint}: "
            f"{excerpt(response.content) or '(empty body)'}",
            status_code=status,
            body=excerpt(response.content, 1000),
            url=url,
            retry_after_s=_retry_after(response),
        )
    try:
        body = json.loads(response.content)
    except ValueError as exc:  # also UnicodeDecodeError
        kind = response.headers.get("content-type", "no content type")
        raise LLMResponseError(
            f"LLM server {url} answered HTTP {status} with a body that is not JSON "
            f"({kind}): {excerpt(response.content) or '(empty body)'}",
            url=url,
        ) from exc
    return HttpResponse(body=body, headers=dict(response.headers))


@dataclass(frozen=True)
class HttpResponse:
    """What a ``RequestSender`` returns: the response's JSON body and its headers."""

    body: Any
    headers: dict[str, str]


class RequestSender(Protocol):
    """Sends the chat-completions POST of ``RemoteAbstractCoreLLMClient`` (the original's hook,
    e.g. to sign requests or to go through a gateway). ``post`` may be a coroutine or a plain
    ``def`` (then it runs in a worker thread); it returns an ``HttpResponse`` or the body as a
    dict, and raises for a failed call (an ``LLMCallError`` says whether retrying can help;
    any other exception counts as retryable)."""

    def post(
        self, url: str, *, headers: dict[str, str], json: dict[str, Any], timeout: float
    ) -> Any: ...


class HttpxRequestSender:
    """The default ``RequestSender``: one ``httpx.AsyncClient`` (its connection pool shared by
    every call), httpx's errors mapped to ``LLMCallError`` subclasses.

    Args:
        client: an ``httpx.AsyncClient`` to share (left open by ``aclose``); by default the
            sender makes its own.
        timeout_s: the default timeout of the client it makes.
    """

    def __init__(self, client: httpx.AsyncClient | None = None, *, timeout_s: float = 60.0):
        self._owns_client = client is None
        # No redirects: a chat-completions POST that is redirected is a misconfigured URL.
        self.client = client or httpx.AsyncClient(timeout=timeout_s)

    async def post(
        self, url: str, *, headers: dict[str, str], json: dict[str, Any], timeout: float
    ) -> HttpResponse:
        with _map_httpx_errors(url, timeout):
            response = await self.client.post(url, json=json, headers=headers, timeout=timeout)
        return _read_response(response, url=url)

    async def aclose(self) -> None:
        """Close the HTTP client if this sender made it."""
        if self._owns_client:
            await self.client.aclose()


class RemoteAbstractCoreLLMClient:
    """Calls ``{server_base_url}/v1/chat/completions`` of an OpenAI-compatible server (an
    AbstractCore server, vLLM, Ollama, LM Studio, OpenAI...) over one shared connection pool.

    Args:
        server_base_url: the server's root, without ``/v1`` (``http://127.0.0.1:8000``).
        model: the model to ask for (``params["model"]`` overrides it per call).
        timeout_s: the timeout of each phase of a call (connect, write, wait for the answer).
        headers: sent with every call (``Authorization``...).
        client: an ``httpx.AsyncClient`` to share; by default the client makes its own and
            closes it in ``aclose``. An injected client is left open for its owner.
        request_sender: sends the POST instead (the original's hook; see ``RequestSender``);
            ``client`` is then unused.

    Every failure raises an ``LLMCallError`` (see ``errors``) with ``retryable`` set.
    """

    def __init__(
        self,
        *,
        server_base_url: str,
        model: str,
        timeout_s: float = 60.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        request_sender: RequestSender | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if client is not None and request_sender is not None:
            raise ValueError("pass client= or request_sender=, not both")
        self.server_base_url = server_base_url.rstrip("/")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.headers = dict(headers or {})
        self._own_sender = (
            HttpxRequestSender(client, timeout_s=self.timeout_s) if request_sender is None else None
        )
        #: Sends each call's POST.
        self.sender: RequestSender = request_sender or self._own_sender  # type: ignore[assignment]

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.server_base_url}{CHAT_COMPLETIONS_PATH}"

    @property
    def is_closed(self) -> bool:
        """Whether the underlying HTTP client is closed (False with a ``request_sender``)."""
        return self._own_sender is not None and self._own_sender.client.is_closed

    async def generate(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | str | None = None,
        trace: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Perform one chat completion and return the normalised answer.

        Args:
            prompt: appended as the last user message.
            messages: OpenAI chat messages.
            system_prompt: sent as the first (system) message.
            tools: OpenAI tool specs (``{"type": "function", "function": {...}}``).
            params: ``temperature``, ``max_tokens``, ``stop``, ``seed``, ``frequency_penalty``,
                ``presence_penalty``, ``top_p``, ``tool_choice``, ``model``, ``base_url``,
                ``response_format``, ``trace_metadata``.
            response_format: ``"json"`` or an OpenAI ``response_format``; the parsed JSON
                content is then returned as ``data``.
            trace: the run's ``run_id``, ``actor_id``, ``session_id``, ``parent_run_id``,
                sent as ``X-AbstractCore-*`` headers.

        Raises:
            LLMCallError: a subclass saying what failed, with ``retryable`` set.
        """
        headers, body = build_chat_request(
            model=self.model,
            prompt=prompt,
            messages=messages,
            system_prompt=system_prompt,
            tools=tools,
            params=params,
            response_format=response_format,
            trace=trace,
            headers=self.headers,
        )
        telemetry.current().inject(headers)  # W3C traceparent of the step, when telemetry is on
        url = self.url
        post = functools.partial(
            self.sender.post, url, headers=headers, json=body, timeout=self.timeout_s
        )
        if inspect.iscoroutinefunction(self.sender.post):
            raw = await post()
        else:  # the original's senders are synchronous: off the event loop
            raw = await anyio.to_thread.run_sync(post)
            if inspect.isawaitable(raw):
                raw = await raw
        answer, answer_headers = (raw, {}) if isinstance(raw, dict) else (raw.body, raw.headers)
        return normalize_chat_completion(
            answer,
            response_headers=answer_headers,
            want_json=wants_json(body.get("response_format")),
            url=url,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._own_sender is not None:
            await self._own_sender.aclose()

    async def __aenter__(self) -> RemoteAbstractCoreLLMClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, model={self.model!r})"


# -- the in-process client ---------------------------------------------------------------------

#: Words in an exception's class name that mark a transient failure of a local provider.
_TRANSIENT_NAMES = ("timeout", "ratelimit", "connection", "unavailable", "overload")


def _local_error(exc: Exception, provider: str, model: str) -> LLMCallError:
    """An AbstractCore provider's exception as an ``LLMCallError``.

    Retryable: an HTTP-like ``status_code`` worth retrying, the standard ``TimeoutError`` and
    ``ConnectionError``, or a class name saying timeout, rate limit, connection or unavailable.
    Anything else (authentication, unknown model, invalid request) will fail again: not.
    """
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__.lower()
    if isinstance(status, int):
        retryable = status_is_retryable(status)
    else:
        retryable = isinstance(exc, (TimeoutError, ConnectionError)) or any(
            word in name for word in _TRANSIENT_NAMES
        )
    return LLMCallError(
        f"AbstractCore provider {provider!r} (model {model!r}) failed: "
        f"{type(exc).__name__}: {excerpt(str(exc), 500)}",
        retryable=retryable,
    )


#: What ``get_model_capabilities`` answers when AbstractCore cannot tell (the original's value).
DEFAULT_MODEL_CAPABILITIES: Mapping[str, Any] = {"max_tokens": 32768}

#: ``params`` keys passed to AbstractCore's ``generate`` (``base_url`` is a provider setting
#: in process: pass it to ``create_llm`` through the client's keyword arguments).
LOCAL_PARAMS = (*FORWARDED_PARAMS, "trace_metadata")


class LocalAbstractCoreLLMClient:
    """Runs AbstractCore's provider stack in process: ``abstractcore.create_llm(provider,
    model=model, **kwargs)``, whose blocking ``generate`` runs in a worker thread.

    The provider is created on the first call (in the worker thread, as it may load a model or
    reach a server); constructing the client only checks that ``abstractcore`` is installed,
    and raises ``AbstractCoreNotInstalledError`` naming the install command when it is not.

    Args:
        provider: an AbstractCore provider name (``"ollama"``, ``"openai"``, ``"lmstudio"``...).
        model: the model name.
        llm_kwargs: passed to ``create_llm`` (the original's argument).
        **kwargs: passed to ``create_llm`` too (over ``llm_kwargs``).
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        llm_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require_abstractcore(type(self).__name__)
        self.provider = provider
        self.model = model
        self._kwargs = {**(llm_kwargs or {}), **kwargs}
        self._llm: Any = None
        self._lock = threading.Lock()  # worker threads may race to create the provider

    def _get_llm(self) -> Any:
        with self._lock:
            if self._llm is None:
                core = import_abstractcore("abstractcore", type(self).__name__)
                self._llm = core.create_llm(self.provider, model=self.model, **self._kwargs)
            return self._llm

    async def aclose(self) -> None:
        """Close the provider's HTTP clients, if it made any (AbstractCore's providers keep an
        ``httpx`` client open for their lifetime and have no close of their own)."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        close = getattr(getattr(llm, "client", None), "close", None)
        if callable(close):
            await anyio.to_thread.run_sync(close)
        # From the instance's own attributes: never make a lazily built client just to close it.
        async_client = getattr(llm, "__dict__", {}).get("async_client")
        aclose = getattr(async_client, "aclose", None)
        if callable(aclose):
            await aclose()

    def _generate_blocking(
        self,
        prompt: str | None,
        messages: list[dict[str, Any]] | None,
        system_prompt: str | None,
        tools: list[dict[str, Any]] | None,
        kwargs: dict[str, Any],
        want_json: bool,
    ) -> dict[str, Any]:
        llm = self._get_llm()
        response = llm.generate(
            prompt=prompt or "",
            messages=messages,
            system_prompt=system_prompt,
            tools=tools,
            stream=False,
            **kwargs,
        )
        return normalize_local_response(response, requested_model=self.model, want_json=want_json)

    async def generate(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | str | None = None,
        trace: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Perform one generation in a worker thread and return the normalised answer.

        Takes the same arguments as ``RemoteAbstractCoreLLMClient.generate``; the trace ids are
        merged into AbstractCore's ``trace_metadata``.

        Raises:
            LLMCallError: the provider failed (``retryable`` as described in ``_local_error``).
            AbstractCoreNotInstalledError: abstractcore cannot be imported.
        """
        params = dict(params or {})
        fmt = json_response_format(response_format, params)
        kwargs = {k: params[k] for k in LOCAL_PARAMS if params.get(k) is not None}
        ids = {k: v for k, v in (trace or {}).items() if v}
        if ids:
            kwargs["trace_metadata"] = {**dict(kwargs.get("trace_metadata") or {}), **ids}
        call = functools.partial(
            self._generate_blocking,
            prompt,
            [dict(m) for m in messages] if messages is not None else None,
            system_prompt,
            [dict(t) for t in tools] if tools else None,
            kwargs,
            wants_json(fmt),
        )
        try:
            # abandon_on_cancel: a cancelled run (a worker shutting down) does not wait for a
            # local generation that may take minutes; its result is dropped when it ends.
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except (LLMCallError, AbstractCoreNotInstalledError):
            raise
        except Exception as exc:
            raise _local_error(exc, self.provider, self.model) from exc

    async def get_model_capabilities(self) -> dict[str, Any]:
        """The model's capabilities as AbstractCore's architecture detection knows them
        (``max_tokens``, ``max_output_tokens``, ``tool_support``, ``vision_support``...).

        As in the original, this never fails: when the detection cannot answer, it returns
        ``{"max_tokens": 32768}``. It reads AbstractCore's model tables in a worker thread.
        """
        return await anyio.to_thread.run_sync(self._model_capabilities_blocking)

    def _model_capabilities_blocking(self) -> dict[str, Any]:
        try:
            detection = import_abstractcore(
                "abstractcore.architectures.detection", "get_model_capabilities"
            )
            capabilities = detection.get_model_capabilities(self.model)
        except Exception:  # the original's safe fallback: detection is only a hint
            return dict(DEFAULT_MODEL_CAPABILITIES)
        if not isinstance(capabilities, Mapping):
            return dict(DEFAULT_MODEL_CAPABILITIES)
        return dict(jsonable(dict(capabilities)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r})"
