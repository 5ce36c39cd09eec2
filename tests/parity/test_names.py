"""Every name of the original AbstractRuntime 0.2.0's public API exists here (issue #11).

``original_api.json`` (written by ``dump_original_api.py`` from the installed original) lists the
original's modules, their ``__all__`` and public top-level names, each public class with its
fields, enum members, methods and properties, and each function's parameters. This test imports
each module *by the original's path* (a name may live elsewhere here, but the original's import
must keep working) and checks that:

- the module imports and has every name of its ``__all__`` and every public name it defined;
- each class has the original's dataclass fields (as attributes), enum members (same values),
  properties, methods, classmethods and staticmethods (callable the same way: a classmethod must
  stay callable on the class, a property must not become a method);
- each function, method and constructor accepts the original's calls: every original parameter
  exists with the same name, a positional one at the same position, a keyword-only one by
  keyword, an optional one stays optional with the same literal default; parameters we add must
  be optional. A superset is fine, and a coroutine where the original was sync is fine (the
  port adds ``await``).

Nothing is missing: the test fails on any name or signature of the original that is not here,
except the differences kept on purpose (``DIFFERENT_ON_PURPOSE``, each with its reason).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

API_FILE = Path(__file__).with_name("original_api.json")

# Public by name in the original but not API: excluded from the comparison, with the reason.
NOT_API: dict[str, str] = {
    # One-line timestamp helpers (``datetime.now(timezone.utc)``, ``utc_now_iso`` its
    # ``.isoformat()`` copied into four modules) serving as dataclass default factories and
    # "now" inside the module; in no ``__all__`` nor in the docs, and the original's own tests
    # define their own ``utc_now_iso`` rather than import one.
    "abstractruntime.core.models.utc_now": "module-local timestamp helper",
    "abstractruntime.core.runtime.utc_now_iso": "module-local timestamp helper",
    "abstractruntime.scheduler.scheduler.utc_now_iso": "module-local timestamp helper",
    "abstractruntime.storage.artifacts.utc_now_iso": "module-local timestamp helper",
    "abstractruntime.storage.snapshots.utc_now_iso": "module-local timestamp helper",
}

# Differences kept on purpose, each with its reason (README, "Coming from AbstractRuntime 0.2").
DIFFERENT_ON_PURPOSE: dict[str, str] = {
    **{
        f"abstractruntime.{where}: default of 'max_steps' is None (original: 100)": (
            "None means RuntimeConfig.max_steps, whose default is the original's 100"
        )
        for where in (
            "core.runtime.Runtime.tick",
            "scheduler.convenience.ScheduledRuntime.run",
            "scheduler.convenience.ScheduledRuntime.tick",
        )
    },
}

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OrigParam:
    name: str
    kind: inspect._ParameterKind
    default: str | None  # repr of the default; None when required


def parse_tokens(tokens: list[str]) -> list[OrigParam]:
    """The dump's signature tokens (``a``, ``b=1``, ``/``, ``*``, ``*args``, ``**kw``) as params."""
    params: list[OrigParam] = []
    if "/" in tokens:
        kind = inspect.Parameter.POSITIONAL_ONLY
    else:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for tok in tokens:
        if tok == "/":
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        elif tok == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
        elif tok.startswith("**"):
            params.append(OrigParam(tok[2:], inspect.Parameter.VAR_KEYWORD, None))
        elif tok.startswith("*"):
            params.append(OrigParam(tok[1:], inspect.Parameter.VAR_POSITIONAL, None))
            kind = inspect.Parameter.KEYWORD_ONLY
        else:
            name, eq, default = tok.partition("=")
            params.append(OrigParam(name, kind, default if eq else None))
    return params


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False, None


