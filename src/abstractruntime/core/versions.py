"""Moving runs from one version of a workflow to another (``Runtime.migrate_runs``).

A run is driven only by the version of its workflow it started on (``RunState.
workflow_version``, ``WorkflowRegistry.for_run``). Moving runs is an operator's decision: each
run that is not finished and not being driven right now is claimed, checked against the target
version's nodes, and committed at the new version with a ``migrated`` ledger record, in one
transaction of its own. A run whose nodes have no target is reported, never half-moved.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConcurrentUpdateError, InvalidArgumentError, RunLeasedError
from . import machine
from .models import RunState, RunStatus
from .spec import WorkflowSpec

if TYPE_CHECKING:
    from .runtime import Runtime

#: ``vars_fn(vars) -> vars``: plain or async; gets a copy of the run's vars.
VarsFn = Callable[[dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]

_PAGE = 500
#: The statuses of the runs ``migrate_runs`` moves (a finished run has nothing left to drive).
_MOVABLE = (RunStatus.WAITING, RunStatus.RUNNING)


@dataclass(frozen=True)
class RunMigration:
    """One run's move: from which node to which; ``reason`` says why it was not moved."""

    run_id: str
    status: str
    from_node: str | None
    to_node: str | None
    reason: str | None = None


@dataclass
class MigrationReport:
    """What ``migrate_runs`` did (or, with ``dry_run``, would do)."""

    workflow_id: str
    from_version: str
    to_version: str
    dry_run: bool
    moved: list[RunMigration] = field(default_factory=list)
    skipped: list[RunMigration] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def rows(items: list[RunMigration]) -> list[dict[str, Any]]:
            return [vars(item) for item in items]

        return {
            "workflow_id": self.workflow_id,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "dry_run": self.dry_run,
            "moved": rows(self.moved),
            "skipped": rows(self.skipped),
        }


def check_arguments(
    workflow_id: object,
    from_version: object,
    to_version: object,
    node_map: object,
    vars_fn: object,
) -> None:
    """``InvalidArgumentError`` for arguments ``migrate_runs`` cannot use (before any I/O)."""
    for name, value in (
        ("workflow_id", workflow_id),
        ("from_version", from_version),
        ("to_version", to_version),
    ):
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    if from_version == to_version:
        raise InvalidArgumentError(f"from_version and to_version are both {from_version!r}")
    if node_map is not None and (
        not isinstance(node_map, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in node_map.items())
    ):
        raise InvalidArgumentError("node_map must be a dict of old node id -> new node id")
    if vars_fn is not None and not callable(vars_fn):
        raise InvalidArgumentError(f"vars_fn must be callable, got {type(vars_fn).__name__}")


def unmapped(state: RunState, target: WorkflowSpec, node_map: Mapping[str, str]) -> str | None:
    """Why ``state`` cannot move to ``target`` (a node of it that ``target`` lacks), or None."""
    waiting = state.waiting
    named = [("current node", state.current_node)]
    if waiting is not None:
        named += [("resume node", waiting.resume_to_node), ("timeout node", waiting.timeout_node)]
    for what, node in named:
        if node is None:
            continue
        new = node_map.get(node, node)
        if new not in target.nodes:
            hint = "" if node in node_map else " (map it in node_map)"
            return (
                f"its {what} {node!r} has no target: version {target.version!r} has no node "
                f"{new!r}{hint}"
            )
    return None


async def migrate_runs(
    rt: Runtime,
    workflow_id: str,
    from_version: str,
    to_version: str,
    node_map: Mapping[str, str] | None,
    vars_fn: VarsFn | None,
    dry_run: bool,
) -> MigrationReport:
    """See ``Runtime.migrate_runs``."""
    check_arguments(workflow_id, from_version, to_version, node_map, vars_fn)
    target = rt.workflow_registry.get_or_raise(workflow_id, to_version)
    node_map = dict(node_map or {})
    report = MigrationReport(workflow_id, from_version, to_version, dry_run)
    seen: set[str] = set()
    for status in _MOVABLE:
        while True:
            # Moved runs leave the filter; skipped ones (and all, in a dry run) stay in it,
            # so each page asks for that many more.
            page = await rt.store.list_runs(
                status=status,
                workflow_id=workflow_id,
                workflow_version=from_version,
                limit=len(seen) + _PAGE,
            )
            fresh = [state for state in page if state.run_id not in seen]
            if not fresh:
                break
            for state in fresh:
                seen.add(state.run_id)
                await _migrate_one(rt, state, target, node_map, vars_fn, report)
    return report


async def _migrate_one(
    rt: Runtime,
    state: RunState,
    target: WorkflowSpec,
    node_map: dict[str, str],
    vars_fn: VarsFn | None,
    report: MigrationReport,
) -> None:
    def skip(reason: str) -> None:
        report.skipped.append(
            RunMigration(state.run_id, state.status.value, state.current_node, None, reason)
        )

    problem = unmapped(state, target, node_map)
    if problem is not None:
        return skip(problem)
    if report.dry_run:
        new_vars = await _new_vars(state, vars_fn, skip)
        if new_vars is not None:
            to_node = node_map.get(state.current_node or "", state.current_node)
            report.moved.append(
                RunMigration(state.run_id, state.status.value, state.current_node, to_node)
            )
        return None
    try:
        handle = await rt._claim(state.run_id)
    except RunLeasedError:
        return skip("a worker is driving it right now; run the migration again later")
    try:
        state = handle.state  # the newest state, now ours
        if state.status not in _MOVABLE or state.workflow_version != report.from_version:
            return skip(f"it changed meanwhile ({state.status.value}, {state.workflow_version})")
        problem = unmapped(state, target, node_map)
        if problem is not None:
            return skip(problem)
        new_vars = await _new_vars(state, vars_fn, skip)
        if new_vars is None:
            return None
        from_node = state.current_node
        transition = machine.migrate(state, target.version, node_map, new_vars, rt.config.clock())
        try:
            handle = await rt._commit_claimed(handle, transition)
        except ConcurrentUpdateError:
            return skip("it changed meanwhile (another commit won); run the migration again")
        report.moved.append(
            RunMigration(state.run_id, state.status.value, from_node, state.current_node)
        )
    finally:
        await rt._release(handle)
    return None


async def _new_vars(
    state: RunState, vars_fn: VarsFn | None, skip: Callable[[str], None]
) -> dict[str, Any] | None:
    """The run's vars after ``vars_fn`` (a copy: a dry run changes nothing), or None when it
    raised or returned something else than a dict (the run is then skipped)."""
    vars = copy.deepcopy(state.vars)
    if vars_fn is None:
        return vars
    try:
        result = vars_fn(vars)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        skip(f"vars_fn raised {type(exc).__name__}: {exc}")
        return None
    if not isinstance(result, dict):
        skip(f"vars_fn returned a {type(result).__name__}, expected a dict")
        return None
    return result
