"""``import_files``: copy a file-store directory (the original 0.2's layout) into another store.

``abstractruntime db import-files DIR`` calls it with a ``SqlStore``; any ``Store`` works. For
each ``run_<id>.json`` with its ``ledger_<id>.jsonl`` it:

1. reads the committed ledger (the first ``_ledger.count`` records when the run file says so,
   else every whole line) and checks its hash chain:
   - it verifies: imported as is; the stored chain has exactly the file's hashes;
   - no record carries a hash (written without ``HashChainedLedgerStore``), or an unchained
     beginning is followed by a chain that verifies from there: chained on import, reported;
   - otherwise (an edited record, a cut ledger ...): the run is **refused** with the reason,
     and the others go on;
2. creates the run claimed by the importer, commits the whole ledger with the run's state in
   one ``commit_step`` (one transaction on SQL: version and ledger head agree), and releases it.

Idempotent: a run already in the target with the same ledger (or one that went on from it) is
skipped; a run id present with other content is a **conflict**, reported and left untouched.
Snapshots (``snapshot_<id>.json``) and artifacts (``artifacts/<id>.bin`` with its ``.meta``:
content, content type, run id and tags under the same id; the import time becomes their
``created_at``) are copied the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..core.kernel import encode_state
from ..core.ledger import chain_records, verify_ledger_chain
from ..core.models import RunState, StepRecord
from ..core.ports import Store
from ..core.serde import utc_now
from ..core.snapshot import Snapshot
from ..errors import RunExistsError, RunNotFoundError
from .artifact_files import FileArtifactStore
from .files._io import scan_jsonl
from .files.ledger import JsonlLedgerStore
from .files.runs import JsonFileRunStore
from .files.snapshots import JsonSnapshotStore

_IMPORTER = "abstractruntime-import-files"


@dataclass
class ImportReport:
    """What ``import_files`` did, run by run."""

    imported: list[str] = field(default_factory=list)
    #: Imported runs whose ledger had no hash chain (or only part of one): chained on import.
    chained: list[str] = field(default_factory=list)
    #: Already in the target with this ledger (or one that went on from it).
    skipped: list[str] = field(default_factory=list)
    #: Not imported: run id -> why (a broken chain, an unreadable file ...).
    refused: dict[str, str] = field(default_factory=dict)
    #: In the target with other content, left untouched: run id -> what differs.
    conflicts: dict[str, str] = field(default_factory=dict)
    snapshots_imported: list[str] = field(default_factory=list)
    snapshots_skipped: list[str] = field(default_factory=list)
    snapshot_conflicts: dict[str, str] = field(default_factory=dict)
    artifacts_imported: list[str] = field(default_factory=list)
    artifacts_skipped: list[str] = field(default_factory=list)
    artifact_conflicts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing refused and no conflict."""
        return not (
            self.refused or self.conflicts or self.snapshot_conflicts or self.artifact_conflicts
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "imported": self.imported,
            "chained": self.chained,
            "skipped": self.skipped,
            "refused": self.refused,
            "conflicts": self.conflicts,
            "snapshots_imported": self.snapshots_imported,
            "snapshots_skipped": self.snapshots_skipped,
            "snapshot_conflicts": self.snapshot_conflicts,
            "artifacts_imported": self.artifacts_imported,
            "artifacts_skipped": self.artifacts_skipped,
            "artifact_conflicts": self.artifact_conflicts,
        }


@dataclass
class _FileRun:
    state: RunState
    records: list[dict[str, Any]]


def _read_run(
    runs: JsonFileRunStore, ledgers: JsonlLedgerStore, path: Path
) -> _FileRun | str | None:
    """A run file with its committed ledger; a string says why it cannot be read."""
    run_id = path.name[len("run_") : -len(".json")]
    try:
        found = runs.read_sync(run_id)
    except Exception as exc:
        return f"cannot read {path.name}: {exc}"
    if found is None:
        return None
    state, meta = found
    if state.run_id != run_id:
        return f"{path.name} holds run {state.run_id!r}"
    try:
        limit = meta["count"] if meta and isinstance(meta.get("count"), int) else None
        records, _, _ = scan_jsonl(ledgers.path(run_id), limit)
    except Exception as exc:
        return f"cannot read its ledger: {exc}"
    if meta is not None and isinstance(meta.get("count"), int):
        if len(records) != meta["count"]:
            return (
                f"its run file records {meta['count']} ledger entries but the ledger holds "
                f"{len(records)}: records are missing"
            )
        if meta.get("head") != (records[-1].get("record_hash") if records else None):
            return "the ledger's last hash is not the head its run file records"
    return _FileRun(state, records)


def _chain(run: _FileRun) -> tuple[list[StepRecord], bool] | str:
    """The records to commit and whether they get a chain they lacked; a string: refused."""
    records = run.records
    report = verify_ledger_chain(records)
    if report["ok"]:
        rechain = False
    else:
        first = next((i for i, r in enumerate(records) if r.get("record_hash")), len(records))
        unchained_prefix = all(not r.get("prev_hash") for r in records[:first])
        rest = records[first:]
        if not (unchained_prefix and (not rest or rest[0].get("prev_hash") is None)):
            return _broken(report)
        rest_report = verify_ledger_chain(rest)
        if not rest_report["ok"]:
            return _broken(rest_report, offset=first)
        rechain = True
    try:
        steps = [StepRecord.from_dict(r) for r in records]
    except (TypeError, ValueError) as exc:
        return f"a ledger record is not a step record: {exc}"
    if not rechain:
        # The import recomputes each hash from the record as we store it: it must come out
        # the same, or the stored chain would not be the original's.
        copies = [StepRecord.from_dict(r) for r in records]
        dicts, _ = chain_records(copies, None)
        for index, (mine, theirs) in enumerate(zip(dicts, records, strict=True)):
            if mine["record_hash"] != theirs.get("record_hash"):
                return (
                    f"record {index} does not read back exactly as written (e.g. a timestamp "
                    "in another form), so its hash would change; not imported"
                )
    return steps, rechain


