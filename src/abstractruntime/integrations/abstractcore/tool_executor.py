"""Tool executors: what the ``tool_calls`` effect uses to run the calls an LLM asked for.

- ``MappingToolExecutor``: runs Python functions from an explicit ``{name: function}`` map held
  by the host process (never stored in a run), the durable way to give tools to a workflow.
- ``AbstractCoreToolExecutor``: runs the tools registered in AbstractCore's tool registry.
- ``PassthroughToolExecutor``: runs nothing; the run waits until the host resumes it with the
  results (for tools that must run elsewhere: in a browser, on a user's machine, after review).

An executor's ``execute(tool_calls=[{"name", "arguments", "call_id" or "id"}])`` returns
``{"mode": "executed", "results": [{"call_id", "name", "success", "output", "error"}]}``, or
``{"mode": "passthrough", "tool_calls": [...]}``. A tool that raises, or that does not exist,
gives a result with ``success: False`` and an ``error`` naming the tool: the model reads it and
can recover, as in the original AbstractRuntime. Only a malformed ``tool_calls`` list is an
error of the effect itself (``InvalidToolCallsError``).
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.to_thread

from ._util import excerpt, import_abstractcore, jsonable, require_abstractcore
from .errors import InvalidToolCallsError


class ToolExecutor(Protocol):
    """What the ``tool_calls`` effect handler needs from a tool executor."""

    async def execute(self, *, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
        """Run (or pass through) ``tool_calls``; see the module doc for the result's shape."""
        ...


def validate_tool_calls(tool_calls: Any) -> list[dict[str, Any]]:
    """The calls as ``[{"call_id", "name", "arguments": dict, ...}]``.

    Each call needs a non-empty string ``name``; ``call_id`` is taken from ``call_id`` or
    ``id`` (the OpenAI name); the OpenAI shape ``{"id", "function": {"name", "arguments"}}`` is
    accepted too. Raises ``InvalidToolCallsError`` for anything that is not a list of calls.
    Arguments are checked per call, later, so that one bad call does not fail the others.
    """
    if not isinstance(tool_calls, list):
        raise InvalidToolCallsError(
            f"tool_calls must be a list of {{'name', 'arguments'}} calls, "
            f"got {type(tool_calls).__name__}"
        )
    calls: list[dict[str, Any]] = []
    for index, raw in enumerate(tool_calls):
        if not isinstance(raw, Mapping):
            raise InvalidToolCallsError(
                f"tool_calls[{index}] must be a dict with a 'name', got {type(raw).__name__}"
            )
        call = dict(raw)
        function = call.get("function")
        if isinstance(function, Mapping) and "name" not in call:
            call["name"] = function.get("name")
            call.setdefault("arguments", function.get("arguments"))
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidToolCallsError(
                f"tool_calls[{index}] has no tool name (a non-empty string 'name'): "
                f"{excerpt(repr(raw), 200)}"
            )
        call_id = call.get("call_id") or call.get("id")
        call["call_id"] = str(call_id) if call_id else f"call_{index}"
        calls.append(call)
    return calls


def _arguments_problem(call: Mapping[str, Any]) -> str | None:
    if call.get("arguments_error"):
        return str(call["arguments_error"])
    arguments = call.get("arguments")
    if arguments is not None and not isinstance(arguments, Mapping):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    return None


def _result(
    call: Mapping[str, Any], *, success: bool, output: Any = None, error: str | None = None
) -> dict[str, Any]:
    return {
        "call_id": call["call_id"],
        "name": call["name"],
        "success": success,
        "output": jsonable(output) if success else None,
        "error": error,
    }


def _tool_name(tool: Any) -> tuple[str, Callable[..., Any]]:
    """The name and function of a plain function or of an AbstractCore tool definition
    (``@tool`` functions carry ``_tool_definition``; a ``ToolDefinition`` has ``name`` and
    ``function``)."""
    definition = getattr(tool, "_tool_definition", None)
    if definition is None and not callable(tool) and hasattr(tool, "function"):
        definition = tool
    if definition is not None:
        name = getattr(definition, "name", None) or getattr(tool, "__name__", None)
        function = getattr(definition, "function", None) or tool
    else:
        name, function = getattr(tool, "__name__", None), tool
    if not isinstance(name, str) or not name:
        raise ValueError(f"tool {tool!r} has no name: give a function or a tool definition")
    if not callable(function):
        raise ValueError(f"tool {name!r} is not callable")
    return name, function


