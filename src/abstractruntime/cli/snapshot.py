"""``abstractruntime snapshot create | list | show | delete | restore | fork``: named copies of
run states."""

from __future__ import annotations

import argparse
from typing import Any

from ..app import snapshot_run
from ..core.runtime import Runtime
from ..core.snapshot import Snapshot
from ..errors import SnapshotNotFoundError
from ..storage.sql import SqlStore
from .base import EXIT_OK, Parser, Subparsers, add_group, positive_int
from .output import Progress, describe_state, emit, fields, table, to_json

_HEADERS = ("SNAPSHOT_ID", "RUN_ID", "NAME", "TAGS", "STATUS", "CREATED")


async def create(args: argparse.Namespace, store: SqlStore) -> int:
    snap = await snapshot_run(
        store, args.run_id, name=args.name, description=args.description, tags=args.tag
    )
    await store.snapshots.save(snap)
    emit(
        args,
        snap.to_dict(),
        f"snapshot {snap.snapshot_id} of run {snap.run_id} ({describe_state(snap.state)})",
    )
    return EXIT_OK


async def list_snapshots(args: argparse.Namespace, store: SqlStore) -> int:
    with Progress() as progress:
        progress.update("reading snapshots…", force=True)
        snaps = await store.snapshots.list(
            run_id=args.run_id, tag=args.tag, query=args.query, limit=args.limit
        )
    rows = (
        [
            s.snapshot_id,
            s.run_id,
            s.name,
            ", ".join(s.tags),
            s.run_state.get("status"),
            s.created_at,
        ]
        for s in snaps
    )
    emit(
        args,
        [_summary(s) for s in snaps],
        table(_HEADERS, rows) if snaps else "(no snapshots)",
    )
    return EXIT_OK


def _summary(snap: Snapshot) -> dict[str, Any]:
    data = snap.to_dict()
    del data["run_state"]  # listings stay small; `snapshot show` has it
    data["status"] = snap.run_state.get("status")
    data["node"] = snap.run_state.get("current_node")
    return data


async def _load(store: SqlStore, snapshot_id: str) -> Snapshot:
    found = await store.snapshots.load(snapshot_id)
    if found is None:
        raise SnapshotNotFoundError(snapshot_id)
    return found


async def show(args: argparse.Namespace, store: SqlStore) -> int:
    found = await _load(store, args.snapshot_id)
    text = fields(
        [
            ("snapshot_id", found.snapshot_id),
            ("name", found.name),
            ("description", found.description),
            ("tags", ", ".join(found.tags)),
            ("run_id", found.run_id),
            ("step_id", found.step_id),
            ("created", found.created_at),
            ("updated", found.updated_at),
            ("state", describe_state(found.state)),
            ("vars", to_json(found.state.vars)),
        ]
    )
    emit(args, found.to_dict(), text)
    return EXIT_OK


async def delete(args: argparse.Namespace, store: SqlStore) -> int:
    if not await store.snapshots.delete(args.snapshot_id):
        raise SnapshotNotFoundError(args.snapshot_id)
    emit(args, {"deleted": args.snapshot_id}, f"snapshot {args.snapshot_id} deleted")
    return EXIT_OK


async def restore(args: argparse.Namespace, store: SqlStore) -> int:
    state = await Runtime(store=store).restore_snapshot(args.snapshot_id)
    emit(
        args,
        state.to_dict(),
        f"run {state.run_id} restored to snapshot {args.snapshot_id}: {describe_state(state)}",
    )
    return EXIT_OK


async def fork(args: argparse.Namespace, store: SqlStore) -> int:
    rt = Runtime(store=store)
    run_id = await rt.fork_snapshot(args.snapshot_id)
    state = await rt.get_state(run_id)
    emit(
        args,
        state.to_dict(),
        f"run {run_id} forked from snapshot {args.snapshot_id} of run "
        f"{state.parent_run_id}: {describe_state(state)}",
    )
    return EXIT_OK


ACTIONS = {
    "create": create,
    "list": list_snapshots,
    "show": show,
    "delete": delete,
    "restore": restore,
    "fork": fork,
}


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    actions = add_group(
        subparsers,
        common,
        "snapshot",
        "named copies of run states: create, list, restore, fork",
        ACTIONS,
    )
    created = actions.add_parser("create", help="snapshot a run as it is now", parents=[common])
    created.add_argument("run_id", metavar="RUN_ID")
    created.add_argument("--name", required=True)
    created.add_argument("--description")
    created.add_argument("--tag", action="append", default=[], metavar="TAG", help="repeatable")
    listing = actions.add_parser("list", help="snapshots, newest first", parents=[common])
    listing.add_argument("--query", metavar="TEXT", help="in the name or description")
    listing.add_argument("--tag", metavar="TAG")
    listing.add_argument("--run", metavar="RUN_ID", dest="run_id")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N")
    for name, text in (
        ("show", "a snapshot with its run state"),
        ("delete", "delete a snapshot"),
        ("restore", "make the snapshot's state its run's current state"),
        ("fork", "start a new run from the snapshot's state"),
    ):
        sub = actions.add_parser(name, help=text, parents=[common])
        sub.add_argument("snapshot_id", metavar="SNAPSHOT_ID")
