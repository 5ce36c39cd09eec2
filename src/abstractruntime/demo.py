"""The README demo: an expense approval that waits for a human across process restarts."""

from __future__ import annotations

from typing import Any

from .core.models import Effect, EffectType, RunState, StepPlan
from .core.spec import WorkflowSpec

WORKFLOW_ID = "demo.expense_approval"


def _submit(run: RunState, ctx: Any) -> StepPlan:
    run.vars["submitted_by"] = run.vars.get("employee", "ada")
    return StepPlan(node_id="submit", next_node="approve")


def _approve(run: RunState, ctx: Any) -> StepPlan:
    amount = run.vars.get("amount", 420)
    return StepPlan(
        node_id="approve",
        effect=Effect(
            EffectType.ASK_USER,
            {
                "prompt": f"Approve the expense of ${amount} by {run.vars['submitted_by']}?",
                "choices": ["yes", "no"],
            },
            result_key="decision",
        ),
        next_node="decide",
    )


def _decide(run: RunState, ctx: Any) -> StepPlan:
    answer = str(run.vars.get("decision", {}).get("answer", "")).strip().lower()
    approved = answer in ("yes", "y", "approve", "approved")
    return StepPlan(
        node_id="decide",
        complete_output={"approved": approved, "amount": run.vars.get("amount", 420)},
    )


DEMO_WORKFLOW = WorkflowSpec(
    WORKFLOW_ID, "submit", {"submit": _submit, "approve": _approve, "decide": _decide}
)
