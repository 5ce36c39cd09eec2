"""Write ``original_api.json``: the public API of the original AbstractRuntime 0.2.0.

Not a test and not run by the suite: it needs the *original* package, installed in a throwaway
virtualenv (the local package index serves it)::

    python3 -m venv /tmp/v020
    /tmp/v020/bin/pip install abstractruntime==0.2.0
    /tmp/v020/bin/python tests/parity/dump_original_api.py

It refuses to run against anything but an installed package (not this checkout's ``src/``), and
writes ``tests/parity/original_api.json`` next to itself, which ``test_names.py`` reads. The output
is sorted and stable: running it again changes nothing.

What it records, per module of the original (found by walking its package directories):

- ``all``: the module's ``__all__``, when it has one;
- ``defined``: the public names (not starting with ``_``) bound at the module's top level by
  ``def``, ``class`` or assignment -- imports excluded, and module-level ``logger`` objects
  excluded (a logger is an implementation detail, not API);
- ``functions``: each public function defined there, with its parameters as signature tokens
  (``name``, ``name=<repr of default>``, ``*args``, ``**kwargs``, and the ``/`` and ``*`` markers)
  and whether it is ``async``;
- ``classes``: each public class defined there: its direct bases, ``kind`` (dataclass, enum,
  protocol, abc, class), dataclass ``fields`` (``name`` or ``name=<default>``, ``name=<factory>``),
  enum ``members`` (name -> repr of value), and ``methods``: every public method, property,
  classmethod, staticmethod or class attribute reachable on the class and defined by a class of the
  package (so inherited helpers such as ``ArtifactStore.store_text`` are listed on the concrete
  stores too), plus ``__init__`` when the package defines it (dataclasses' generated one included)
  and the dunders that are API (``__len__``, ``__contains__``, ... -- see ``PUBLIC_DUNDERS``);
- ``values``: the repr of public module-level constants (for review; not compared).

A module whose import fails is skipped and listed under ``skipped`` -- except the modules of
``abstractruntime.integrations.abstractcore``, which are then read from source with ``ast`` (their
``__all__``, top-level names, functions and classes with their methods; defaults are then the
source text of the default expression). With 0.2.0 every module imports without ``abstractcore``
(it imports it lazily), so ``source`` is ``"import"`` everywhere; the fallback is kept for other
environments.
"""

from __future__ import annotations

import abc
import ast
import dataclasses
import enum
import importlib
import inspect
import json
import logging
import pkgutil
import sys
from pathlib import Path
from typing import Any

PACKAGE = "abstractruntime"
AST_FALLBACK_PREFIX = "abstractruntime.integrations.abstractcore"
OUT = Path(__file__).with_name("original_api.json")
# Dunder methods that are API (``len(registry)``, ``x in registry``); the rest (``__repr__``,
# ``__eq__``, ``__post_init__``, ...) are not.
PUBLIC_DUNDERS = frozenset(
    {
        "__init__",
        "__len__",
        "__contains__",
        "__iter__",
        "__getitem__",
        "__call__",
        "__enter__",
        "__exit__",
        "__aenter__",
        "__aexit__",
    }
)


# --------------------------------------------------------------------------------------------
# Module discovery (file-system walk: a subpackage whose import fails is still found)
# --------------------------------------------------------------------------------------------


def walk_modules(name: str, path: str) -> list[tuple[str, Path]]:
    """(module name, source file) for ``name`` (a package at ``path``) and everything below."""
    found = [(name, Path(path) / "__init__.py")]
    for info in pkgutil.iter_modules([path]):
        full = f"{name}.{info.name}"
        if info.ispkg:
            found.extend(walk_modules(full, str(Path(path) / info.name)))
        else:
            found.append((full, Path(path) / f"{info.name}.py"))
    return found