def signature_problems(tokens: list[str], sig: inspect.Signature) -> list[str]:
    """How a call written for the original signature (``tokens``) could fail against ``sig``."""
    problems: list[str] = []
    ours = list(sig.parameters.values())
    by_name = {p.name: p for p in ours}
    our_positional = [p for p in ours if p.kind in _POSITIONAL]
    kinds = {p.kind for p in ours}
    original = parse_tokens(tokens)
    orig_positional = [p for p in original if p.kind in _POSITIONAL]
    for op in original:
        if op.kind is inspect.Parameter.VAR_POSITIONAL:
            if inspect.Parameter.VAR_POSITIONAL not in kinds:
                problems.append(f"no *{op.name}")
            continue
        if op.kind is inspect.Parameter.VAR_KEYWORD:
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                problems.append(f"no **{op.name}")
            continue
        ours_p = by_name.get(op.name)
        if op.kind is inspect.Parameter.POSITIONAL_ONLY:
            index = orig_positional.index(op)
            if index >= len(our_positional):
                problems.append(f"parameter {op.name!r} missing (position {index + 1})")
                continue
            ours_p = our_positional[index]
        elif ours_p is None:
            problems.append(f"parameter {op.name!r} missing")
            continue
        elif op.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            index = orig_positional.index(op)
            if ours_p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD or (
                our_positional.index(ours_p) != index
            ):
                problems.append(f"parameter {op.name!r} not at position {index + 1}")
        elif ours_p.kind not in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            problems.append(f"parameter {op.name!r} cannot be passed by keyword")
        if op.default is not None:
            if ours_p.default is _EMPTY:
                problems.append(f"parameter {op.name!r} is required (original: optional)")
                continue
            is_literal, orig_value = _literal(op.default)
            if is_literal:
                ok, our_value = _literal(repr(ours_p.default))
                if not ok or our_value != orig_value or type(our_value) is not type(orig_value):
                    problems.append(
                        f"default of {op.name!r} is {ours_p.default!r} (original: {op.default})"
                    )
    original_names = {op.name for op in original}
    for p in ours:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name not in original_names and p.default is _EMPTY:
            problems.append(f"extra required parameter {p.name!r}")
    return problems


def callable_signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------


def _static(cls: type, name: str) -> tuple[bool, Any]:
    for klass in cls.__mro__:
        if name in vars(klass):
            return True, vars(klass)[name]
    return False, None


def _has_attribute(cls: type, name: str) -> bool:
    """Instances of ``cls`` have attribute ``name`` (field, annotation, slot, property, ...)."""
    if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
        return True
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}) or name in getattr(klass, "__slots__", ()):
            return True
    found, _ = _static(cls, name)
    return found


def member_problems(where: str, cls: type, name: str, spec: dict[str, Any]) -> list[str]:
    kind = spec["kind"]
    if name == "__init__":
        sig = callable_signature(cls)
        if sig is None:
            return [f"{where}: no inspectable constructor"]
        return [f"{where}: {p}" for p in signature_problems(spec["params"], sig)]
    found, raw = _static(cls, name)
    if not found:
        if kind in ("property", "attribute") and _has_attribute(cls, name):
            return []
        return [f"{where}: missing"]
    if kind in ("property", "attribute"):
        if inspect.isfunction(raw) or isinstance(raw, (classmethod, staticmethod)):
            return [f"{where}: a method here, a {kind} in the original"]
        return []
    if isinstance(raw, property):
        return [f"{where}: a property here, a {kind} in the original"]
    if isinstance(raw, classmethod):
        func, drop_first = raw.__func__, True
    elif isinstance(raw, staticmethod):
        func, drop_first = raw.__func__, False
    elif inspect.isfunction(raw):
        if kind in ("classmethod", "staticmethod"):
            return [f"{where}: an instance method here, a {kind} in the original"]
        func, drop_first = raw, True
    elif callable(raw):
        func, drop_first = raw, False
    else:
        return [f"{where}: not callable here, a {kind} in the original"]
    sig = callable_signature(func)
    if sig is None:
        return [f"{where}: no inspectable signature"]
    if drop_first:
        params = list(sig.parameters.values())[1:]
        sig = sig.replace(parameters=params)
    return [f"{where}: {p}" for p in signature_problems(spec["params"], sig)]


def class_names(qualname: str, spec: dict[str, Any]) -> list[str]:
    """Everything a missing class takes with it (its constructor aside)."""
    names = [f"{qualname}.{f.partition('=')[0]}" for f in spec.get("fields", [])]
    names += [f"{qualname}.{m}" for m in spec.get("members", {})]
    names += [f"{qualname}.{m}" for m in spec["methods"] if m != "__init__"]
    return names