def _is_async(function: Callable[..., Any]) -> bool:
    target = function.func if isinstance(function, functools.partial) else function
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class MappingToolExecutor:
    """Runs tool calls with the functions of an explicit ``{name: function}`` map.

    Async functions are awaited; plain functions run in a worker thread, so a slow tool never
    blocks the event loop. Calls run one after the other, in the order the model gave them.

    Args:
        tool_map: the functions by tool name.
        timeout_s: the longest a call may take (None: no limit). A call past it gets
            ``success: False``; a sync function cannot be interrupted and finishes in its thread.
    """

    def __init__(
        self, tool_map: Mapping[str, Callable[..., Any]], *, timeout_s: float | None = None
    ) -> None:
        for name, function in tool_map.items():
            if not callable(function):
                raise ValueError(f"tool {name!r} is not callable")
        if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number or None, got {timeout_s}")
        self.tools: dict[str, Callable[..., Any]] = dict(tool_map)
        self.timeout_s = timeout_s

    @classmethod
    def from_tools(
        cls, tools: Sequence[Any], *, timeout_s: float | None = None
    ) -> MappingToolExecutor:
        """Name each tool by its ``__name__``, or by its AbstractCore tool definition's name.

        Raises ``ValueError`` for a tool without a name and for two tools with the same one.
        """
        mapping: dict[str, Callable[..., Any]] = {}
        for tool in tools:
            name, function = _tool_name(tool)
            if name in mapping:
                raise ValueError(f"two tools are named {name!r}")
            mapping[name] = function
        return cls(mapping, timeout_s=timeout_s)

    async def execute(self, *, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
        """Run the calls; raises ``InvalidToolCallsError`` only for a malformed list."""
        calls = validate_tool_calls(tool_calls)
        return {"mode": "executed", "results": [await self._run(call) for call in calls]}

    async def _run(self, call: dict[str, Any]) -> dict[str, Any]:
        name = call["name"]
        function = self.tools.get(name)
        if function is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return _result(
                call, success=False, error=f"unknown tool {name!r} (available tools: {known})"
            )
        problem = _arguments_problem(call)
        if problem is not None:
            return _result(call, success=False, error=f"tool {name!r} was not run: {problem}")
        arguments = dict(call.get("arguments") or {})
        output: Any = None
        with anyio.move_on_after(self.timeout_s) as scope:
            try:
                if _is_async(function):
                    output = await function(**arguments)
                else:
                    # abandon_on_cancel: on a timeout, stop waiting for the thread.
                    output = await anyio.to_thread.run_sync(
                        functools.partial(function, **arguments), abandon_on_cancel=True
                    )
                    if inspect.isawaitable(output):
                        output = await output
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                return _result(call, success=False, error=f"tool {name!r} raised {detail}")
        if scope.cancelled_caught:
            return _result(
                call, success=False, error=f"tool {name!r} timed out after {self.timeout_s:g}s"
            )
        return _result(call, success=True, output=output)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self.tools)})"


class AbstractCoreToolExecutor:
    """Runs tool calls with AbstractCore's tool machinery.

    Args:
        tools: the tools to offer (``@tool`` functions, plain functions or AbstractCore
            ``ToolDefinition``s), registered in a ``ToolRegistry`` of this executor's own; without
            them, AbstractCore's global registry (``register_tool``, which AbstractCore 2.x
            deprecates in favour of passing tools explicitly).

    The registry is synchronous: it runs in a worker thread. Constructing the executor checks
    that ``abstractcore`` is installed (``AbstractCoreNotInstalledError`` names the install
    command otherwise).
    """

    def __init__(self, tools: Iterable[Any] | None = None) -> None:
        require_abstractcore(type(self).__name__)
        self._tools = list(tools or [])
        self._registry: Any = None
        self._lock = threading.Lock()  # worker threads may race to build the registry

    def _get_registry(self, registry_module: Any) -> Any:
        """This executor's registry of ``tools``, or the global one's module functions."""
        if not self._tools:
            return registry_module
        with self._lock:
            if self._registry is None:
                registry = registry_module.ToolRegistry()
                for tool in self._tools:
                    registry.register(tool)
                self._registry = registry
            return self._registry

    async def execute(self, *, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
        """Run the calls through ``abstractcore.tools.registry.execute_tools``."""
        calls = validate_tool_calls(tool_calls)
        return await anyio.to_thread.run_sync(functools.partial(self._execute_blocking, calls))

    def _execute_blocking(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        feature = type(self).__name__
        core = import_abstractcore("abstractcore.tools.core", feature)
        registry = import_abstractcore("abstractcore.tools.registry", feature)
        results: list[dict[str, Any] | None] = [None] * len(calls)
        runnable: list[int] = []
        for index, call in enumerate(calls):
            problem = _arguments_problem(call)
            if problem is None:
                runnable.append(index)
            else:
                error = f"tool {call['name']!r} was not run: {problem}"
                results[index] = _result(call, success=False, error=error)
        core_calls = [
            core.ToolCall(
                name=calls[i]["name"],
                arguments=dict(calls[i].get("arguments") or {}),
                call_id=calls[i]["call_id"],
            )
            for i in runnable
        ]
        executor = self._get_registry(registry)
        outcomes = list(executor.execute_tools(core_calls)) if core_calls else []
        for index, outcome in zip(runnable, outcomes, strict=False):
            call = calls[index]
            success = bool(getattr(outcome, "success", False))
            reason = getattr(outcome, "error", None)
            results[index] = _result(
                call,
                success=success,
                output=getattr(outcome, "output", None),
                error=None if success else f"tool {call['name']!r} failed: {reason}",
            )
        for index in runnable[len(outcomes) :]:  # the registry answered fewer results
            results[index] = _result(
                calls[index], success=False, error="AbstractCore's registry returned no result"
            )
        return {"mode": "executed", "results": results}


class PassthroughToolExecutor:
    """Runs nothing: the ``tool_calls`` effect leaves the run waiting for the host.

    The run waits (reason ``event``) with the calls in ``WaitState.details["tool_calls"]``, on
    the effect payload's ``wait_key`` or ``tool_calls:{run_id}:{node}``. The host runs the tools
    and resumes the run with ``{"results": [...]}``, which lands at the effect's ``result_key``.
    """

    def __init__(self, *, mode: str = "passthrough") -> None:
        #: What ``execute`` reports as ``"mode"`` (the original let a host choose it).
        self.mode = mode

    async def execute(self, *, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the calls, validated, for the host to run."""
        return {"mode": self.mode, "tool_calls": jsonable(validate_tool_calls(tool_calls))}
