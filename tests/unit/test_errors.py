"""Every mistake a caller can make raises an error of the project's tree, checked before any
I/O, and stays the builtin exception code written for the original catches."""

from __future__ import annotations

from typing import Any

import pytest

from abstractruntime import (
    AbstractRuntimeError,
    ActorFingerprint,
    InvalidArgumentError,
    InvalidTypeError,
    RetryPolicy,
    RunState,
    Snapshot,
    WorkflowNotFoundError,
    WorkflowRegistry,
    WorkflowSpec,
    WorkflowVersionNotFoundError,
    errors,
)
from abstractruntime.core.serde import to_utc


def _flow(version: str = "1") -> WorkflowSpec:
    return WorkflowSpec("flow", "a", {"a": lambda run, ctx: None}, version=version)


@pytest.mark.parametrize(
    ("call", "error", "builtin", "message"),
    [
        (
            lambda: WorkflowRegistry([_flow(), _flow()]),
            InvalidArgumentError,
            ValueError,
            "already registered",
        ),
        (lambda: WorkflowRegistry(["x"]), InvalidTypeError, TypeError, "expected a WorkflowSpec"),
        (
            lambda: WorkflowRegistry().get_or_raise("nope"),
            WorkflowNotFoundError,
            KeyError,
            "'nope' is not registered",
        ),
        (
            lambda: WorkflowRegistry([_flow()]).get_or_raise("flow", "9"),
            WorkflowVersionNotFoundError,
            KeyError,
            "no version '9'",
        ),
        (
            lambda: WorkflowRegistry().unregister("nope"),
            WorkflowNotFoundError,
            KeyError,
            "'nope' is not registered",
        ),
        (
            lambda: ActorFingerprint(actor_id="", kind="agent"),
            InvalidArgumentError,
            ValueError,
            "actor_id",
        ),
        (
            lambda: RetryPolicy(llm_max_attempts=0),
            InvalidArgumentError,
            ValueError,
            "at least 1",
        ),
        (lambda: to_utc(42), InvalidTypeError, TypeError, "datetime or ISO-8601"),
        (lambda: to_utc("yesterday"), InvalidArgumentError, ValueError, "not an ISO-8601"),
        (
            lambda: Snapshot.from_run(run=RunState.new(workflow_id="w", entry_node="a"), name=""),
            InvalidArgumentError,
            ValueError,
            "non-empty name",
        ),
    ],
)
def test_a_callers_mistake_is_an_error_of_the_tree(
    call: Any, error: type[Exception], builtin: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, AbstractRuntimeError) and isinstance(info.value, builtin)


def test_the_tree_in_the_docstring_names_every_error() -> None:
    doc = errors.__doc__ or ""
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, AbstractRuntimeError):
            assert name in doc, f"{name} is not drawn in errors.py's tree"
