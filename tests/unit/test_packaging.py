"""The wheel holds every package of the source tree (pyproject lists them by hand)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_for_the_wheel() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    src = ROOT / "src"
    found = {
        ".".join(init.parent.relative_to(src).parts)
        for init in (src / "abstractruntime").rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages"
