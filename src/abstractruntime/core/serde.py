"""JSON encoding shared by every store: strict, canonical, and precise when it fails.

Strict means what Postgres JSONB and any other JSON reader accept: no NaN or Infinity, only
str/int/float/bool/None/list/dict. When encoding fails we walk the value once more to name the
offending key path (``vars['order']['items'][2]``), which is only paid on the error path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import SerializationError

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def canonical_json(value: Any) -> str:
    """Deterministic compact JSON (sorted keys): the form that is hashed and stored."""
    return _ENCODER.encode(value)


def encode(value: Any, *, root: str = "value") -> str:
    """Encode ``value`` canonically or raise ``SerializationError`` naming the bad key path."""
    try:
        text = _ENCODER.encode(value)
        # Lone surrogates encode fine but cannot be stored as UTF-8 by any database.
        text.encode("utf-8")
        return text
    except (TypeError, ValueError, RecursionError) as exc:
        path, reason = _find_problem(value, root, 0) or (root, str(exc))
        raise SerializationError(path, reason) from exc


def decode(text: str | bytes) -> Any:
    return json.loads(text)


_MAX_DEPTH = 500


def _find_problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if depth > _MAX_DEPTH:
        return path, f"nested deeper than {_MAX_DEPTH} levels"
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value!r} is not valid JSON")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "string holds a lone surrogate that is not valid UTF-8"
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return path, f"key {key!r} of type {type(key).__name__} is not a string"
            found = _find_problem(item, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    return path, f"object of type {type(value).__name__} is not JSON serialisable"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_utc(value: datetime | str) -> datetime:
    """Parse/normalise a timestamp to an aware UTC datetime (a naive one is taken as UTC)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):  # fromisoformat accepts "Z" only from Python 3.11
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from exc
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or ISO-8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()
