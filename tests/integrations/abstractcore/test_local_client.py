"""The in-process client. abstractcore is not installable here: its absence is tested for real,
and the worker-thread and normalisation path with a stand-in module put in ``sys.modules``."""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from abstractruntime.integrations.abstractcore import (
    AbstractCoreNotInstalledError,
    AbstractCoreToolExecutor,
    LLMCallError,
    LocalAbstractCoreLLMClient,
    create_hybrid_runtime,
    create_local_runtime,
)
from abstractruntime.integrations.abstractcore._util import abstractcore_available

needs_no_abstractcore = pytest.mark.skipif(
    abstractcore_available(), reason="abstractcore is installed: its absence cannot be tested"
)


@needs_no_abstractcore
@pytest.mark.parametrize(
    "make",
    [
        lambda: LocalAbstractCoreLLMClient(provider="ollama", model="qwen3"),
        AbstractCoreToolExecutor,
    ],
)
def test_missing_abstractcore_names_the_install_command(make: Any) -> None:
    with pytest.raises(AbstractCoreNotInstalledError) as caught:
        make()
    assert isinstance(caught.value, ImportError)
    assert "pip install 'abstractruntime[abstractcore]'" in str(caught.value)
    assert caught.value.name == "abstractcore"


@needs_no_abstractcore
async def test_factories_that_need_abstractcore_say_so(tmp_path: Any) -> None:
    with pytest.raises(AbstractCoreNotInstalledError, match=r"abstractruntime\[abstractcore\]"):
        await create_local_runtime(provider="ollama", model="qwen3")
    with pytest.raises(AbstractCoreNotInstalledError, match="AbstractCoreToolExecutor"):
        # hybrid runs tools in process, with AbstractCore's registry unless told otherwise
        await create_hybrid_runtime(server_base_url="http://127.0.0.1:1", model="m")


@dataclass
class FakeResponse:
    """The shape of AbstractCore's ``GenerateResponse``."""

    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    usage: dict[str, int] | None = None
    model: str | None = "qwen3"
    finish_reason: str | None = "stop"
    metadata: dict[str, Any] = field(default_factory=lambda: {"trace_id": "local-trace"})


class RateLimitError(Exception):
    pass


class AuthenticationError(Exception):
    pass


class FakeLLM:
    """Stands for an AbstractCore provider: answers from a queue, records calls and threads."""

    def __init__(self) -> None:
        self.created_with: list[tuple[Any, ...]] = []
        self.calls: list[dict[str, Any]] = []
        self.threads: list[int] = []
        self.answers: list[Any] = []

    def generate(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        self.threads.append(threading.get_ident())
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    llm = FakeLLM()
    module = types.ModuleType("abstractcore")

    def create_llm(provider: str, model: str, **kwargs: Any) -> FakeLLM:
        llm.created_with.append((provider, model, kwargs, threading.get_ident()))
        return llm

    module.create_llm = create_llm  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "abstractcore", module)
    return llm


async def test_generate_runs_in_a_worker_thread_and_is_normalised(fake_llm: FakeLLM) -> None:
    client = LocalAbstractCoreLLMClient(provider="ollama", model="qwen3", base_url="http://gpu:1")
    assert fake_llm.created_with == []  # the provider is made on the first call
    fake_llm.answers.append(
        FakeResponse(
            content=None,
            tool_calls=[{"name": "weather", "arguments": {"city": "Paris"}, "call_id": "c1"}],
            usage={"total_tokens": 9},
            finish_reason="tool_calls",
        )
    )
    result = await client.generate(
        prompt="Weather in Paris?",
        system_prompt="Be brief.",
        tools=[{"type": "function", "function": {"name": "weather"}}],
        params={"temperature": 0.1, "base_url": "ignored", "trace_metadata": {"step": "x"}},
        trace={"run_id": "r1", "actor_id": None},
    )
    loop_thread = threading.get_ident()
    [(provider, model, kwargs, made_in)] = fake_llm.created_with
    assert (provider, model, kwargs) == ("ollama", "qwen3", {"base_url": "http://gpu:1"})
    assert made_in != loop_thread  # creating a provider may block: not on the loop
    assert fake_llm.threads[0] != loop_thread
    call = fake_llm.calls[0]
    assert call["prompt"] == "Weather in Paris?"
    assert call["system_prompt"] == "Be brief."
    assert call["stream"] is False
    assert call["temperature"] == 0.1
    assert "base_url" not in call  # a provider setting in process
    assert call["trace_metadata"] == {"step": "x", "run_id": "r1"}
    assert result == {
        "content": None,
        "data": None,
        "tool_calls": [{"id": "c1", "name": "weather", "arguments": {"city": "Paris"}}],
        "usage": {"total_tokens": 9},
        "model": "qwen3",
        "finish_reason": "tool_calls",
        "metadata": {"trace_id": "local-trace"},
        "trace_id": "local-trace",
    }

    fake_llm.answers.append(FakeResponse(content='{"a": 1}'))
    result = await client.generate(prompt="json", response_format="json")
    assert result["data"] == {"a": 1}
    assert len(fake_llm.created_with) == 1  # one provider for every call


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RateLimitError("slow down"), True),
        (TimeoutError("too slow"), True),
        (AuthenticationError("bad key"), False),
        (ValueError("unknown model"), False),
    ],
)
async def test_provider_errors_become_llm_call_errors(
    fake_llm: FakeLLM, error: Exception, retryable: bool
) -> None:
    client = LocalAbstractCoreLLMClient(provider="openai", model="gpt")
    fake_llm.answers.append(error)
    with pytest.raises(LLMCallError) as caught:
        await client.generate(prompt="hi")
    assert caught.value.retryable is retryable
    assert "AbstractCore provider 'openai' (model 'gpt') failed" in str(caught.value)
    assert type(error).__name__ in str(caught.value)
    assert caught.value.__cause__ is error


