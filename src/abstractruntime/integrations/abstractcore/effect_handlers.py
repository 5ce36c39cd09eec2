"""The ``llm_call`` and ``tool_calls`` effect handlers.

``llm_call`` payload: ``prompt`` and/or ``messages`` (one is required), ``system_prompt``,
``tools`` (OpenAI tool specs), ``params`` (a dict: ``temperature``, ``max_tokens``, ``model``,
``base_url``, ``trace_metadata``...), ``response_format``. Its result (at the effect's
``result_key``) is the client's normalised answer: ``{content, data, tool_calls, usage, model,
finish_reason, metadata, trace_id}``.

``tool_calls`` payload: ``tool_calls`` (a list of ``{"name", "arguments", "call_id"}``), and
for a passthrough executor ``wait_key`` / ``resume_to_node``. Its result is the executor's
``{"mode": "executed", "results": [...]}``.

Expected failures never raise: they become failed effects with a readable error, for the
runtime's effect policy to retry; those that would fail again the same way (an HTTP 4xx other
than 408 and 429, a malformed payload) say ``retryable=False`` and fail the run at once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Container, Mapping
from typing import Any

import anyio.to_thread

from ...core.effects import EffectHandler, EffectOutcome
from ...core.models import Effect, EffectType, RunState, WaitReason, WaitState
from .errors import AbstractCoreNotInstalledError, InvalidToolCallsError, LLMCallError
from .llm_client import AbstractCoreLLMClient, LLMClient
from .tool_executor import ToolExecutor, validate_tool_calls


def trace_of(run: RunState) -> dict[str, str | None]:
    """The ids that tie an LLM call to its run (sent as ``X-AbstractCore-*`` headers)."""
    return {
        "run_id": run.run_id,
        "actor_id": run.actor_id,
        "session_id": run.session_id,
        "parent_run_id": run.parent_run_id,
    }


def trace_metadata_of(run: RunState) -> dict[str, str]:
    """The run's ids as the original put them in ``params["trace_metadata"]``: ``run_id``
    always, ``actor_id``, ``session_id`` and ``parent_run_id`` when set."""
    return {k: str(v) for k, v in trace_of(run).items() if v}


def _llm_request(payload: Mapping[str, Any]) -> dict[str, Any] | str:
    """The client's keyword arguments from an ``llm_call`` payload, or what is wrong with it."""
    prompt = payload.get("prompt")
    messages = payload.get("messages")
    if prompt is not None and not isinstance(prompt, str):
        return f"llm_call payload['prompt'] must be a string, got {type(prompt).__name__}"
    if messages is not None and (
        not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages)
    ):
        return "llm_call payload['messages'] must be a list of {'role', 'content'} dicts"
    if not prompt and not messages:
        return "llm_call requires payload['prompt'] or payload['messages']"
    system_prompt = payload.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        return "llm_call payload['system_prompt'] must be a string"
    tools = payload.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools)
    ):
        return "llm_call payload['tools'] must be a list of OpenAI tool specs (dicts)"
    params = payload.get("params")
    if params is not None and not isinstance(params, Mapping):
        return f"llm_call payload['params'] must be a dict, got {type(params).__name__}"
    return {
        "prompt": prompt,
        "messages": messages,
        "system_prompt": system_prompt,
        "tools": tools,
        "params": params,
        "response_format": payload.get("response_format"),
    }


