"""``--app MODULE:ATTR``: the forms a worker's app may take, and the errors for the others."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from abstractruntime import EffectType, RetryPolicy, WorkflowRegistry
from abstractruntime.cli import CliError, load_app
from tests.workflows import APPROVAL, counter


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    mod = types.ModuleType("fake_app_module")
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def handler(run: Any, effect: Any, next_node: Any) -> Any:
    raise AssertionError("not called")


async def test_a_registry_a_list_a_spec_or_a_function_returning_one(
    module: types.ModuleType,
) -> None:
    module.registry = WorkflowRegistry([APPROVAL])
    module.flows = [APPROVAL, counter(2)]
    module.one = APPROVAL
    module.make = lambda: [APPROVAL]
    for attr, ids in [
        ("registry", ["approval"]),
        ("flows", ["approval", "counter"]),
        ("one", ["approval"]),
        ("make", ["approval"]),
    ]:
        app = await load_app(f"fake_app_module:{attr}")
        assert app.workflows.ids() == ids
        assert app.runtime_kwargs() == {
            "effect_handlers": {},
            "effect_policy": None,
            "context": None,
        }


async def test_a_dict_brings_effect_handlers_a_policy_and_a_context(
    module: types.ModuleType,
) -> None:
    policy = RetryPolicy()

    async def build() -> dict[str, Any]:  # an async factory may open clients first
        return {
            "workflows": [APPROVAL],
            "effect_handlers": {EffectType.LLM_CALL: handler},
            "effect_policy": policy,
            "context": {"tenant": "t1"},
        }

    module.build = build
    app = await load_app("fake_app_module:build")
    assert app.workflows.ids() == ["approval"]
    assert app.runtime_kwargs() == {
        "effect_handlers": {EffectType.LLM_CALL: handler},
        "effect_policy": policy,
        "context": {"tenant": "t1"},
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"effect_handlers": {}}, "a dict app needs 'workflows'"),
        ({"workflows": [APPROVAL], "handlers": {}}, "got \\['handlers', 'workflows'\\]"),
        (42, "is a int, not a WorkflowRegistry"),
    ],
)
async def test_other_values_are_one_clear_error(
    module: types.ModuleType, value: Any, message: str
) -> None:
    module.bad = value
    with pytest.raises(CliError, match=message):
        await load_app("fake_app_module:bad")
    with pytest.raises(CliError, match="has no 'missing'"):
        await load_app("fake_app_module:missing")
