"""LLM clients: one over HTTP (any OpenAI-compatible chat-completions server, such as an
AbstractCore server) and one in process (AbstractCore's providers, in a worker thread).

Both take the inputs of an ``llm_call`` effect payload and return the same JSON-safe dict::

    {"content": str | None, "data": Any, "tool_calls": [{"id", "name", "arguments": dict}],
     "usage": dict | None, "model": str | None, "finish_reason": str | None,
     "metadata": dict, "trace_id": str | None}

Building the request and reading the answer are plain functions, shared by both clients and
testable without I/O; only ``RemoteAbstractCoreLLMClient.generate`` touches the network, and
httpx's exceptions become ours at one boundary (``_map_httpx_errors``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

import anyio.to_thread
import httpx

from ._util import compact_json, excerpt, import_abstractcore, jsonable, require_abstractcore
from .errors import (
    AbstractCoreNotInstalledError,
    LLMCallError,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    status_is_retryable,
)

#: ``params`` keys sent to the server as OpenAI chat-completion fields (others are not sent:
#: a strict server rejects fields it does not know).
FORWARDED_PARAMS = (
    "temperature",
    "max_tokens",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "top_p",
    "tool_choice",
)

#: Trace headers, as the AbstractCore server reads them, by the trace key they carry.
TRACE_HEADERS = {
    "run_id": "X-AbstractCore-Run-Id",
    "actor_id": "X-AbstractCore-Actor-Id",
    "session_id": "X-AbstractCore-Session-Id",
    "parent_run_id": "X-AbstractCore-Parent-Run-Id",
}
TRACE_METADATA_HEADER = "X-AbstractCore-Trace-Metadata"
#: Response headers that may carry the server's trace id, most specific first.
TRACE_ID_HEADERS = ("x-abstractcore-trace-id", "x-trace-id", "x-request-id")

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


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


# -- request building (no I/O) -------------------------------------------------------------------


def build_messages(
    prompt: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    system_prompt: str | None,
) -> list[dict[str, Any]]:
    """The chat messages: the system prompt, then ``messages``, then ``prompt`` as a user
    message (as AbstractCore's ``generate`` does when given both)."""
    out: list[dict[str, Any]] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    out.extend(dict(m) for m in messages or ())
    if prompt:
        out.append({"role": "user", "content": prompt})
    return out


def json_response_format(
    response_format: Mapping[str, Any] | str | None, params: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The OpenAI ``response_format`` asked for (the argument, else ``params``), or None.

    ``"json"`` is a shortcut for ``{"type": "json_object"}``.
    """
    value = response_format if response_format is not None else params.get("response_format")
    if value is None:
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, Mapping):
        return dict(value)
    raise LLMCallError(
        f"response_format must be 'json' or an OpenAI response_format dict, got {value!r}",
        retryable=False,
    )


def _wants_json(response_format: Mapping[str, Any] | None) -> bool:
    return response_format is not None and response_format.get("type") in (
        "json_object",
        "json_schema",
    )


def build_chat_request(
    *,
    model: str,
    prompt: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    system_prompt: str | None,
    tools: Sequence[Mapping[str, Any]] | None,
    params: Mapping[str, Any] | None,
    response_format: Mapping[str, Any] | str | None,
    trace: Mapping[str, str | None] | None,
    headers: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, Any]]:
    """The headers and JSON body of a chat-completions request.

    ``params["model"]`` overrides ``model``; ``params["base_url"]`` becomes the body's
    ``base_url`` (the AbstractCore server routes the call to that provider endpoint);
    ``params["trace_metadata"]`` (a dict) is sent as compact JSON in
    ``X-AbstractCore-Trace-Metadata``. The ids in ``trace`` (``run_id``, ``actor_id``,
    ``session_id``, ``parent_run_id``) become the ``X-AbstractCore-*-Id`` headers; without
    them, the same keys of the trace metadata do. Per-call trace headers win over ``headers``.
    """
    params = dict(params or {})
    fmt = json_response_format(response_format, params)
    body: dict[str, Any] = {
        "model": params.get("model") or model,
        "messages": build_messages(prompt, messages, system_prompt),
        "stream": False,
    }
    base_url = params.get("base_url")
    if base_url:
        body["base_url"] = str(base_url)
    for key in FORWARDED_PARAMS:
        if params.get(key) is not None:
            body[key] = params[key]
    if tools:  # some servers reject an empty list
        body["tools"] = [dict(t) for t in tools]
    if fmt is not None:
        body["response_format"] = fmt

    out_headers = dict(headers)
    metadata = params.get("trace_metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise LLMCallError(
            f"params['trace_metadata'] must be a dict, got {type(metadata).__name__}",
            retryable=False,
        )
    ids: dict[str, Any] = {k: (metadata or {}).get(k) for k in TRACE_HEADERS}
    ids.update({k: v for k, v in (trace or {}).items() if k in TRACE_HEADERS and v})
    for key, header in TRACE_HEADERS.items():
        if ids.get(key):
            _set_header(out_headers, header, str(ids[key]))
    if metadata:
        _set_header(out_headers, TRACE_METADATA_HEADER, compact_json(dict(metadata)))
    return out_headers, body


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    """Set ``name``, replacing it in any letter case (else both would be sent)."""
    for existing in [k for k in headers if k.lower() == name.lower()]:
        del headers[existing]
    headers[name] = value


# -- answer normalisation (no I/O) ---------------------------------------------------------------


def _text_of(content: Any) -> str | None:
    """Message content as text: OpenAI may send a list of parts instead of a string."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content]
        return "".join(parts)
    return str(content)


def normalize_tool_calls(raw: Any) -> list[dict[str, Any]]:
    """Tool calls as ``[{"id", "name", "arguments": dict}]``.

    Accepts the OpenAI shape (``{"id", "function": {"name", "arguments": "<json>"}}``) and the
    flat one (``{"name", "arguments", "call_id"}``). Arguments the model sent as malformed JSON
    (or as something else than an object) become ``{}`` plus ``"arguments_error"``, so that the
    tool executor reports the problem to the model instead of the run failing.
    """
    if not raw:
        return []
    if not isinstance(raw, list):
        raw = [raw]
    calls: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        item = jsonable(item)
        if not isinstance(item, dict):
            continue
        function = item.get("function")
        source = function if isinstance(function, dict) else item
        call: dict[str, Any] = {
            "id": str(item.get("id") or item.get("call_id") or f"call_{index}"),
            "name": str(source.get("name") or ""),
            "arguments": {},
        }
        arguments = source.get("arguments")
        if isinstance(arguments, str):
            text = arguments
            try:
                arguments = json.loads(text) if text.strip() else {}
            except ValueError as exc:
                call["arguments_error"] = (
                    f"arguments are not valid JSON ({exc}): {excerpt(text, 200)}"
                )
                arguments = {}
        if isinstance(arguments, dict):
            call["arguments"] = arguments
        elif arguments is not None and "arguments_error" not in call:
            call["arguments_error"] = (
                f"arguments must be a JSON object, got {type(arguments).__name__}"
            )
        calls.append(call)
    return calls


def _strip_code_fence(text: str) -> str:
    """Models often wrap JSON in a Markdown code fence; take what is inside."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        inner = stripped[3:-3]
        newline = inner.find("\n")
        # Drop the info string (``json``) on the fence's first line.
        return inner[newline + 1 :] if newline >= 0 else inner
    return stripped


def _parse_data(content: str | None, want_json: bool, metadata: dict[str, Any]) -> Any:
    """The JSON content when JSON was asked for (else None); says in ``metadata`` why not."""
    if not want_json:
        return None
    if content is None:
        metadata["data_error"] = "JSON was asked for, but the answer has no content"
        return None
    try:
        return json.loads(_strip_code_fence(content))
    except ValueError as exc:
        metadata["data_error"] = f"JSON was asked for, but the content is not JSON: {exc}"
        return None


def normalize_chat_completion(
    body: Any,
    *,
    response_headers: Mapping[str, str] | None = None,
    want_json: bool = False,
    url: str | None = None,
) -> dict[str, Any]:
    """The normalised answer of an OpenAI chat-completion body.

    Raises ``LLMResponseError`` when the body is not a chat completion (no ``choices``).
    Content that should be JSON but is not leaves ``data`` None and says why in
    ``metadata["data_error"]``: the content is kept for the workflow to decide.
    """
    if not isinstance(body, dict):
        raise LLMResponseError(
            f"LLM server {url or ''} answered JSON that is not an object: "
            f"{excerpt(json.dumps(body, default=str))}",
            url=url,
        )
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = body.get("error")
        said = f" (it says: {excerpt(json.dumps(error, default=str))})" if error else ""
        raise LLMResponseError(
            f"LLM server {url or ''} answered without 'choices', so it is not a chat "
            f"completion{said}: {excerpt(json.dumps(body, default=str))}",
            url=url,
        )
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content = _text_of(message.get("content"))
    raw_calls = message.get("tool_calls")
    if not raw_calls and isinstance(message.get("function_call"), dict):
        raw_calls = [{"function": message["function_call"]}]  # the pre-tools OpenAI shape
    lower = {str(k).lower(): str(v) for k, v in (response_headers or {}).items()}
    header_trace = next((lower[h] for h in TRACE_ID_HEADERS if lower.get(h)), None)
    response_id = body.get("id")
    trace_id = header_trace or (str(response_id) if response_id else None)
    metadata: dict[str, Any] = {"response_id": response_id, "trace_id": trace_id}
    data = _parse_data(content, want_json, metadata)
    usage = body.get("usage")
    return {
        "content": content,
        "data": jsonable(data),
        "tool_calls": normalize_tool_calls(raw_calls),
        "usage": jsonable(usage) if isinstance(usage, dict) else None,
        "model": body.get("model"),
        "finish_reason": choice.get("finish_reason"),
        "metadata": jsonable(metadata),
        "trace_id": trace_id,
    }


def _field(response: Any, name: str) -> Any:
    if isinstance(response, Mapping):
        return response.get(name)
    return getattr(response, name, None)


def normalize_local_response(
    response: Any, *, requested_model: str, want_json: bool
) -> dict[str, Any]:
    """The normalised answer of an AbstractCore ``generate`` result (a ``GenerateResponse``,
    a dict, or a pydantic object for structured output)."""
    if isinstance(response, Mapping) and "choices" in response:
        return normalize_chat_completion(dict(response), want_json=want_json)
    if (
        not isinstance(response, Mapping)
        and not hasattr(response, "content")
        and callable(getattr(response, "model_dump", None))
    ):
        # Structured output: AbstractCore returned the pydantic model itself.
        return {
            "content": None,
            "data": jsonable(response),
            "tool_calls": [],
            "usage": None,
            "model": requested_model,
            "finish_reason": None,
            "metadata": {"trace_id": None},
            "trace_id": None,
        }
    raw_metadata = _field(response, "metadata")
    metadata: dict[str, Any] = jsonable(raw_metadata) if isinstance(raw_metadata, Mapping) else {}
    trace_id = metadata.get("trace_id") or _field(response, "trace_id")
    metadata["trace_id"] = None if trace_id is None else str(trace_id)
    content = _text_of(_field(response, "content"))
    data = _parse_data(content, want_json, metadata)
    usage = _field(response, "usage")
    return {
        "content": content,
        "data": jsonable(data),
        "tool_calls": normalize_tool_calls(_field(response, "tool_calls")),
        "usage": jsonable(usage) if usage is not None else None,
        "model": _field(response, "model") or requested_model,
        "finish_reason": _field(response, "finish_reason"),
        "metadata": metadata,
        "trace_id": metadata["trace_id"],
    }


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


def read_chat_response(response: httpx.Response, *, url: str, want_json: bool) -> dict[str, Any]:
    """Check the status and body of a chat-completions response and normalise it."""
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
    return normalize_chat_completion(
        body, response_headers=response.headers, want_json=want_json, url=url
    )


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
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.server_base_url = server_base_url.rstrip("/")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.headers = dict(headers or {})
        self._owns_client = client is None
        # No redirects: a chat-completions POST that is redirected is a misconfigured URL.
        self._client = client or httpx.AsyncClient(timeout=self.timeout_s)

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.server_base_url}{CHAT_COMPLETIONS_PATH}"

    @property
    def is_closed(self) -> bool:
        """Whether the underlying HTTP client is closed."""
        return self._client.is_closed

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
        url = self.url
        with _map_httpx_errors(url, self.timeout_s):
            response = await self._client.post(url, json=body, headers=headers)
        return read_chat_response(
            response, url=url, want_json=_wants_json(body.get("response_format"))
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_client:
            await self._client.aclose()

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
        **kwargs: passed to ``create_llm``.
    """

    def __init__(self, *, provider: str, model: str, **kwargs: Any) -> None:
        require_abstractcore(type(self).__name__)
        self.provider = provider
        self.model = model
        self._kwargs = kwargs
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
            _wants_json(fmt),
        )
        try:
            # abandon_on_cancel: a cancelled run (a worker shutting down) does not wait for a
            # local generation that may take minutes; its result is dropped when it ends.
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except (LLMCallError, AbstractCoreNotInstalledError):
            raise
        except Exception as exc:
            raise _local_error(exc, self.provider, self.model) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r})"
