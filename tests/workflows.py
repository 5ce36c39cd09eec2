"""Workflows shared by the tests (importable by subprocesses too)."""

from __future__ import annotations

from abstractruntime import Effect, EffectType, RunState, StepPlan, WorkflowSpec
from tests.helpers.state import own_vars


async def _ask(run: RunState, ctx: object) -> StepPlan:
    return StepPlan(
        node_id="ask",
        effect=Effect(
            EffectType.ASK_USER,
            {"prompt": "Approve?", "choices": ["yes", "no"]},
            result_key="answer",
        ),
        next_node="done",
    )


def _done(run: RunState, ctx: object) -> StepPlan:  # a plain def handler
    return StepPlan(node_id="done", complete_output={"answer": run.vars["answer"]})


APPROVAL = WorkflowSpec("approval", "ask", {"ask": _ask, "done": _done})


def counter(steps: int, workflow_id: str = "counter") -> WorkflowSpec:
    """``steps`` nodes that each increment vars['n'], then complete."""

    def make(i: int):  # type: ignore[no-untyped-def]
        async def node(run: RunState, ctx: object) -> StepPlan:
            run.vars["n"] = run.vars.get("n", 0) + 1
            run.vars.setdefault("seen", []).append(i)
            if i + 1 < steps:
                return StepPlan(node_id=f"n{i}", next_node=f"n{i + 1}")
            return StepPlan(node_id=f"n{i}", complete_output={"n": run.vars["n"]})

        return node

    return WorkflowSpec(workflow_id, "n0", {f"n{i}": make(i) for i in range(steps)})


def slow_counter(steps: int, delay_s: float) -> WorkflowSpec:
    """Like ``counter`` but every node takes ``delay_s``: leaves time to kill the process."""
    import asyncio

    def make(i: int):  # type: ignore[no-untyped-def]
        async def node(run: RunState, ctx: object) -> StepPlan:
            await asyncio.sleep(delay_s)
            run.vars.setdefault("seen", []).append(i)
            if i + 1 < steps:
                return StepPlan(node_id=f"n{i}", next_node=f"n{i + 1}")
            return StepPlan(node_id=f"n{i}", complete_output={"seen": run.vars["seen"]})

        return node

    return WorkflowSpec("slow_counter", "n0", {f"n{i}": make(i) for i in range(steps)})


def timer(delay_s: float, workflow_id: str = "timer") -> WorkflowSpec:
    """Waits ``delay_s`` after its start (wait_until), then completes with the wake-up payload."""
    from datetime import timedelta

    def sleep(run: RunState, ctx: object) -> StepPlan:
        until = ctx.now() + timedelta(seconds=delay_s)  # type: ignore[attr-defined]
        return StepPlan(
            node_id="sleep",
            effect=Effect(EffectType.WAIT_UNTIL, {"until": until.isoformat()}, result_key="woke"),
            next_node="done",
        )

    return WorkflowSpec(
        workflow_id,
        "sleep",
        {
            "sleep": sleep,
            "done": lambda run, ctx: StepPlan(node_id="done", complete_output=own_vars(run)),
        },
    )


def waiter(key: str = "evt:go", workflow_id: str = "waiter") -> WorkflowSpec:
    """Waits for the event ``key``; completes with the payload."""
    return WorkflowSpec(
        workflow_id,
        "wait",
        {
            "wait": lambda run, ctx: StepPlan(
                node_id="wait",
                effect=Effect(EffectType.WAIT_EVENT, {"wait_key": key}, result_key="event"),
                next_node="done",
            ),
            "done": lambda run, ctx: StepPlan(node_id="done", complete_output=own_vars(run)),
        },
    )


def parent_of(
    child_id: str, *, run_async: bool = False, workflow_id: str = "parent"
) -> WorkflowSpec:
    """Starts ``child_id`` as a subworkflow, then completes with what it got back."""
    return WorkflowSpec(
        workflow_id,
        "call",
        {
            "call": lambda run, ctx: StepPlan(
                node_id="call",
                effect=Effect(
                    EffectType.START_SUBWORKFLOW,
                    {"workflow_id": child_id, "vars": {"x": 1}, "async": run_async},
                    result_key="child",
                ),
                next_node="done",
            ),
            "done": lambda run, ctx: StepPlan(node_id="done", complete_output=own_vars(run)),
        },
    )


def llm_agent_step(workflow_id: str = "llm_step") -> WorkflowSpec:
    """One ``llm_call`` effect (performed by whatever handler the test passes), then done.

    The node counts its executions in ``vars['planned']``: a failed attempt must not keep it.
    """

    def call(run: RunState, ctx: object) -> StepPlan:
        run.vars["planned"] = run.vars.get("planned", 0) + 1
        return StepPlan(
            node_id="call",
            effect=Effect(EffectType.LLM_CALL, {"prompt": "hi"}, result_key="answer"),
            next_node="done",
        )

    return WorkflowSpec(
        workflow_id,
        "call",
        {
            "call": call,
            "done": lambda run, ctx: StepPlan(node_id="done", complete_output=own_vars(run)),
        },
    )
