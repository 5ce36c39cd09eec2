"""JSON encoding shared by every store: strict, canonical, and precise when it fails.

Strict means what Postgres JSONB and any other JSON reader accept: no NaN or Infinity, only
str/int/float/bool/None/list/dict. When encoding fails we walk the value once more to name the
offending key path (``vars['order']['items'][2]``), which is only paid on the error path.

Deep nesting: the C encoder and decoder recurse once per level within Python's recursion limit,
which they share with the caller's stack, so a value that encodes in a shallow call could fail to
decode in a deep one (and a stored run would become unreadable). Both therefore retry a
``RecursionError`` on a fresh thread (a fresh stack), and ``encode`` only hands out text that a
fresh stack can read back: about 990 levels with the default limit of 1000, whoever asks.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..errors import InvalidArgumentError, InvalidTypeError, SerializationError

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)

T = TypeVar("T")


def canonical_json(value: Any) -> str:
    """Deterministic compact JSON (sorted keys): the form that is hashed and stored."""
    try:
        return _ENCODER.encode(value)
    except RecursionError:
        return _on_fresh_stack(_ENCODER.encode, value)


def encode(value: Any, *, root: str = "value") -> str:
    """Encode ``value`` canonically or raise ``SerializationError`` naming the bad key path."""
    try:
        try:
            text = _ENCODER.encode(value)
        except RecursionError:
            # Deep, or called deep in the stack: retry on a fresh stack, and keep only what a
            # fresh stack can read back, as ``decode`` will.
            text = _on_fresh_stack(_ENCODER.encode, value)
            _on_fresh_stack(json.loads, text)
        # Lone surrogates encode fine but cannot be stored as UTF-8 by any database.
        text.encode("utf-8")
        return text
    except (TypeError, ValueError, RecursionError) as exc:
        path, reason = _find_problem(value, root, deep=isinstance(exc, RecursionError)) or (
            root,
            str(exc),
        )
        raise SerializationError(path, reason) from exc


def decode(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # text ``encode`` made always decodes on a fresh stack
        return _on_fresh_stack(json.loads, text)


def _on_fresh_stack(fn: Callable[[Any], T], arg: Any) -> T:
    """``fn(arg)`` on a new thread, whose stack is empty: the rare path of deep values."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn(arg)))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="abstractruntime-deep-json")
    thread.start()
    thread.join()
    ok, result = outcome[0]
    if not ok:
        raise result
    return result  # type: ignore[no-any-return]


# -- naming the problem (error path only) -------------------------------------------------------

#: Path segments shown in full around the cut of a very deep path.
_PATH_HEAD = 6
_PATH_TAIL = 2
_KEY_SHOWN = 40
#: Bits of an int that Python may refuse to print (``sys.get_int_max_str_digits``).
_BITS_PER_DIGIT = math.log2(10)


class _Node:
    """A link of the path from the root to a value (built lazily, only for the culprit)."""

    __slots__ = ("parent", "segment")

    def __init__(self, parent: _Node | None, segment: str) -> None:
        self.parent = parent
        self.segment = segment


def _render(root: str, node: _Node | None) -> str:
    segments: list[str] = []
    while node is not None:
        segments.append(node.segment)
        node = node.parent
    segments.reverse()
    if len(segments) > _PATH_HEAD + _PATH_TAIL + 1:
        cut = len(segments) - _PATH_HEAD - _PATH_TAIL
        segments = [*segments[:_PATH_HEAD], f"...({cut} levels)...", *segments[-_PATH_TAIL:]]
    return root + "".join(segments)


def _segment(key: Any) -> str:
    if isinstance(key, str) and len(key) > _KEY_SHOWN:
        return f"[{key[:_KEY_SHOWN]!r}...]"
    return f"[{key!r}]"


def _int_problem(value: int) -> str | None:
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if not limit or value.bit_length() < limit * _BITS_PER_DIGIT - 4:
        return None
    try:
        str(value)
    except ValueError:
        digits = int(abs(value).bit_length() / _BITS_PER_DIGIT)
        return (
            f"an integer of about {digits} digits is over Python's limit of {limit} digits "
            "for JSON numbers (sys.set_int_max_str_digits); store it as a string"
        )
    return None


def _str_problem(value: str, what: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} holds a lone surrogate that is not valid UTF-8"
    return None


def _key_problem(value: dict[Any, Any]) -> tuple[_Node | None, str] | None:
    """A key JSON cannot hold (the node is relative: None is the dict itself)."""
    for key in value:
        if isinstance(key, str):
            problem = _str_problem(key, "key")
            if problem:
                return _Node(None, _segment(key)), problem
        elif isinstance(key, float) and not math.isfinite(key):
            return None, f"key {key!r} is not valid JSON"
        elif not isinstance(key, (int, float, bool)) and key is not None:
            return None, f"key {key!r} of type {type(key).__name__} is not a string"
    if len(value) > 1:
        try:
            sorted(value)
        except TypeError:
            kinds = sorted({type(key).__name__ for key in value})
            return None, (
                f"its keys mix types ({', '.join(kinds)}) that cannot be sorted; JSON object "
                "keys are strings"
            )
    return None


def _find_problem(value: Any, root: str, *, deep: bool = False) -> tuple[str, str] | None:
    """The path of the first value JSON cannot hold and why; with ``deep`` (the encoder ran out
    of stack) and nothing else wrong, the deepest path. Iterative: the value may be deep."""
    exit_marker = object()
    stack: list[tuple[Any, _Node | None, int]] = [(value, None, 0)]
    on_path: set[int] = set()
    deepest: tuple[int, _Node | None] = (0, None)
    while stack:
        item, node, depth = stack.pop()
        if item is exit_marker:
            on_path.discard(depth)  # for an exit marker, ``depth`` holds the container's id
            continue
        if depth > deepest[0]:
            deepest = (depth, node)
        problem: str | None = None
        if item is None or isinstance(item, (bool, str, float, int)):
            if isinstance(item, str):
                problem = _str_problem(item, "string")
            elif isinstance(item, float):
                problem = None if math.isfinite(item) else f"{item!r} is not valid JSON"
            elif isinstance(item, int) and not isinstance(item, bool):
                problem = _int_problem(item)
            if problem:
                return _render(root, node), problem
            continue
        if not isinstance(item, (dict, list, tuple)):
            return _render(root, node), (
                f"object of type {type(item).__name__} is not JSON serialisable"
            )
        if id(item) in on_path:
            return _render(root, node), "it contains itself (a circular reference)"
        if isinstance(item, dict):
            found = _key_problem(item)
            if found:
                relative, why = found
                if relative is not None:
                    relative.parent = node
                    node_of_key: _Node | None = relative
                else:
                    node_of_key = node
                return _render(root, node_of_key), why
            children = [(child, _segment(key)) for key, child in item.items()]
        else:
            children = [(child, f"[{index}]") for index, child in enumerate(item)]
        on_path.add(id(item))
        stack.append((exit_marker, None, id(item)))
        for child, segment in reversed(children):
            stack.append((child, _Node(node, segment), depth + 1))
    if deep:
        depth, node = deepest
        return _render(root, node), (
            f"nested {depth} levels deep, more than JSON can be encoded and read back within "
            f"Python's recursion limit ({sys.getrecursionlimit()})"
        )
    return None


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
            raise InvalidArgumentError(f"{value!r} is not an ISO-8601 timestamp") from exc
    if not isinstance(value, datetime):
        raise InvalidTypeError(
            f"expected a datetime or ISO-8601 string, got {type(value).__name__}"
        )
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()
