"""Workflows of the parity fixture, importable by the original 0.2 *and* by us.

``make_fixture.py`` runs them under the original package (sync runtime) to write a directory;
the tests resume those runs here with the same specs (plain ``def`` handlers work on both).
Only names both versions share are used: ``Effect``, ``EffectType``, ``StepPlan``,
``WorkflowSpec(workflow_id, entry_node, nodes)``.
"""

from __future__ import annotations

from typing import Any

from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec


def _done(key: str) -> Any:
    def done(run: Any, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={key: run.vars.get(key)})

    return done


def ask() -> WorkflowSpec:
    def node(run: Any, ctx: Any) -> StepPlan:
        effect = Effect(
            type=EffectType.ASK_USER,
            payload={"prompt": "Approve the order?", "choices": ["yes", "no"]},
            result_key="answer",
        )
        return StepPlan(node_id="ask", effect=effect, next_node="done")

    return WorkflowSpec(
        workflow_id="fx_ask", entry_node="ask", nodes={"ask": node, "done": _done("answer")}
    )


def event() -> WorkflowSpec:
    def node(run: Any, ctx: Any) -> StepPlan:
        effect = Effect(
            type=EffectType.WAIT_EVENT, payload={"wait_key": "evt:fixture"}, result_key="event"
        )
        return StepPlan(node_id="wait", effect=effect, next_node="done")

    return WorkflowSpec(
        workflow_id="fx_event", entry_node="wait", nodes={"wait": node, "done": _done("event")}
    )


def timer() -> WorkflowSpec:
    def node(run: Any, ctx: Any) -> StepPlan:
        effect = Effect(
            type=EffectType.WAIT_UNTIL, payload={"until": run.vars["until"]}, result_key="timer"
        )
        return StepPlan(node_id="wait", effect=effect, next_node="done")

    return WorkflowSpec(
        workflow_id="fx_timer", entry_node="wait", nodes={"wait": node, "done": _done("timer")}
    )


def count() -> WorkflowSpec:
    def a(run: Any, ctx: Any) -> StepPlan:
        run.vars["n"] = 1
        return StepPlan(node_id="a", next_node="b")

    def b(run: Any, ctx: Any) -> StepPlan:
        return StepPlan(node_id="b", complete_output={"n": run.vars["n"] + 1, "text": "héllo ✓"})

    return WorkflowSpec(workflow_id="fx_count", entry_node="a", nodes={"a": a, "b": b})


def parent() -> WorkflowSpec:
    def node(run: Any, ctx: Any) -> StepPlan:
        effect = Effect(
            type=EffectType.START_SUBWORKFLOW, payload={"workflow_id": "fx_ask"}, result_key="child"
        )
        return StepPlan(node_id="start", effect=effect, next_node="done")

    return WorkflowSpec(
        workflow_id="fx_parent", entry_node="start", nodes={"start": node, "done": _done("child")}
    )


def all_workflows() -> list[WorkflowSpec]:
    return [ask(), event(), timer(), count(), parent()]
