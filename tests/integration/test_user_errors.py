"""A caller's mistake is an error of the project's tree, raised before any I/O, on every store:
never a ``StoreError`` ("cannot read <database>"), which means the database failed."""

from __future__ import annotations

from typing import Any

import pytest

from abstractruntime import (
    InvalidArgumentError,
    InvalidTypeError,
    Runtime,
    ScheduledRuntime,
    Scheduler,
    StoreError,
)
from tests.workflows import APPROVAL


@pytest.mark.parametrize("limit", [-1, "10", 2.5, True])
async def test_a_bad_limit_is_the_callers_error(store: Any, limit: Any) -> None:
    rt = Runtime(store=store, workflow_registry=[APPROVAL])
    sr = ScheduledRuntime(rt, Scheduler(rt))
    for call in (
        lambda: store.list_runs(limit=limit),
        lambda: sr.find_waiting_runs(limit=limit),
    ):
        with pytest.raises(InvalidArgumentError, match="limit must be a whole number") as info:
            await call()
        assert not isinstance(info.value, StoreError)
    assert await store.list_runs(limit=0) == []


async def test_a_payload_that_is_not_a_dict_is_the_callers_error(store: Any) -> None:
    rt = Runtime(store=store, workflow_registry=[APPROVAL])
    run_id, _ = await rt.run(APPROVAL)
    for payload in (["yes"], "yes", 3):
        with pytest.raises(InvalidTypeError, match="must be a dict"):
            await rt.resume(workflow=APPROVAL, run_id=run_id, wait_key=None, payload=payload)
        with pytest.raises(InvalidTypeError, match="must be a dict"):
            await rt.emit_event("evt:x", payload, buffer_s=10)
    with pytest.raises(InvalidTypeError, match="vars must be a dict"):
        await rt.start(workflow=APPROVAL, vars=["x"])  # type: ignore[arg-type]
    assert len(await store.list_runs()) == 1
