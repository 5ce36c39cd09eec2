"""The architecture holds: layers are imported one way, and the package loads no SQL driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ("sqlalchemy", "asyncpg", "aiosqlite", "alembic")


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """import-linter with the project's contracts, on the package importable from ``cwd``."""
    lint = Path(sys.executable).parent / "lint-imports"
    config = str(ROOT / "pyproject.toml")
    return subprocess.run(
        [str(lint), "--config", config, "--no-cache"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def test_import_linter_contracts_are_kept() -> None:
    """The contracts in pyproject.toml: core -> nothing outside core and errors; storage -> core;
    scheduler and integrations -> core and storage; the CLI on top; no driver in the core."""
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_core_module_importing_an_outer_layer_breaks_the_contracts(tmp_path: Path) -> None:
    """The check can fail: a copy of the package whose core imports storage is refused."""
    package = tmp_path / "abstractruntime"
    subprocess.run(["cp", "-r", str(ROOT / "src" / "abstractruntime"), str(package)], check=True)
    (package / "core" / "outward.py").write_text("from ..storage import sql\n")
    out = lint_imports(tmp_path, {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "abstractruntime.core.outward -> abstractruntime.storage" in out.stdout


def test_importing_the_package_loads_no_sql_driver() -> None:
    code = (
        "import sys, abstractruntime, abstractruntime.storage, abstractruntime.scheduler\n"
        f"print(' '.join(m for m in {DRIVERS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_making_a_sql_store_loads_the_drivers() -> None:
    """The check above can fail: the drivers do load once a SqlStore is made."""
    code = (
        "import sys\n"
        "from abstractruntime.storage import SqlStore\n"
        "SqlStore('sqlite+aiosqlite://')\n"
        f"print(' '.join(m for m in {DRIVERS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sqlalchemy" in out.stdout.split()


def test_importing_the_package_and_its_cli_loads_no_web_framework() -> None:
    """The [web] extra is optional: only ``abstractruntime.web`` (and ``serve``, when it runs)
    loads Starlette, Jinja2 or uvicorn."""
    web = ("starlette", "jinja2", "uvicorn", "multipart")
    code = (
        "import sys, abstractruntime, abstractruntime.storage, abstractruntime.scheduler\n"
        "import abstractruntime.cli\n"
        f"print(' '.join(m for m in {web!r} if m in sys.modules))\n"
        "import abstractruntime.web\n"
        f"print(' '.join(m for m in {web!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = out.stdout.split("\n")[:2]
    assert before == ""
    assert "starlette" in after.split() and "jinja2" in after.split()
