"""A ReAct agent as a durable workflow: ``llm_call -> tool_calls -> llm_call -> ... -> answer``.

Two nodes alternate. ``think`` adds the last tool results to the conversation and asks the
LLM (an ``llm_call`` effect, the answer lands in ``vars["llm"]``); ``act`` adds the answer to
the conversation and either runs the tool calls it asks for (a ``tool_calls`` effect, results in
``vars["tool_results"]``, then back to ``think``) or completes with the answer. Every step is
committed, so a crash loses at most the step in flight: a completed LLM call is never repeated.

Start a run with ``vars={"task": "..."}``; the output is ``{"answer": str, "llm_calls": int}``;
the conversation stays in ``vars["messages"]`` (OpenAI chat messages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...core.models import Effect, EffectType, RunState, StepPlan
from ...core.spec import WorkflowSpec

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Use the tools when they help; when you know the answer, "
    "reply with it in plain text."
)


def _tool_messages(results: Any) -> list[dict[str, Any]]:
    """Tool results (the executor's, or those a host resumed a passthrough wait with) as
    ``tool`` messages: the model sees the output, or the error, of each call."""
    if isinstance(results, Mapping):
        results = results.get("results")
    if not isinstance(results, list):
        raise ValueError(
            "tool results must be {'results': [{'call_id', 'success', 'output', 'error'}]}, "
            f"got {type(results).__name__}"
        )
    messages = []
    for result in results:
        if not isinstance(result, Mapping):
            raise ValueError(f"a tool result must be a dict, got {type(result).__name__}")
        if result.get("success", True):
            output = result.get("output")
            content = output if isinstance(output, str) else json.dumps(output)
        else:
            content = f"error: {result.get('error')}"
        messages.append(
            {"role": "tool", "tool_call_id": str(result.get("call_id") or ""), "content": content}
        )
    return messages


def _assistant_message(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The LLM's normalised answer as an OpenAI assistant message, tool calls included."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.get("content")}
    calls = answer.get("tool_calls") or []
    if calls:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
            for call in calls
        ]
    return message


def react_agent_workflow(
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    params: Mapping[str, Any] | None = None,
    max_llm_calls: int = 8,
    workflow_id: str = "react_agent",
) -> WorkflowSpec:
    """The agent workflow.

    Args:
        tools: OpenAI tool specs offered to the model (the functions themselves belong to the
            runtime's tool executor, never to the run).
        system_prompt: the system message of every call.
        params: the ``llm_call`` params (``temperature``, ``max_tokens``, ``model``...).
        max_llm_calls: the run fails when the model needs more calls than this to answer.
        workflow_id: the workflow's id.
    """
    if max_llm_calls < 1:
        raise ValueError("max_llm_calls must be at least 1")
    tool_specs = [dict(t) for t in tools]
    llm_params = dict(params or {})

    def think(run: RunState, ctx: object) -> StepPlan:
        messages: list[dict[str, Any]] = run.vars.setdefault("messages", [])
        if not messages:
            task = run.vars.get("task")
            if not isinstance(task, str) or not task:
                raise ValueError("the agent needs vars['task'], the question to work on")
            messages.append({"role": "user", "content": task})
        if "tool_results" in run.vars:
            messages.extend(_tool_messages(run.vars.pop("tool_results")))
        calls = int(run.vars.get("llm_calls", 0))
        if calls >= max_llm_calls:
            raise RuntimeError(
                f"the agent made {calls} LLM calls without an answer (max_llm_calls="
                f"{max_llm_calls})"
            )
        run.vars["llm_calls"] = calls + 1
        payload: dict[str, Any] = {"messages": list(messages), "params": llm_params}
        if system_prompt:
            payload["system_prompt"] = system_prompt
        if tool_specs:
            payload["tools"] = tool_specs
        return StepPlan(
            node_id="think",
            effect=Effect(EffectType.LLM_CALL, payload, result_key="llm"),
            next_node="act",
        )

    def act(run: RunState, ctx: object) -> StepPlan:
        answer = run.vars.pop("llm")
        run.vars["messages"].append(_assistant_message(answer))
        calls = answer.get("tool_calls") or []
        if calls:
            return StepPlan(
                node_id="act",
                effect=Effect(
                    EffectType.TOOL_CALLS, {"tool_calls": calls}, result_key="tool_results"
                ),
                next_node="think",
            )
        return StepPlan(
            node_id="act",
            complete_output={"answer": answer.get("content"), "llm_calls": run.vars["llm_calls"]},
        )

    return WorkflowSpec(workflow_id, "think", {"think": think, "act": act})
