"""``abstractruntime runs migrate``: move runs to another version of their workflow."""

from __future__ import annotations

import argparse

from ..app import import_object, load_app
from ..core.registry import WorkflowRegistry
from ..core.runtime import Runtime
from ..core.versions import MigrationReport
from ..storage.sql import SqlStore
from .base import APP_HELP, EXIT_BROKEN, EXIT_OK, CliError, Parser, Subparsers
from .output import emit, table


def describe_versions(registry: WorkflowRegistry) -> str:
    """``order (1, 2), approval (1)``: the workflows of a registry with their versions."""
    parts = [f"{wid} ({', '.join(registry.versions(wid))})" for wid in registry.list_ids()]
    return ", ".join(parts) or "none"


def _node_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise CliError(f"--node-map {pair!r}: expected OLD=NEW, e.g. review=approve")
        mapping[old] = new
    return mapping


async def migrate(args: argparse.Namespace, store: SqlStore) -> int:
    node_map = _node_map(args.node_map or [])
    vars_fn = None
    if args.vars_fn is not None:
        vars_fn = import_object(args.vars_fn, "--vars-fn", "myapp.migrations:to_v2")
        if not callable(vars_fn):
            raise CliError(f"--vars-fn {args.vars_fn!r} is not callable")
    app = await load_app(args.app)
    rt = Runtime(store=store, workflow_registry=app.workflows, **app.runtime_kwargs())
    try:
        report = await rt.migrate_runs(
            args.workflow_id,
            args.from_version,
            args.to_version,
            node_map=node_map,
            vars_fn=vars_fn,
            dry_run=args.dry_run,
        )
    finally:
        await rt.aclose()
    emit(args, report.to_dict(), _text(report))
    return EXIT_BROKEN if report.skipped else EXIT_OK


def _text(report: MigrationReport) -> str:
    verb = "would move" if report.dry_run else "moved"
    head = (
        f"{report.workflow_id} {report.from_version} -> {report.to_version}: {verb} "
        f"{len(report.moved)} runs, skipped {len(report.skipped)}"
    )
    rows = [[m.run_id, m.status, m.from_node, m.to_node, "-"] for m in report.moved]
    rows += [[m.run_id, m.status, m.from_node, "-", m.reason] for m in report.skipped]
    if not rows:
        return head
    return head + "\n" + table(("RUN_ID", "STATUS", "FROM_NODE", "TO_NODE", "NOT MOVED"), rows)


def configure_parser(actions: Subparsers, common: Parser) -> None:
    moved = actions.add_parser(
        "migrate",
        help="move the unfinished runs of a workflow version to another version",
        parents=[common],
    )
    moved.add_argument("workflow_id", metavar="WORKFLOW_ID")
    moved.add_argument("--from", dest="from_version", required=True, metavar="VERSION")
    moved.add_argument("--to", dest="to_version", required=True, metavar="VERSION")
    moved.add_argument(
        "--app", required=True, metavar="MODULE:ATTR", help=APP_HELP + " (with the target version)"
    )
    moved.add_argument(
        "--node-map",
        action="append",
        metavar="OLD=NEW",
        help="rename a node in the target version (repeat for several)",
    )
    moved.add_argument(
        "--vars-fn",
        metavar="MODULE:FUNCTION",
        help="a function vars -> vars (plain or async) that rewrites each run's vars",
    )
    moved.add_argument(
        "--dry-run", action="store_true", help="report what would move; change nothing"
    )
