"""Waiting, on real time, for what another task or process does."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from abstractruntime import RunLeasedError, RunState, RunStatus, WorkflowSpec

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    message: str = "the condition never held",
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
) -> T:
    """Call ``check`` (a function or a coroutine function) until its result is true, and return
    that result.

    A ``check`` may also assert: an ``AssertionError`` counts as "not yet", and the last one is
    what the test reports if ``timeout`` seconds pass first, after ``message``.
    """
    deadline = time.monotonic() + timeout
    while True:
        failure: AssertionError | None = None
        result: Any = None
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except AssertionError as exc:
            failure = exc
        if failure is None and result:
            return result  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            last = f"{failure}" if failure is not None else f"last result {result!r}"
            raise AssertionError(f"{message} (within {timeout:g} s; {last})") from failure
        await asyncio.sleep(interval)


async def wait_for_status(
    runtime: Any, run_id: str, status: RunStatus, *, timeout: float = 10.0
) -> RunState:
    """The state of ``run_id`` once it is ``status`` (``runtime``: anything with ``get_state``,
    a ``Runtime`` or a ``ScheduledRuntime``)."""

    async def reached() -> RunState:
        state: RunState = await runtime.get_state(run_id)
        assert state.status is status, f"run stayed {state.status}: {state.error}"
        return state

    return await eventually(reached, f"run {run_id} never became {status.value}", timeout=timeout)


async def tick_when_unleased(
    runtime: Any,
    workflow: WorkflowSpec,
    run_id: str,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    **tick_kwargs: Any,
) -> RunState:
    """``runtime.tick(...)`` once nobody holds the run's lease any more: a killed process's
    lease blocks the run until it expires, on real time."""

    async def tick() -> RunState:
        try:
            state: RunState = await runtime.tick(workflow=workflow, run_id=run_id, **tick_kwargs)
        except RunLeasedError as exc:
            raise AssertionError(f"still leased: {exc}") from exc
        return state

    return await eventually(tick, f"run {run_id} stayed leased", timeout=timeout, interval=interval)
