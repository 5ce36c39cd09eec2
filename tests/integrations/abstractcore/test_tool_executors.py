"""Tool executors: sync and async tools, failures reported to the model, malformed payloads."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from abstractruntime.integrations.abstractcore import (
    InvalidToolCallsError,
    MappingToolExecutor,
    PassthroughToolExecutor,
)


def add(a: int, b: int) -> int:
    return a + b


@dataclass
class Forecast:
    city: str
    temp: float


async def forecast(city: str) -> Forecast:
    await asyncio.sleep(0)
    return Forecast(city, 21.5)


def explode(reason: str) -> None:
    raise RuntimeError(f"boom: {reason}")


async def test_sync_and_async_tools_run_in_order() -> None:
    executor = MappingToolExecutor.from_tools([add, forecast])
    result = await executor.execute(
        tool_calls=[
            {"name": "add", "arguments": {"a": 2, "b": 3}, "call_id": "c1"},
            {"name": "forecast", "arguments": {"city": "Paris"}, "id": "c2"},
            {"name": "add", "arguments": {"a": 1, "b": 1}},
        ]
    )
    assert result == {
        "mode": "executed",
        "results": [
            {"call_id": "c1", "name": "add", "success": True, "output": 5, "error": None},
            {
                "call_id": "c2",
                "name": "forecast",
                "success": True,
                "output": {"city": "Paris", "temp": 21.5},  # made JSON-safe
                "error": None,
            },
            {"call_id": "call_2", "name": "add", "success": True, "output": 2, "error": None},
        ],
    }


async def test_sync_tools_run_in_a_worker_thread() -> None:
    seen: list[int] = []

    def where() -> str:
        seen.append(threading.get_ident())
        return "ok"

    await MappingToolExecutor({"where": where}).execute(tool_calls=[{"name": "where"}])
    assert seen and seen[0] != threading.get_ident()


async def test_a_blocking_tool_does_not_block_the_loop() -> None:
    release = threading.Event()

    def wait_for_release() -> str:
        # Only a coroutine on the loop sets the event: if the tool ran on the loop, it could not.
        return "released" if release.wait(5) else "the loop was blocked"

    async def releaser() -> None:
        release.set()

    executor = MappingToolExecutor({"block": wait_for_release})
    result, _ = await asyncio.gather(executor.execute(tool_calls=[{"name": "block"}]), releaser())
    assert result["results"][0]["output"] == "released"


async def test_raising_and_unknown_tools_are_reported_to_the_model() -> None:
    executor = MappingToolExecutor.from_tools([add, explode])
    result = await executor.execute(
        tool_calls=[
            {"name": "explode", "arguments": {"reason": "disk full"}, "call_id": "c1"},
            {"name": "search", "arguments": {"q": "x"}, "call_id": "c2"},
            {"name": "add", "arguments": {"a": 1}, "call_id": "c3"},
            {"name": "add", "arguments": {}, "arguments_error": "arguments are not valid JSON"},
            {"name": "add", "arguments": [1, 2], "call_id": "c5"},
            {"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "c6"},
        ]
    )
    results = result["results"]
    assert [r["success"] for r in results] == [False, False, False, False, False, True]
    assert all(r["output"] is None for r in results[:5])
    assert results[0]["error"] == "tool 'explode' raised RuntimeError: boom: disk full"
    assert results[1]["error"] == "unknown tool 'search' (available tools: add, explode)"
    assert results[2]["error"].startswith("tool 'add' raised TypeError")
    assert "'b'" in results[2]["error"]
    assert results[3]["error"] == "tool 'add' was not run: arguments are not valid JSON"
    assert "must be a JSON object, got list" in results[4]["error"]
    assert results[5]["output"] == 3  # one bad call does not stop the others


async def test_tool_timeout() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    executor = MappingToolExecutor({"forever": forever}, timeout_s=0.05)
    result = await executor.execute(tool_calls=[{"name": "forever", "call_id": "c"}])
    assert result["results"][0]["success"] is False
    assert result["results"][0]["error"] == "tool 'forever' timed out after 0.05s"


async def test_a_tool_raising_timeout_error_is_not_a_timeout_of_ours() -> None:
    def slow() -> None:
        raise TimeoutError("upstream API timed out")

    result = await MappingToolExecutor({"slow": slow}).execute(tool_calls=[{"name": "slow"}])
    assert (
        result["results"][0]["error"] == "tool 'slow' raised TimeoutError: upstream API timed out"
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("add", "must be a list"),
        ({"name": "add"}, "must be a list"),
        (None, "got NoneType"),
        (["add"], r"tool_calls\[0\] must be a dict"),
        ([{"arguments": {}}], r"tool_calls\[0\] has no tool name"),
        ([{"name": ""}], "has no tool name"),
    ],
)
async def test_malformed_tool_calls_raise(payload: Any, message: str) -> None:
    for executor in (MappingToolExecutor({"add": add}), PassthroughToolExecutor()):
        with pytest.raises(InvalidToolCallsError, match=message):
            await executor.execute(tool_calls=payload)


def test_from_tools_names_tools() -> None:
    class Definition:  # the shape of an AbstractCore ToolDefinition
        def __init__(self, name: str, function: Any) -> None:
            self.name, self.function = name, function

    def decorated(x: int) -> int:
        return x

    decorated._tool_definition = Definition("double_it", lambda x: 2 * x)  # type: ignore[attr-defined]
    executor = MappingToolExecutor.from_tools([add, decorated, Definition("neg", lambda x: -x)])
    assert sorted(executor.tools) == ["add", "double_it", "neg"]
    assert executor.tools["double_it"](4) == 8

    with pytest.raises(ValueError, match="two tools are named 'add'"):
        MappingToolExecutor.from_tools([add, add])
    with pytest.raises(ValueError, match="not callable"):
        MappingToolExecutor({"x": 3})  # type: ignore[dict-item]


async def test_passthrough_returns_the_calls() -> None:
    calls = [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1"}]
    result = await PassthroughToolExecutor().execute(tool_calls=calls)
    assert result == {
        "mode": "passthrough",
        "tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1", "call_id": "c1"}],
    }
