"""``load_app("module:attr")`` (``--app``): the forms an app may take, and the errors for the
others."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from abstractruntime import EffectType, RetryPolicy, WorkflowRegistry
from abstractruntime.app import load_app
from abstractruntime.errors import AppLoadError, InvalidArgumentError
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
        ("approval", "is a str, not a WorkflowRegistry"),
        ([APPROVAL, "x"], "expected a WorkflowSpec, got str"),
        ([counter(2), counter(3)], "'counter' version '1' is already registered"),
        ({"workflows": [APPROVAL], "effect_handlers": [handler]}, "effect_handlers is a list"),
        ({"workflows": [APPROVAL], "effect_handlers": {"llm": handler}}, "'llm', which is not"),
        ({"workflows": [APPROVAL], "effect_handlers": {"llm_call": 1}}, "is not callable"),
        ({"workflows": [APPROVAL], "effect_policy": object()}, "lacks the methods"),
    ],
)
async def test_other_values_are_one_clear_error(
    module: types.ModuleType, value: Any, message: str
) -> None:
    module.bad = value
    with pytest.raises(AppLoadError, match=message):
        await load_app("fake_app_module:bad")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fake_app_module:missing", "has no 'missing'"),
        ("fake_app_module", "expected MODULE:ATTR"),
        (":registry", "expected MODULE:ATTR"),
        ("no_such_module_here:registry", "cannot import 'no_such_module_here'"),
    ],
)
async def test_a_spec_that_names_nothing_is_one_clear_error(
    module: types.ModuleType, spec: str, message: str
) -> None:
    with pytest.raises(AppLoadError, match=message) as raised:
        await load_app(spec)
    assert isinstance(raised.value, InvalidArgumentError)  # a caller's mistake, of our tree


async def test_a_string_key_names_its_effect_type(module: types.ModuleType) -> None:
    module.app = {"workflows": [APPROVAL], "effect_handlers": {"llm_call": handler}}
    app = await load_app("fake_app_module:app")
    assert app.effect_handlers == {EffectType.LLM_CALL: handler}


def test_the_app_layer_does_not_import_the_command_line() -> None:
    code = "import sys, abstractruntime.app; print('abstractruntime.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
