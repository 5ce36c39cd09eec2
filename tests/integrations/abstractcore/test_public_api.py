"""The integration's public names, and the optional extra staying optional."""

from __future__ import annotations

import subprocess
import sys

import abstractruntime.integrations.abstractcore as integration

# The names API.md fixes for this package.
CONTRACT = {
    "AbstractCoreLLMClient",  # the original's protocol (issue #11)
    "RemoteAbstractCoreLLMClient",
    "LocalAbstractCoreLLMClient",
    "MappingToolExecutor",
    "PassthroughToolExecutor",
    "AbstractCoreToolExecutor",
    "create_local_runtime",
    "create_remote_runtime",
    "create_hybrid_runtime",
}
MODULES = {
    "agent",
    "annotations",
    "chat",
    "effect_handlers",
    "errors",
    "factory",
    "llm_client",
    "logging",  # the original's get_logger module; an attribute once anything imports it
    "testing",
    "tool_executor",
}


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(integration) if not name.startswith("_")}
    assert set(integration.__all__) == public - MODULES
    assert integration.__all__ == sorted(integration.__all__)
    assert set(integration.__all__) >= CONTRACT


def test_errors_derive_from_the_package_root() -> None:
    from abstractruntime import AbstractRuntimeError

    for name in integration.__all__:
        obj = getattr(integration, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, AbstractRuntimeError), name


def test_importing_the_integration_does_not_import_abstractcore() -> None:
    code = (
        "import sys, abstractruntime.integrations.abstractcore as i;"
        "import abstractruntime.integrations.abstractcore.agent;"
        "import abstractruntime.integrations.abstractcore.testing;"
        "print('abstractcore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
