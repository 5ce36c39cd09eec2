from __future__ import annotations

import subprocess
import sys
import types

import abstractruntime


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(abstractruntime) if not name.startswith("_")}
    modules = {
        "core",
        "errors",
        "storage",
        "cli",
        "app",
        "demo",
        "annotations",
        "scheduler",
        "integrations",
        "provenance",
    }
    # Any other submodule is an attribute once something imported it (the parity tests import
    # the original's module paths): not a public name either, whatever order the tests run in.
    modules |= {n for n in public if isinstance(getattr(abstractruntime, n), types.ModuleType)}
    assert set(abstractruntime.__all__) == public - modules
    assert abstractruntime.__all__ == sorted(abstractruntime.__all__)


def test_importing_the_package_does_not_import_abstractcore() -> None:
    code = (
        "import sys, abstractruntime, abstractruntime.storage; print('abstractcore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