def _is_async(function: Callable[..., Any]) -> bool:
    target = function.func if isinstance(function, functools.partial) else function
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def _call(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Await an async ``function``; run a plain one in a worker thread (the original's clients
    and executors were synchronous, and a blocking call must not stall the event loop)."""
    if _is_async(function):
        returned = function(**kwargs)
    else:
        # abandon_on_cancel: a cancelled run does not wait for a call that may take minutes.
        returned = await anyio.to_thread.run_sync(
            functools.partial(function, **kwargs), abandon_on_cancel=True
        )
    return await returned if inspect.isawaitable(returned) else returned


def _accepted(function: Callable[..., Any]) -> Container[str] | None:
    """The keyword arguments ``function`` takes, or None when it takes any (``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read: send everything
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def _client_kwargs(request: dict[str, Any], accepted: Container[str] | None) -> dict[str, Any]:
    """The request as ``generate`` takes it. A client written for the original (no ``trace``
    argument) gets the original's call: ``prompt`` as a string, and a ``response_format`` it
    does not take in ``params``, where the original's remote client looked for it."""
    if accepted is None:
        return request
    kwargs = {k: v for k, v in request.items() if k in accepted}
    if "trace" not in accepted:
        kwargs["prompt"] = str(request["prompt"] or "")
        fmt = request.get("response_format")
        if fmt is not None and "response_format" not in accepted:
            kwargs["params"] = {**request["params"], "response_format": fmt}
    return kwargs


def make_llm_call_handler(
    client: LLMClient | AbstractCoreLLMClient | None = None,
    *,
    llm: LLMClient | AbstractCoreLLMClient | None = None,
) -> EffectHandler:
    """The ``llm_call`` handler performing calls with ``client`` (or ``llm=``, the original's
    keyword).

    ``client.generate`` may be async (``LLMClient``: our clients) or a plain ``def`` (the
    original's ``AbstractCoreLLMClient``), which runs in a worker thread; it gets the
    keyword arguments its signature takes. As in the original, the run's ids are merged into
    ``params["trace_metadata"]`` (``run_id``, and ``actor_id``, ``session_id``,
    ``parent_run_id`` when set; they win over the payload's keys of the same name).

    An ``LLMCallError`` becomes ``EffectOutcome.failed(message, retryable=exc.retryable)`` (a
    4xx: not retried); a malformed payload or a missing ``abstractcore`` fails without retry;
    any other exception a custom client raises is retried as the effect policy allows.
    """
    chosen = client if client is not None else llm
    if chosen is None:
        raise TypeError("make_llm_call_handler needs an LLM client: pass client (or llm=)")
    generate: Callable[..., Any] = chosen.generate
    accepted = _accepted(generate)

    async def llm_call(
        run: RunState, effect: Effect, default_next_node: str | None
    ) -> EffectOutcome:
        request = _llm_request(effect.payload)
        if isinstance(request, str):
            return EffectOutcome.failed(request, retryable=False)
        params = dict(request["params"] or {})
        metadata = params.get("trace_metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            return EffectOutcome.failed(
                "llm_call payload['params']['trace_metadata'] must be a dict, "
                f"got {type(metadata).__name__}",
                retryable=False,
            )
        params["trace_metadata"] = {**dict(metadata or {}), **trace_metadata_of(run)}
        request["params"] = params
        request["trace"] = trace_of(run)
        try:
            result = await _call(generate, **_client_kwargs(request, accepted))
        except LLMCallError as exc:
            return EffectOutcome.failed(str(exc), retryable=exc.retryable)
        except AbstractCoreNotInstalledError as exc:
            return EffectOutcome.failed(str(exc), retryable=False)
        return EffectOutcome.completed(result)

    return llm_call


def make_tool_calls_handler(
    executor: ToolExecutor | None = None, *, tools: ToolExecutor | None = None
) -> EffectHandler:
    """The ``tool_calls`` handler running calls with ``executor`` (or ``tools=``, the
    original's keyword); an async ``execute`` is awaited, a plain one runs in a worker thread.
    Without an executor, every ``tool_calls`` effect fails, saying what to configure.

    An executor answering any other mode than ``"executed"`` (``PassthroughToolExecutor``)
    leaves the run waiting: reason ``event``, on payload ``wait_key`` (default
    ``tool_calls:{run_id}:{node}``), with ``details={"mode", "tool_calls"}``; resuming it
    writes the resume payload (the host's results) at the effect's ``result_key``.
    """

    chosen = executor if executor is not None else tools

    async def tool_calls(
        run: RunState, effect: Effect, default_next_node: str | None
    ) -> EffectOutcome:
        payload = effect.payload
        if chosen is None:
            return EffectOutcome.failed(
                "tool_calls needs a tool executor: configure the runtime with "
                "MappingToolExecutor, AbstractCoreToolExecutor or PassthroughToolExecutor",
                retryable=False,
            )
        try:
            calls = validate_tool_calls(payload.get("tool_calls"))
            # The original's executors were synchronous: those run in a worker thread.
            result = await _call(chosen.execute, tool_calls=calls)
        except InvalidToolCallsError as exc:
            return EffectOutcome.failed(f"tool_calls payload: {exc}", retryable=False)
        except AbstractCoreNotInstalledError as exc:
            return EffectOutcome.failed(str(exc), retryable=False)
        if not isinstance(result, Mapping):
            return EffectOutcome.failed(
                f"tool executor {type(chosen).__name__} returned {type(result).__name__}, "
                "expected a dict with a 'mode'",
                retryable=False,
            )
        mode = result.get("mode", "executed")
        if mode == "executed":
            return EffectOutcome.completed(dict(result))
        wait_key = payload.get("wait_key") or f"tool_calls:{run.run_id}:{run.current_node}"
        resume_to = payload.get("resume_to_node")
        return EffectOutcome.waiting(
            WaitState(
                reason=WaitReason.EVENT,
                wait_key=str(wait_key),
                resume_to_node=resume_to if isinstance(resume_to, str) else default_next_node,
                result_key=effect.result_key,
                details={"mode": mode, "tool_calls": result.get("tool_calls", calls)},
            )
        )

    return tool_calls


def build_effect_handlers(
    *, llm: LLMClient | AbstractCoreLLMClient, tools: ToolExecutor | None = None
) -> dict[EffectType, EffectHandler]:
    """The ``llm_call`` and ``tool_calls`` handlers, for ``Runtime(effect_handlers=...)``."""
    return {
        EffectType.LLM_CALL: make_llm_call_handler(llm),
        EffectType.TOOL_CALLS: make_tool_calls_handler(tools),
    }
