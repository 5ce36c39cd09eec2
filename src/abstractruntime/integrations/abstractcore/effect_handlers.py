"""The ``llm_call`` and ``tool_calls`` effect handlers.

``llm_call`` payload: ``prompt`` and/or ``messages`` (one is required), ``system_prompt``,
``tools`` (OpenAI tool specs), ``params`` (a dict: ``temperature``, ``max_tokens``, ``model``,
``base_url``, ``trace_metadata``...), ``response_format``. Its result (at the effect's
``result_key``) is the client's normalised answer: ``{content, data, tool_calls, usage, model,
finish_reason, metadata, trace_id}``.

``tool_calls`` payload: ``tool_calls`` (a list of ``{"name", "arguments", "call_id"}``), and
for a passthrough executor ``wait_key`` / ``resume_to_node``. Its result is the executor's
``{"mode": "executed", "results": [...]}``.

Expected failures never raise: they become failed effects with a readable error, retryable when
another attempt may succeed (an LLM timeout or 5xx), for the runtime's effect policy to decide.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ...core.effects import EffectHandler, EffectOutcome
from ...core.models import Effect, EffectType, RunState, WaitReason, WaitState
from .errors import AbstractCoreNotInstalledError, InvalidToolCallsError, LLMCallError
from .llm_client import LLMClient
from .tool_executor import ToolExecutor, validate_tool_calls


def trace_of(run: RunState) -> dict[str, str | None]:
    """The ids that tie an LLM call to its run (sent as ``X-AbstractCore-*`` headers)."""
    return {
        "run_id": run.run_id,
        "actor_id": run.actor_id,
        "session_id": run.session_id,
        "parent_run_id": run.parent_run_id,
    }


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


def make_llm_call_handler(client: LLMClient) -> EffectHandler:
    """The ``llm_call`` handler performing calls with ``client``.

    An ``LLMCallError`` becomes ``EffectOutcome.failed(message, retryable=exc.retryable)``; a
    malformed payload or a missing ``abstractcore`` fails without retry.
    """

    async def llm_call(
        run: RunState, effect: Effect, default_next_node: str | None
    ) -> EffectOutcome:
        request = _llm_request(effect.payload)
        if isinstance(request, str):
            return EffectOutcome.failed(request)
        try:
            result = await client.generate(**request, trace=trace_of(run))
        except LLMCallError as exc:
            return EffectOutcome.failed(str(exc), retryable=exc.retryable)
        except AbstractCoreNotInstalledError as exc:
            return EffectOutcome.failed(str(exc))
        return EffectOutcome.completed(result)

    return llm_call


def make_tool_calls_handler(executor: ToolExecutor) -> EffectHandler:
    """The ``tool_calls`` handler running calls with ``executor`` (async or plain ``execute``).

    An executor answering any other mode than ``"executed"`` (``PassthroughToolExecutor``)
    leaves the run waiting: reason ``event``, on payload ``wait_key`` (default
    ``tool_calls:{run_id}:{node}``), with ``details={"mode", "tool_calls"}``; resuming it
    writes the resume payload (the host's results) at the effect's ``result_key``.
    """

    async def tool_calls(
        run: RunState, effect: Effect, default_next_node: str | None
    ) -> EffectOutcome:
        payload = effect.payload
        try:
            calls = validate_tool_calls(payload.get("tool_calls"))
            returned: Any = executor.execute(tool_calls=calls)
            # The original's executors were synchronous: accept those too.
            result = await returned if inspect.isawaitable(returned) else returned
        except InvalidToolCallsError as exc:
            return EffectOutcome.failed(f"tool_calls payload: {exc}")
        except AbstractCoreNotInstalledError as exc:
            return EffectOutcome.failed(str(exc))
        if not isinstance(result, Mapping):
            return EffectOutcome.failed(
                f"tool executor {type(executor).__name__} returned {type(result).__name__}, "
                "expected a dict with a 'mode'"
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
    *, llm: LLMClient, tools: ToolExecutor
) -> dict[EffectType, EffectHandler]:
    """The ``llm_call`` and ``tool_calls`` handlers, for ``Runtime(effect_handlers=...)``."""
    return {
        EffectType.LLM_CALL: make_llm_call_handler(llm),
        EffectType.TOOL_CALLS: make_tool_calls_handler(tools),
    }
