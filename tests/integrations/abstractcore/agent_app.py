"""The agent, tools and script shared by the agent tests and their child processes."""

from __future__ import annotations

import asyncio
from typing import Any

from abstractruntime.integrations.abstractcore import MappingToolExecutor
from abstractruntime.integrations.abstractcore.agent import react_agent_workflow
from abstractruntime.integrations.abstractcore.testing import ScriptedReply

TOOL_SPECS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]

TASK = "What is 2 + 3, and what is the weather in Paris?"


def add(a: float, b: float) -> float:
    return a + b


async def weather(city: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"city": city, "sky": "sunny", "celsius": 21}


def tools(*, hang: bool = False) -> MappingToolExecutor:
    """The executor; ``hang``: ``weather`` never returns (a process to kill mid-step)."""

    async def hanging_weather(city: str) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    weather_tool = hanging_weather if hang else weather
    return MappingToolExecutor({"add": add, "weather": weather_tool})


def workflow() -> Any:
    return react_agent_workflow(tools=TOOL_SPECS, params={"temperature": 0})


def script() -> list[ScriptedReply]:
    """The model's two answers: ask for both tools, then answer."""
    return [
        ScriptedReply.tool_calls(
            [
                {"id": "call_add", "name": "add", "arguments": {"a": 2, "b": 3}},
                {"id": "call_weather", "name": "weather", "arguments": {"city": "Paris"}},
            ]
        ),
        ScriptedReply.text("2 + 3 = 5, and Paris is sunny at 21 °C."),
    ]