def _broken(report: dict[str, Any], offset: int = 0) -> str:
    error = report["errors"][0]
    return (
        f"broken hash chain at record {error['index'] + offset}: {error['error']}; the ledger "
        "was edited or damaged (check it with abstractruntime ledger verify --file)"
    )


async def _existing(store: Store, run: _FileRun, chained: list[StepRecord]) -> str | None:
    """None: the target holds this run already (skip); a string: a conflict."""
    try:
        ledger = await store.get_ledger(run.state.run_id)
    except RunNotFoundError:
        return "it vanished while importing"
    ours = [r.record_hash for r in chained]
    theirs = [r.get("record_hash") for r in ledger[: len(ours)]]
    if theirs != ours:
        return (
            f"the database holds run {run.state.run_id!r} with another ledger "
            f"({len(ledger)} records); left as it is"
        )
    if len(ledger) == len(ours):
        stored = (await store.load_run(run.state.run_id)).state
        if stored.to_dict() != run.state.to_dict():
            return f"the database holds run {run.state.run_id!r} in another state; left as it is"
    return None


async def _import_run(store: Store, run: _FileRun, report: ImportReport) -> None:
    run_id = run.state.run_id
    checked = _chain(run)
    if isinstance(checked, str):
        report.refused[run_id] = checked
        return
    steps, rechain = checked
    dicts, _ = chain_records([StepRecord.from_dict(s.to_dict()) for s in steps], None)
    chained = [StepRecord.from_dict(d) for d in dicts]
    state_json = encode_state(run.state)
    now = utc_now()
    try:
        handle = await store.create_run(
            run.state, state_json, lease=(_IMPORTER, now + timedelta(minutes=10))
        )
    except RunExistsError:
        conflict = await _existing(store, run, chained)
        if conflict is None:
            report.skipped.append(run_id)
        else:
            report.conflicts[run_id] = conflict
        return
    if steps:
        await store.commit_step(handle, run.state, state_json, steps, now=now)
    else:
        await store.release(handle, now=now)
    report.imported.append(run_id)
    if rechain:
        report.chained.append(run_id)


async def _import_snapshot(store: Store, snapshot: Snapshot, report: ImportReport) -> None:
    existing = await store.snapshots.load(snapshot.snapshot_id)
    if existing is None:
        await store.snapshots.save(snapshot)
        report.snapshots_imported.append(snapshot.snapshot_id)
    elif existing.run_state == snapshot.run_state and existing.name == snapshot.name:
        report.snapshots_skipped.append(snapshot.snapshot_id)
    else:
        report.snapshot_conflicts[snapshot.snapshot_id] = (
            "the database holds a snapshot with this id and other content; left as it is"
        )


async def _import_artifacts(store: Store, directory: Path, report: ImportReport) -> None:
    files = FileArtifactStore(directory)
    for meta in await files.list_all(limit=None):
        artifact = await files.load(meta.artifact_id)
        if artifact is None:  # deleted meanwhile
            continue
        existing = await store.artifacts.load(meta.artifact_id)
        if existing is None:
            await store.artifacts.store(
                artifact.content,
                content_type=meta.content_type,
                run_id=meta.run_id,
                tags=meta.tags,
                artifact_id=meta.artifact_id,
            )
            report.artifacts_imported.append(meta.artifact_id)
        elif existing.content == artifact.content:
            report.artifacts_skipped.append(meta.artifact_id)
        else:
            report.artifact_conflicts[meta.artifact_id] = (
                "the database holds an artifact with this id and other content; left as it is"
            )


async def import_files(store: Store, directory: str | Path) -> ImportReport:
    """Copy the runs, ledgers, snapshots and artifacts of ``directory`` into ``store`` (see the
    module docstring). Reading the directory takes no lock: stop the process driving it first, or
    what it commits meanwhile may be left out."""
    base = Path(directory)
    if not base.is_dir():
        raise FileNotFoundError(f"{base} is not a directory")
    runs, ledgers = JsonFileRunStore(base), JsonlLedgerStore(base)
    report = ImportReport()
    paths = await asyncio.to_thread(lambda: sorted(base.glob("run_*.json")))
    for path in paths:
        found = await asyncio.to_thread(_read_run, runs, ledgers, path)
        if found is None:
            continue
        if isinstance(found, str):
            report.refused[path.name[len("run_") : -len(".json")]] = found
            continue
        await _import_run(store, found, report)
    snapshots = await asyncio.to_thread(JsonSnapshotStore(base).scan_sync)
    for snapshot in snapshots:
        await _import_snapshot(store, snapshot, report)
    await _import_artifacts(store, base, report)
    return report


__all__ = ["ImportReport", "import_files"]
