"""The workflows the web tests serve (``abstractruntime serve --app tests.web.app:registry``)."""

from __future__ import annotations

from abstractruntime import Effect, EffectType, RunState, StepPlan, WorkflowRegistry, WorkflowSpec
from tests.workflows import APPROVAL, counter, parent_of, waiter

#: What an attacker would put in a prompt and in vars: it must show as text.
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def _ask(node: str, prompt: str, next_node: str, *, free_text: bool = True) -> object:
    def handler(run: RunState, ctx: object) -> StepPlan:
        return StepPlan(
            node_id=node,
            effect=Effect(
                EffectType.ASK_USER,
                {
                    "prompt": prompt.format(**run.vars),
                    "choices": ["yes", "no"],
                    "allow_free_text": free_text,
                },
                result_key=node,
            ),
            next_node=next_node,
        )

    return handler


TWO_ASKS = WorkflowSpec(
    "two_asks",
    "first",
    {
        "first": _ask("first", "First question for {who}?", "second"),
        "second": _ask("second", "Second question?", "done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"ok": True}),
    },
)

PROBE = WorkflowSpec(
    "probe",
    "ask",
    {
        "ask": _ask("ask", XSS + " {note}", "done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"ok": True}),
    },
)


STRICT = WorkflowSpec(
    "strict",
    "ask",
    {
        "ask": _ask("ask", "Yes or no only?", "done", free_text=False),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output=dict(run.vars["ask"])),
    },
)


def registry() -> WorkflowRegistry:
    return WorkflowRegistry(
        [
            APPROVAL,
            TWO_ASKS,
            PROBE,
            STRICT,
            counter(2),
            waiter(),
            parent_of("waiter"),
            waiter_child(),
        ]
    )


def waiter_child() -> WorkflowSpec:
    """A parent whose child waits: cancelling with ``tree=1`` cancels both."""
    return parent_of("waiter", run_async=False, workflow_id="tree")
