"""The app of the version tests: two deploys of one workflow, ``old`` (version 1) and ``new``
(version 2), as a rolling deploy runs them side by side.

``deploy``: three steps around a short timer; each step appends the version of the code that
ran it to ``vars['driven_by']``, so a run's output tells which code drove each of its steps.
``approval`` waits for an answer (for ``runs migrate``); version 2 renamed its nodes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from abstractruntime import Effect, EffectType, RunState, StepPlan, WorkflowRegistry, WorkflowSpec

WAIT_S = 0.3
STEPS = 3


def deploy(version: str) -> WorkflowSpec:
    def node(i: int) -> Any:
        def step(run: RunState, ctx: Any) -> StepPlan:
            if i == 1 and "woke" not in run.vars:
                until = ctx.now() + timedelta(seconds=WAIT_S)
                effect = Effect(EffectType.WAIT_UNTIL, {"until": until.isoformat()}, "woke")
                return StepPlan(node_id="n1", effect=effect, next_node="n1")
            run.vars.setdefault("driven_by", []).append(version)
            if i + 1 < STEPS:
                return StepPlan(node_id=f"n{i}", next_node=f"n{i + 1}")
            return StepPlan(node_id=f"n{i}", complete_output={"driven_by": run.vars["driven_by"]})

        return step

    return WorkflowSpec("deploy", "n0", {f"n{i}": node(i) for i in range(STEPS)}, version=version)


def approval(version: str, review: str, done: str) -> WorkflowSpec:
    def ask(run: RunState, ctx: Any) -> StepPlan:
        effect = Effect(EffectType.ASK_USER, {"prompt": "ok?"}, result_key="answer")
        return StepPlan(node_id=review, effect=effect, next_node=done)

    def end(run: RunState, ctx: Any) -> StepPlan:
        output = {
            "version": version,
            "answer": run.vars.get("answer"),
            "tier": run.vars.get("tier"),
        }
        return StepPlan(node_id=done, complete_output=output)

    return WorkflowSpec("approval", review, {review: ask, done: end}, version=version)


DEPLOY_V1, DEPLOY_V2 = deploy("1"), deploy("2")
APPROVAL_V1, APPROVAL_V2 = approval("1", "review", "done"), approval("2", "approve", "finish")
old = WorkflowRegistry([DEPLOY_V1, APPROVAL_V1])
new = WorkflowRegistry([DEPLOY_V2, APPROVAL_V2])


def add_tier(vars: dict[str, Any]) -> dict[str, Any]:
    """The ``--vars-fn`` of the migration test."""
    return {**vars, "tier": "gold"}
