"""The application layer: what a worker, the command line and a web server share.

``load_app("myapp.flows:registry")`` imports what ``--app`` names and makes an :class:`App` of
it: the workflows, and what their runtime needs to perform effects. ``snapshot_run`` takes a
snapshot of a run that agrees with its ledger, whatever commits meanwhile.

This module may use the core, the stores and the scheduler; the command line uses it, never the
other way round.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .core.models import EffectType
from .core.policy import EffectPolicy
from .core.ports import Store
from .core.registry import WorkflowRegistry
from .core.snapshot import Snapshot
from .core.spec import WorkflowSpec
from .core.throttle import Limit, check_limits
from .errors import AppLoadError, ConcurrentUpdateError, InvalidArgumentError, StoreError

__all__ = ["App", "load_app", "snapshot_run"]

#: What a dict app may hold.
APP_KEYS = frozenset({"workflows", "effect_handlers", "effect_policy", "context", "limits"})

#: How an app may be given, for help texts.
APP_FORMS = (
    "a WorkflowRegistry, a list of WorkflowSpec, a dict with 'workflows' and optionally "
    "'effect_handlers', 'effect_policy', 'context', 'limits', or a function (sync or async) "
    "returning one "
    "(e.g. myapp.flows:registry)"
)


@dataclass
class App:
    """What ``--app`` names: the workflows, and what their runtime needs to perform effects."""

    workflows: WorkflowRegistry
    effect_handlers: dict[EffectType, Any] = field(default_factory=dict)
    effect_policy: EffectPolicy | None = None
    context: Any = None
    #: Shared concurrency and rate limits (``RuntimeConfig.limits``) a worker enforces.
    limits: tuple[Limit, ...] = ()

    def runtime_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Runtime`` / ``create_scheduled_runtime`` this app sets."""
        return {
            "effect_handlers": self.effect_handlers,
            "effect_policy": self.effect_policy,
            "context": self.context,
        }


def import_object(spec: str, what: str, example: str) -> Any:
    """The object ``module:attr`` names (the current directory is importable);
    ``AppLoadError`` naming ``what`` it was meant to be when it cannot be found."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f"{what} {spec!r}: expected MODULE:ATTR, e.g. {example}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"{what} {spec!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AppLoadError(f"{what} {spec!r}: module {module_name!r} has no {attr!r}") from None


async def load_app(spec: str) -> App:
    """Import ``module:attr`` and make an :class:`App` of it.

    ``attr`` may be any of the forms of ``APP_FORMS``; a function is called (and awaited if it
    is async), so that an app may open its clients first. The current directory is importable,
    as with uvicorn.

    Raises:
        AppLoadError: the spec is malformed, the module does not import, it has no ``attr``, or
            ``attr`` is none of the forms above.
    """
    target = import_object(spec, "app", "myapp.flows:registry")
    if callable(target) and not isinstance(target, (WorkflowRegistry, WorkflowSpec)):
        target = target()
        if inspect.isawaitable(target):
            target = await target
    if not isinstance(target, Mapping):
        return App(_registry_of(spec, target))
    unknown = set(target) - APP_KEYS
    if unknown or "workflows" not in target:
        raise AppLoadError(
            f"app {spec!r}: a dict app needs 'workflows' and may have "
            f"'effect_handlers', 'effect_policy', 'context', 'limits' (got {sorted(target)})"
        )
    policy = target.get("effect_policy")
    if policy is not None and not isinstance(policy, EffectPolicy):
        raise AppLoadError(
            f"app {spec!r}: effect_policy is a {type(policy).__name__}, which lacks the methods "
            "of an EffectPolicy (e.g. RetryPolicy())"
        )
    return App(
        _registry_of(spec, target["workflows"]),
        _effect_handlers(spec, target.get("effect_handlers") or {}),
        policy,
        target.get("context"),
        _limits(spec, target.get("limits") or ()),
    )


def _limits(spec: str, limits: Any) -> tuple[Limit, ...]:
    try:
        return check_limits(limits)
    except InvalidArgumentError as exc:
        raise AppLoadError(f"app {spec!r}: {exc}") from exc


def _registry_of(spec: str, target: Any) -> WorkflowRegistry:
    if isinstance(target, WorkflowRegistry):
        return target
    if isinstance(target, WorkflowSpec):
        return WorkflowRegistry([target])
    if isinstance(target, (str, bytes)) or not isinstance(target, Iterable):
        raise AppLoadError(
            f"app {spec!r} is a {type(target).__name__}, not a WorkflowRegistry, a list of "
            "WorkflowSpec or a dict with 'workflows'"
        )
    try:
        return WorkflowRegistry(target)
    except (TypeError, ValueError) as exc:  # not a WorkflowSpec; two with one workflow id
        raise AppLoadError(f"app {spec!r}: {exc}") from exc


def _effect_handlers(spec: str, handlers: Any) -> dict[EffectType, Any]:
    if not isinstance(handlers, Mapping):
        raise AppLoadError(
            f"app {spec!r}: effect_handlers is a {type(handlers).__name__}, not a dict of "
            "EffectType to handler"
        )
    out: dict[EffectType, Any] = {}
    for key, handler in handlers.items():
        try:
            effect_type = EffectType(key)
        except ValueError:
            raise AppLoadError(
                f"app {spec!r}: effect_handlers has {key!r}, which is not an effect type "
                f"({', '.join(t.value for t in EffectType)})"
            ) from None
        if not callable(handler):
            raise AppLoadError(f"app {spec!r}: the effect handler of {key!r} is not callable")
        out[effect_type] = handler
    return out


async def snapshot_run(
    store: Store,
    run_id: str,
    *,
    name: str,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    attempts: int = 5,
) -> Snapshot:
    """Snapshot a run as it is now, with the id of the ledger step its state comes from.

    The run's state and its last ledger record are two reads; a step committed between them
    would pair a state with another step's id. Each record's ``record_hash`` is unique, and the
    run's row names the hash of its last record (``RunHandle.head``), so a pair whose tail is
    not the state's head is read again, up to ``attempts`` times. The snapshot is not saved.

    Raises:
        RunNotFoundError: no such run.
        InvalidArgumentError: the name, description or tags cannot be stored.
        ConcurrentUpdateError: the run moved on at every attempt (a run stepping that fast is
            better snapshotted while it waits).
        StoreError: the ledger does not end where the run says (cut short or edited).
    """
    if attempts < 1:
        raise InvalidArgumentError(f"attempts must be at least 1, got {attempts}")
    disagreed: set[str | None] = set()  # the heads whose state a tail read disagreed with
    for _ in range(attempts):
        handle = await store.load_run(run_id)
        tail = await store.ledger_tail(run_id)
        if (tail.get("record_hash") if tail else None) != handle.head:
            if handle.head in disagreed:  # no step landed, yet they disagree again
                raise StoreError(
                    f"the ledger of run {run_id!r} does not end at the record its run names as "
                    f"its head ({handle.head}); check it with `abstractruntime ledger verify`"
                )
            disagreed.add(handle.head)
            continue  # a step landed between the two reads: read both again
        try:
            return Snapshot.from_run(
                run=handle.state,
                name=name,
                description=description,
                tags=tags,
                step_id=tail["step_id"] if tail else None,
            )
        except (TypeError, ValueError) as exc:  # the caller's name, description or tags
            raise InvalidArgumentError(f"cannot snapshot run {run_id!r}: {exc}") from exc
    raise ConcurrentUpdateError(run_id, handle.version)
