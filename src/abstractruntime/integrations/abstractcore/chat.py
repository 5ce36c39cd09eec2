"""The chat-completions wire format: building a request and reading the answer, with no I/O.

Shared by both LLM clients (``llm_client.py``): the HTTP client sends what
``build_chat_request`` builds and reads the server's JSON with ``normalize_chat_completion``; the
in-process client reads AbstractCore's response objects with ``normalize_local_response``. Every
answer becomes the same JSON-safe dict (see ``llm_client``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._util import compact_json, excerpt, jsonable
from .errors import LLMCallError, LLMResponseError

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


def wants_json(response_format: Mapping[str, Any] | None) -> bool:
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
