"""``snapshot_run``: a snapshot's state and step id come from the same commit, even when steps
land between the reads it takes."""

from __future__ import annotations

from typing import Any

import pytest

from abstractruntime import Runtime
from abstractruntime.app import snapshot_run
from abstractruntime.errors import (
    ConcurrentUpdateError,
    InvalidArgumentError,
    RunNotFoundError,
    StoreError,
)
from tests.workflows import counter

WORKFLOW = counter(10)


async def _runtime_with_a_run() -> tuple[Runtime, str]:
    rt = Runtime(workflow_registry=[WORKFLOW])
    run_id = await rt.start(workflow=WORKFLOW)
    await rt.tick(workflow=WORKFLOW, run_id=run_id, max_steps=2)
    return rt, run_id


class StepsBetweenReads:
    """The store, but ``steps`` steps of the run are committed while its ledger tail is read."""

    def __init__(self, rt: Runtime, run_id: str, steps: int) -> None:
        self._rt, self._run_id, self.steps, self.tail_reads = rt, run_id, steps, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rt.store, name)

    async def ledger_tail(self, run_id: str) -> dict[str, Any] | None:
        self.tail_reads += 1
        if self.steps:
            self.steps -= 1
            await self._rt.tick(workflow=WORKFLOW, run_id=self._run_id, max_steps=1)
        return await self._rt.store.ledger_tail(run_id)


def _step_of(ledger: list[dict[str, Any]], n: int) -> str:
    """The step id of the ledger record that left ``vars['n'] == n``."""
    (record,) = [r for r in ledger if r["status"] == "completed" and r["node_id"] == f"n{n - 1}"]
    return str(record["step_id"])


async def test_the_snapshot_names_the_last_step_of_its_state() -> None:
    rt, run_id = await _runtime_with_a_run()
    snap = await snapshot_run(rt.store, run_id, name="two", tags=["t"])
    ledger = await rt.get_ledger(run_id)
    assert snap.state.vars["n"] == 2 and snap.tags == ["t"]
    assert snap.step_id == ledger[-1]["step_id"] == _step_of(ledger, 2)


async def test_a_step_between_the_reads_is_read_again() -> None:
    rt, run_id = await _runtime_with_a_run()
    racing = StepsBetweenReads(rt, run_id, steps=2)
    snap = await snapshot_run(racing, run_id, name="moving")  # type: ignore[arg-type]
    assert racing.tail_reads == 3  # two reads spoilt by a step, then a clean one
    ledger = await rt.get_ledger(run_id)
    assert snap.state.vars["n"] == 4
    assert snap.step_id == _step_of(ledger, 4)  # not the step of n == 2 or 3


async def test_a_run_that_never_holds_still_is_an_error() -> None:
    rt, run_id = await _runtime_with_a_run()
    racing = StepsBetweenReads(rt, run_id, steps=5)
    with pytest.raises(ConcurrentUpdateError):
        await snapshot_run(racing, run_id, name="x", attempts=3)  # type: ignore[arg-type]
    assert racing.tail_reads == 3


async def test_a_ledger_cut_short_is_not_mistaken_for_a_race() -> None:
    rt, run_id = await _runtime_with_a_run()
    rt.store.ledger_store._records[run_id].pop()  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="does not end at the record its run names"):
        await snapshot_run(rt.store, run_id, name="x")


async def test_mistakes_are_errors_of_the_tree() -> None:
    rt, run_id = await _runtime_with_a_run()
    with pytest.raises(RunNotFoundError):
        await snapshot_run(rt.store, "nope", name="x")
    for bad in ({"name": " "}, {"name": "x" * 256}, {"name": "x", "tags": [1]}):
        with pytest.raises(InvalidArgumentError, match=f"cannot snapshot run '{run_id}'"):
            await snapshot_run(rt.store, run_id, **bad)
    with pytest.raises(InvalidArgumentError, match="attempts"):
        await snapshot_run(rt.store, run_id, name="x", attempts=0)