def top_level_names(tree: ast.Module) -> list[str]:
    """Public names bound at module level by def / class / assignment (not by import)."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    names.update(_target_names(target))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                names.update(_target_names(node.target))
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return sorted(n for n in names if not n.startswith("_") and n != "logger")


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    return []


# --------------------------------------------------------------------------------------------
# Live introspection
# --------------------------------------------------------------------------------------------


def param_tokens(sig: inspect.Signature, *, drop_first: bool) -> list[str]:
    """Signature tokens: ``a``, ``b=1``, ``/``, ``*``, ``*args``, ``**kw``."""
    params = list(sig.parameters.values())
    if drop_first and params and params[0].kind <= inspect.Parameter.POSITIONAL_OR_KEYWORD:
        params = params[1:]
    tokens: list[str] = []
    star_done = False
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            tokens.append(f"*{p.name}")
            star_done = True
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            tokens.append(f"**{p.name}")
            continue
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star_done:
            tokens.append("*")
            star_done = True
        tok = p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
        tokens.append(tok)
        nxt = params[i + 1] if i + 1 < len(params) else None
        if p.kind is inspect.Parameter.POSITIONAL_ONLY and (
            nxt is None or nxt.kind is not inspect.Parameter.POSITIONAL_ONLY
        ):
            tokens.append("/")
    return tokens


def function_entry(fn: Any, *, drop_first: bool) -> dict[str, Any]:
    target = inspect.unwrap(fn)
    return {
        "async": inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target),
        "params": param_tokens(inspect.signature(fn), drop_first=drop_first),
    }


def class_kind(cls: type) -> str:
    if issubclass(cls, enum.Enum):
        return "enum"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    if getattr(cls, "_is_protocol", False):
        return "protocol"
    if inspect.isabstract(cls) or abc.ABC in cls.__bases__:
        return "abc"
    return "class"


def class_entry(cls: type) -> dict[str, Any]:
    kind = class_kind(cls)
    entry: dict[str, Any] = {
        "bases": [_qualname(b) for b in cls.__bases__],
        "kind": kind,
    }
    field_names: set[str] = set()
    if dataclasses.is_dataclass(cls):
        entry["frozen"] = bool(cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]
        fields = []
        for f in dataclasses.fields(cls):
            field_names.add(f.name)
            if f.default is not dataclasses.MISSING:
                fields.append(f"{f.name}={f.default!r}")
            elif f.default_factory is not dataclasses.MISSING:
                fields.append(f"{f.name}=<factory {f.default_factory.__name__}>")
            else:
                fields.append(f.name)
        entry["fields"] = fields
    enum_members: set[str] = set()
    if kind == "enum":
        entry["members"] = {name: repr(m.value) for name, m in cls.__members__.items()}
        enum_members = set(cls.__members__)

    methods: dict[str, Any] = {}
    for name in sorted(set(dir(cls)) | {"__init__"}):
        if name in field_names or name in enum_members:
            continue
        if name.startswith("_") and name not in PUBLIC_DUNDERS:
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not owner.__module__.startswith(PACKAGE):
            continue
        if name == "__init__" and kind == "protocol":
            continue  # Protocol installs its own placeholder __init__
        raw = vars(owner)[name]
        if isinstance(raw, property):
            methods[name] = {"kind": "property"}
        elif isinstance(raw, classmethod):
            methods[name] = {"kind": "classmethod", **function_entry(raw.__func__, drop_first=True)}
        elif isinstance(raw, staticmethod):
            methods[name] = {
                "kind": "staticmethod",
                **function_entry(raw.__func__, drop_first=False),
            }
        elif inspect.isfunction(raw):
            methods[name] = {"kind": "method", **function_entry(raw, drop_first=True)}
        else:
            methods[name] = {"kind": "attribute", "value": _short_repr(raw)}
    entry["methods"] = methods
    return entry


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", repr(obj))
    return name if module == "builtins" else f"{module}.{name}"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def live_module_entry(modname: str, module: Any, tree: ast.Module) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": "import"}
    if hasattr(module, "__all__"):
        entry["all"] = sorted(module.__all__)
    defined = top_level_names(tree)
    entry["defined"] = defined
    functions: dict[str, Any] = {}
    classes: dict[str, Any] = {}
    values: dict[str, str] = {}
    for name in defined:
        obj = getattr(module, name)
        if inspect.isclass(obj) and obj.__module__ == modname:
            classes[name] = class_entry(obj)
        elif inspect.isfunction(obj) and obj.__module__ == modname:
            functions[name] = function_entry(obj, drop_first=False)
        elif isinstance(obj, logging.Logger):
            continue
        else:
            values[name] = _short_repr(obj)
    entry["functions"] = functions
    entry["classes"] = classes
    entry["values"] = values
    return entry


# --------------------------------------------------------------------------------------------
# Source-only fallback (modules whose import fails, under integrations.abstractcore)
# --------------------------------------------------------------------------------------------


def ast_param_tokens(args: ast.arguments, *, drop_first: bool) -> list[str]:
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    pairs = list(zip(positional, defaults, strict=True))
    n_posonly = len(args.posonlyargs)
    if drop_first and pairs:
        pairs = pairs[1:]
        n_posonly = max(0, n_posonly - 1)
    tokens: list[str] = []
    for i, (a, d) in enumerate(pairs):
        tokens.append(a.arg if d is None else f"{a.arg}={ast.unparse(d)}")
        if n_posonly and i == n_posonly - 1:
            tokens.append("/")
    if args.vararg is not None:
        tokens.append(f"*{args.vararg.arg}")
    elif args.kwonlyargs:
        tokens.append("*")
    for a, kd in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        tokens.append(a.arg if kd is None else f"{a.arg}={ast.unparse(kd)}")
    if args.kwarg is not None:
        tokens.append(f"**{args.kwarg.arg}")
    return tokens


def ast_function_entry(node: ast.FunctionDef | ast.AsyncFunctionDef, **kw: Any) -> dict[str, Any]:
    return {
        "async": isinstance(node, ast.AsyncFunctionDef),
        "params": ast_param_tokens(node.args, **kw),
    }


def ast_class_entry(node: ast.ClassDef) -> dict[str, Any]:
    decorators = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
    bases = [ast.unparse(b) for b in node.bases]
    if any(b.endswith("Enum") for b in bases):
        kind = "enum"
    elif decorators & {"dataclass", "dataclasses.dataclass"}:
        kind = "dataclass"
    elif any(b.startswith("Protocol") for b in bases):
        kind = "protocol"
    elif "ABC" in bases:
        kind = "abc"
    else:
        kind = "class"
    entry: dict[str, Any] = {"bases": bases, "kind": kind}
    fields: list[str] = []
    members: dict[str, str] = {}
    methods: dict[str, Any] = {}
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name.startswith("_") and item.name not in PUBLIC_DUNDERS:
                continue
            decos = {ast.unparse(d) for d in item.decorator_list}
            if "property" in decos:
                methods[item.name] = {"kind": "property"}
            elif "classmethod" in decos:
                methods[item.name] = {
                    "kind": "classmethod",
                    **ast_function_entry(item, drop_first=True),
                }
            elif "staticmethod" in decos:
                methods[item.name] = {
                    "kind": "staticmethod",
                    **ast_function_entry(item, drop_first=False),
                }
            else:
                methods[item.name] = {"kind": "method", **ast_function_entry(item, drop_first=True)}
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            if kind == "dataclass":
                fields.append(_ast_field(item.target.id, item.value))
        elif isinstance(item, ast.Assign) and kind == "enum":
            for t in item.targets:
                for name in _target_names(t):
                    members[name] = ast.unparse(item.value)
    if kind == "dataclass":
        entry["fields"] = fields
        if "__init__" not in methods:  # the generated one
            params = [
                f.split("=<factory ")[0] + "=<factory>" if "=<factory " in f else f for f in fields
            ]
            methods["__init__"] = {"async": False, "kind": "method", "params": params}
    if kind == "enum":
        entry["members"] = members
    entry["methods"] = methods
    return entry


def _ast_field(name: str, value: ast.expr | None) -> str:
    """A dataclass field as the live dump writes it (``name``, ``name=1``, ``name=<factory f>``)."""
    if value is None:
        return name
    if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field":
        for kw in value.keywords:
            if kw.arg == "default_factory":
                factory = kw.value
                label = "<lambda>" if isinstance(factory, ast.Lambda) else ast.unparse(factory)
                return f"{name}=<factory {label}>"
            if kw.arg == "default":
                return f"{name}={ast.unparse(kw.value)}"
        return name
    return f"{name}={ast.unparse(value)}"


def ast_module_entry(tree: ast.Module) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": "ast"}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            entry["all"] = sorted(ast.literal_eval(node.value))
    entry["defined"] = top_level_names(tree)
    functions: dict[str, Any] = {}
    classes: dict[str, Any] = {}
    values: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith(
            "_"
        ):
            functions[node.name] = ast_function_entry(node, drop_first=False)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            classes[node.name] = ast_class_entry(node)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for name in _target_names(t):
                    if name in entry["defined"]:
                        values[name] = _short_repr(ast.unparse(node.value))
    entry["functions"] = functions
    entry["classes"] = classes
    entry["values"] = values
    return entry


# --------------------------------------------------------------------------------------------
# Output: sorted keys; lists and leaf objects on one line so the file stays reviewable
# --------------------------------------------------------------------------------------------


def render(value: Any, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not any(isinstance(v, dict) for v in value.values()):
            # A leaf (one method, one enum's members): one line.
            items = (f"{json.dumps(k)}: {render(v)}" for k, v in sorted(value.items()))
            return "{" + ", ".join(items) + "}"
        inner = ",\n".join(
            f"{pad}  {json.dumps(k)}: {render(v, indent + 2)}" for k, v in sorted(value.items())
        )
        return "{\n" + inner + "\n" + pad + "}"
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def main() -> None:
    package = importlib.import_module(PACKAGE)
    if "site-packages" not in (package.__file__ or ""):
        sys.exit(f"{package.__file__}: not an installed original; see this script's docstring")
    version = getattr(package, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version(PACKAGE)
    modules: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for modname, source in walk_modules(PACKAGE, package.__path__[0]):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            if modname.startswith(AST_FALLBACK_PREFIX):
                modules[modname] = ast_module_entry(tree)
            else:
                skipped[modname] = f"{type(exc).__name__}: {exc}"
            continue
        modules[modname] = live_module_entry(modname, module, tree)
    doc = {
        "package": PACKAGE,
        "version": version,
        "generated_by": "tests/parity/dump_original_api.py",
        "modules": modules,
        "skipped": skipped,
    }
    OUT.write_text(render(doc) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(modules)} modules, {len(skipped)} skipped)")


if __name__ == "__main__":
    main()
