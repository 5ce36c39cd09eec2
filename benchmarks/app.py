"""Workflows the benchmarks run, importable by worker processes (``--app benchmarks.app:...``)."""

from __future__ import annotations

import time
from typing import Any

from abstractruntime import RunState, StepPlan, WorkflowRegistry, WorkflowSpec

STEPS = 10

#: run_id -> perf_counter() when its first node ran (same-process latency measurements).
FIRST_STEP_AT: dict[str, float] = {}


def _node(i: int) -> Any:
    def node(run: RunState, ctx: Any) -> StepPlan:
        if i == 0:
            FIRST_STEP_AT.setdefault(run.run_id, time.perf_counter())
        run.vars["n"] = run.vars.get("n", 0) + 1
        if i + 1 < STEPS:
            return StepPlan(node_id=f"n{i}", next_node=f"n{i + 1}")
        return StepPlan(node_id=f"n{i}", complete_output={"n": run.vars["n"]})

    return node


CHAIN = WorkflowSpec("bench_chain", "n0", {f"n{i}": _node(i) for i in range(STEPS)})
registry = WorkflowRegistry([CHAIN])
