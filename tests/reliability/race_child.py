"""Child process of the race tests: resumes, emits or cancels the same runs as its siblings.

    python -m tests.reliability.race_child SPEC_JSON

``SPEC_JSON``: ``{"url", "name", "role", "peers": [names], "barrier": dir, "rounds": [[[run_id,
wait_key], ...], ...]}`` with ``role`` one of ``resume``, ``emit``, ``cancel``. The child opens
its store, then plays the rounds: before each, it waits on a file barrier until every peer is
there too (``<barrier>/<round>-<name>``), so that all of them fall on the same runs at the same
moment; then it acts on the round's runs in the given order. It prints one JSON line: for each
run id, ``{"ok": status}`` or ``{"error": exception type, "message": ...}`` (``emit``:
``{"ok": ...}`` for the runs its ``emit_event`` resumed, ``{"skipped": true}`` for the others).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    StepPlan,
    WorkflowSpec,
    create_scheduled_runtime,
)
from abstractruntime.scheduler import ScheduledRuntime
from abstractruntime.storage import SqlStore


def _wait(run: RunState, ctx: Any) -> StepPlan:
    # No next node: the resume is the run's last step, committed with its completion.
    return StepPlan(
        node_id="wait",
        effect=Effect(EffectType.WAIT_EVENT, {"wait_key": run.vars["key"]}, result_key="event"),
    )


RACE = WorkflowSpec("race", "wait", {"wait": _wait})

BARRIER_TIMEOUT_S = 60.0


async def _barrier(barrier: Path, step: int, name: str, peers: list[str]) -> None:
    (barrier / f"{step}-{name}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while not all((barrier / f"{step}-{peer}").exists() for peer in peers):
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {step}: a peer never came")
        await asyncio.sleep(0.0005)


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": str(exc)}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    name, role = spec["name"], spec["role"]
    results: dict[str, Any] = {}
    async with SqlStore(spec["url"]) as store:
        sr = await create_scheduled_runtime(store=store, workflows=[RACE], auto_start=False)
        await store.check()  # connected and warm before the first round
        await store.list_runs(limit=1)
        for step, runs in enumerate(spec["rounds"]):
            await _barrier(Path(spec["barrier"]), step, name, spec["peers"])
            for run_id, wait_key in runs:
                try:
                    results[run_id] = await _act(sr, role, name, run_id, wait_key)
                except Exception as exc:  # reported: the test decides which errors are clear
                    results[run_id] = _error(exc)
        await sr.stop()
    return {"name": name, "role": role, "results": results}


async def _act(sr: ScheduledRuntime, role: str, name: str, run_id: str, wait_key: str) -> Any:
    if role == "resume":
        state = await sr.resume_event(run_id=run_id, wait_key=wait_key, payload={"by": name})
        return {"ok": state.status.value}
    if role == "emit":
        resumed = {s.run_id: s for s in await sr.emit_event(wait_key, {"by": name})}
        if set(resumed) - {run_id}:
            raise AssertionError(f"emit_event({wait_key!r}) resumed other runs: {set(resumed)}")
        return {"ok": resumed[run_id].status.value} if resumed else {"skipped": True}
    if role == "cancel":
        state = await sr.cancel_run(run_id, reason=f"by {name}")
        return {"ok": state.status.value}
    raise ValueError(f"unknown role {role!r}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