def class_problems(qualname: str, ours: Any, spec: dict[str, Any]) -> list[str]:
    if not inspect.isclass(ours):
        return [f"{qualname}: not a class here"]
    problems: list[str] = []
    field_names = [f.partition("=")[0] for f in spec.get("fields", [])]
    for name in field_names:
        if name not in spec["methods"] and not _has_attribute(ours, name):
            problems.append(f"{qualname}.{name}: missing")
    members: dict[str, str] = spec.get("members", {})
    if members and not issubclass(ours, enum.Enum):
        problems.append(f"{qualname}: not an enum here")
    elif members:
        for name, value in members.items():
            if name not in ours.__members__:
                problems.append(f"{qualname}.{name}: missing")
            elif repr(ours.__members__[name].value) != value:
                ours_value = ours.__members__[name].value
                problems.append(f"{qualname}.{name}: value {ours_value!r} (original: {value})")
    for name, member in spec["methods"].items():
        if name in field_names and member["kind"] != "method":
            continue
        problems += member_problems(f"{qualname}.{name}", ours, name, member)
    return problems


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _import(modname: str) -> ModuleType | None:
    try:
        return importlib.import_module(modname)
    except ImportError:
        return None


def find_problems(api: dict[str, Any]) -> set[str]:
    problems: set[str] = set()
    for modname, entry in api["modules"].items():
        module = _import(modname)
        if module is None:
            problems.add(f"{modname}: module missing")
        names = set(entry.get("all", [])) | set(entry["defined"])
        for name in sorted(names):
            qualname = f"{modname}.{name}"
            if qualname in NOT_API:
                continue
            if module is None or not hasattr(module, name):
                problems.add(f"{qualname}: missing")
                if name in entry["classes"]:
                    problems.update(
                        f"{n}: missing" for n in class_names(qualname, entry["classes"][name])
                    )
                continue
            ours = getattr(module, name)
            if name in entry["classes"]:
                problems.update(class_problems(qualname, ours, entry["classes"][name]))
            elif name in entry["functions"]:
                sig = callable_signature(ours)
                if sig is None:
                    problems.add(f"{qualname}: not callable here")
                else:
                    params = entry["functions"][name]["params"]
                    problems.update(f"{qualname}: {p}" for p in signature_problems(params, sig))
    return problems


def module_of(entry: str, modules: list[str]) -> str:
    """The original's module an entry is about (the longest module name it starts with)."""
    return max((m for m in modules if entry.startswith((f"{m}.", f"{m}:"))), key=len)


def by_module(entries: set[str], modules: list[str]) -> str:
    """Entries grouped under their module, for a readable failure."""
    groups: dict[str, list[str]] = {}
    for entry in sorted(entries):
        module = module_of(entry, modules)
        groups.setdefault(module, []).append(entry[len(module) :])
    lines = []
    for module, rests in sorted(groups.items()):
        lines.append(f"    {module!r}: [")
        lines += [f"        {rest!r}," for rest in rests]
        lines.append("    ],")
    return "\n".join(lines)


def test_the_original_api_file_is_the_one_for_0_2_0() -> None:
    api = json.loads(API_FILE.read_text(encoding="utf-8"))
    assert api["version"] == "0.2.0"
    assert api["skipped"] == {}
    assert set(NOT_API) <= {f"{m}.{n}" for m, e in api["modules"].items() for n in e["defined"]}, (
        "NOT_API names a name the original did not have"
    )


def test_every_name_of_the_original_api_exists() -> None:
    api = json.loads(API_FILE.read_text(encoding="utf-8"))
    missing = find_problems(api) - set(DIFFERENT_ON_PURPOSE)
    assert not missing, (
        f"{len(missing)} name(s) of the original API missing or incompatible here:\n"
        f"{by_module(missing, list(api['modules']))}"
    )


def test_every_difference_on_purpose_is_real() -> None:
    api = json.loads(API_FILE.read_text(encoding="utf-8"))
    stale = set(DIFFERENT_ON_PURPOSE) - find_problems(api)
    assert not stale, f"no longer different, take off DIFFERENT_ON_PURPOSE: {sorted(stale)}"