@dataclass
class CoreToolCall:  # the shape of abstractcore.tools.core.ToolCall
    name: str
    arguments: dict[str, Any]
    call_id: str | None = None


@dataclass
class CoreToolResult:
    call_id: str
    output: Any = None
    error: str | None = None
    success: bool = True


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """AbstractCore's tool registry, standing in: ``add`` works, ``fail`` fails."""
    seen: list[Any] = []
    core = types.ModuleType("abstractcore.tools.core")
    core.ToolCall = CoreToolCall  # type: ignore[attr-defined]
    registry = types.ModuleType("abstractcore.tools.registry")

    def execute_tools(calls: list[CoreToolCall]) -> list[CoreToolResult]:
        seen.append((list(calls), threading.get_ident()))
        return [
            CoreToolResult(c.call_id or "", output=sum(c.arguments.values()))
            if c.name == "add"
            else CoreToolResult(c.call_id or "", error="no such tool", success=False)
            for c in calls
        ]

    registry.execute_tools = execute_tools  # type: ignore[attr-defined]
    for name, module in {
        "abstractcore": types.ModuleType("abstractcore"),
        "abstractcore.tools": types.ModuleType("abstractcore.tools"),
        "abstractcore.tools.core": core,
        "abstractcore.tools.registry": registry,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return seen


async def test_abstractcore_tool_executor_uses_the_registry(fake_registry: list[Any]) -> None:
    result = await AbstractCoreToolExecutor().execute(
        tool_calls=[
            {"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1"},
            {"name": "add", "arguments": {}, "arguments_error": "arguments are not valid JSON"},
            {"name": "fail", "arguments": {}, "call_id": "c3"},
        ]
    )
    assert result == {
        "mode": "executed",
        "results": [
            {"call_id": "c1", "name": "add", "success": True, "output": 3, "error": None},
            {
                "call_id": "call_1",
                "name": "add",
                "success": False,
                "output": None,
                "error": "tool 'add' was not run: arguments are not valid JSON",
            },
            {
                "call_id": "c3",
                "name": "fail",
                "success": False,
                "output": None,
                "error": "tool 'fail' failed: no such tool",
            },
        ],
    }
    [(calls, thread)] = fake_registry  # the call with bad arguments never reached it
    assert [c.call_id for c in calls] == ["c1", "c3"]
    assert thread != threading.get_ident()


def test_local_responses_in_other_shapes_are_normalised() -> None:
    from abstractruntime.integrations.abstractcore.chat import normalize_local_response

    as_dict = normalize_local_response(
        {"content": "hi", "tool_calls": None, "metadata": {"trace_id": 7}},
        requested_model="m",
        want_json=False,
    )
    assert as_dict["content"] == "hi"
    assert as_dict["trace_id"] == "7"
    assert as_dict["model"] == "m"
    assert as_dict["tool_calls"] == []

    class Structured:  # a pydantic model returned for structured output
        def model_dump(self) -> dict[str, Any]:
            return {"city": "Paris"}

    structured = normalize_local_response(Structured(), requested_model="m", want_json=False)
    assert structured["data"] == {"city": "Paris"}
    assert structured["content"] is None


async def test_model_capabilities_come_from_abstractcore_detection(
    fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, int]] = []
    architectures = types.ModuleType("abstractcore.architectures")
    detection = types.ModuleType("abstractcore.architectures.detection")

    def get_model_capabilities(model: str) -> dict[str, Any]:
        asked.append((model, threading.get_ident()))
        return {"max_tokens": 40960, "max_output_tokens": 8192, "tool_support": "native"}

    detection.get_model_capabilities = get_model_capabilities  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "abstractcore.architectures", architectures)
    monkeypatch.setitem(sys.modules, "abstractcore.architectures.detection", detection)
    client = LocalAbstractCoreLLMClient(provider="ollama", model="qwen3")
    capabilities = await client.get_model_capabilities()
    assert capabilities == {
        "max_tokens": 40960,
        "max_output_tokens": 8192,
        "tool_support": "native",
    }
    [(model, thread)] = asked
    assert model == "qwen3" and thread != threading.get_ident()  # reads tables: not on the loop
    assert fake_llm.created_with == []  # no provider is made for it


async def test_model_capabilities_fall_back_as_in_the_original(fake_llm: FakeLLM) -> None:
    # the stand-in abstractcore has no architectures.detection: detection cannot answer
    client = LocalAbstractCoreLLMClient(provider="ollama", model="qwen3")
    assert await client.get_model_capabilities() == {"max_tokens": 32768}
