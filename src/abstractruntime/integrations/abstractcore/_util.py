"""Helpers shared by the integration's modules: lazy ``abstractcore`` imports, JSON-safe values."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .errors import AbstractCoreNotInstalledError


def abstractcore_available() -> bool:
    """Whether ``abstractcore`` can be imported, without importing it (a cheap spec lookup)."""
    if "abstractcore" in sys.modules:  # also true for a module a test put there
        return sys.modules["abstractcore"] is not None
    try:
        return importlib.util.find_spec("abstractcore") is not None
    except (ImportError, ValueError):
        return False


def require_abstractcore(feature: str) -> None:
    """Raise ``AbstractCoreNotInstalledError`` naming ``feature`` unless abstractcore is there."""
    if not abstractcore_available():
        raise AbstractCoreNotInstalledError(feature)


def import_abstractcore(module: str, feature: str) -> ModuleType:
    """Import ``module`` (``abstractcore`` or one of its submodules); call it in a worker thread,
    since importing a large package reads many files."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "abstractcore":
            raise AbstractCoreNotInstalledError(feature) from exc
        raise


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, so that it can be stored in a run's ``vars`` and ledger.

    Dataclasses and pydantic models become dicts, tuples and sets lists, and anything else
    (including NaN and infinities, which JSON cannot hold) its ``str``.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    for method in ("model_dump", "dict"):  # pydantic v2, then v1
        dump = getattr(value, method, None)
        if callable(dump):
            try:
                return jsonable(dump())
            except Exception:  # not a pydantic model after all: fall back to str
                break
    return str(value)


def excerpt(text: str | bytes, limit: int = 300) -> str:
    """The start of ``text`` on one line, cut at ``limit`` characters (for error messages)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[:limit]}... ({len(flat)} characters)"


def compact_json(value: Any) -> str:
    """Compact JSON (no spaces) in ASCII: safe as an HTTP header value, which must be ASCII
    (non-ASCII characters become ``\\uXXXX`` escapes, which any JSON parser reads back)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
