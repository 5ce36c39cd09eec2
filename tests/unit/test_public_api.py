from __future__ import annotations

import subprocess
import sys
import types

import abstractruntime


def test_all_lists_exactly_the_public_names() -> None:
    # Submodules become attributes once anything imports them; they are not names of __all__.
    public = {
        name
        for name, value in vars(abstractruntime).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(abstractruntime.__all__) == public - {"annotations"}
    assert abstractruntime.__all__ == sorted(abstractruntime.__all__)


def test_importing_the_package_does_not_import_abstractcore() -> None:
    code = (
        "import sys, abstractruntime, abstractruntime.storage; print('abstractcore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
