"""Archives of finished runs: a JSON-lines file written and read in constant memory.

``abstractruntime runs export`` / ``runs purge --export`` write one; ``ledger verify --file``
verifies it offline; ``db import-archive`` restores it. The format, version 1, is one JSON object
per line, each with a ``type``:

=============  ===================================================================================
``header``     first line: ``format`` ("abstractruntime-archive"), ``version`` (1),
               ``created_at``, ``selection`` (what was exported: ``older_than_s``, ``statuses``)
``run``        a run: ``run_id``, ``state`` (its stored state, a JSON object), ``ledger_count``
               and ``ledger_head`` (what the run recorded of its ledger)
``record``     one ledger record of the run above, as stored (``run_id``, ``record``): its
               ``prev_hash``/``record_hash`` chain verifies as in the database
``snapshot``   a snapshot of the run above (``run_id``, ``snapshot``: ``Snapshot.to_dict()``)
``artifact``   an artifact of the run above (``run_id``, ``metadata``, ``content_base64``)
``end``        last line: the counts (``runs``, ``records``, ``snapshots``, ``artifacts``), so
               a file cut short is told from a complete one
=============  ===================================================================================

A run's records, snapshots and artifacts follow its ``run`` line, records oldest first; a run
tree (a parent and its children) is written together. One record per line keeps memory flat
however long a ledger is (a one-line-per-run format would hold a million-record ledger in one
line). Readers refuse a ``version`` they do not know.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import anyio.to_thread

from ..core.kernel import encode_state
from ..core.ledger import LedgerVerifier, chain_records
from ..core.models import RunState, RunStatus, StepRecord
from ..core.ports import LedgerHead, Store
from ..core.retention import FINISHED, Purgeable, purge_spec
from ..core.serde import canonical_json, iso
from ..core.snapshot import Snapshot
from ..errors import ArchiveFormatError, InvalidArgumentError, RunExistsError, RunNotFoundError

FORMAT = "abstractruntime-archive"
VERSION = 1
#: Bytes written or read per thread hop.
_IO_CHUNK = 1 << 20
_IMPORTER = "abstractruntime-import-archive"


# -- writing ------------------------------------------------------------------------------------


class ArchiveWriter:
    """Writes archive lines to a text file, a chunk at a time off the event loop."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._buffer: list[str] = []
        self._size = 0

    async def line(self, item: dict[str, Any]) -> None:
        text = canonical_json(item) + "\n"
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= _IO_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer, self._size = "".join(self._buffer), [], 0
            await anyio.to_thread.run_sync(self._write, chunk)

    def _write(self, chunk: str) -> None:
        self._out.write(chunk)
        self._out.flush()


@dataclass
class ExportResult:
    """What an export wrote."""

    #: The runs written (a purge after the export deletes only these).
    run_ids: set[str] = field(default_factory=set)
    records: int = 0
    snapshots: int = 0
    artifacts: int = 0

    @property
    def runs(self) -> int:
        return len(self.run_ids)

    def to_dict(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "records": self.records,
            "snapshots": self.snapshots,
            "artifacts": self.artifacts,
        }


async def export_runs(
    store: Store,
    out: IO[str],
    *,
    older_than: timedelta,
    statuses: Iterable[RunStatus | str] = FINISHED,
    batch: int = 1000,
    now: datetime | None = None,
    progress: Callable[[ExportResult], None] | None = None,
) -> ExportResult:
    """Write to ``out`` the runs ``store.purge`` with these arguments would delete now (whole
    trees of finished runs), with their ledgers, snapshots and artifacts; see the module
    docstring for the format. Reads a page of runs and one ledger at a time."""
    now = now or datetime.now(timezone.utc)
    spec = purge_spec(older_than, statuses, batch, now)  # bad arguments: before any I/O
    if not isinstance(store, Purgeable):
        raise InvalidArgumentError(f"{type(store).__name__} cannot select runs to export")
    statuses = spec.status_values
    pages = store.purgeable(older_than=older_than, statuses=statuses, batch=batch, now=now)
    writer = ArchiveWriter(out)
    result = ExportResult()
    await writer.line(
        {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "created_at": iso(now),
            "selection": {"older_than_s": older_than.total_seconds(), "statuses": statuses},
        }
    )
    async with contextlib.aclosing(pages):  # type: ignore[type-var]
        async for trees in pages:
            for tree in trees:
                for run_id in tree:
                    await _write_run(store, writer, run_id, result)
            if progress is not None:
                progress(result)
    await writer.line({"type": "end", **result.to_dict()})
    await writer.flush()
    return result


async def _write_run(
    store: Store, writer: ArchiveWriter, run_id: str, result: ExportResult
) -> None:
    try:
        handle = await store.load_run(run_id)
    except RunNotFoundError:  # purged meanwhile by someone else: not exported, not ours
        return
    scan = store.scan_ledgers(run_id)
    async with contextlib.aclosing(scan):
        async for item in scan:
            if isinstance(item, LedgerHead):
                await writer.line(
                    {
                        "type": "run",
                        "run_id": run_id,
                        "state": json.loads(handle.state_json),
                        "ledger_count": item.count,
                        "ledger_head": item.head,
                    }
                )
            else:
                await writer.line({"type": "record", "run_id": run_id, "record": item})
                result.records += 1
    for snapshot in await store.snapshots.list(run_id=run_id, limit=None):
        await writer.line({"type": "snapshot", "run_id": run_id, "snapshot": snapshot.to_dict()})
        result.snapshots += 1
    for meta in await store.artifacts.list_by_run(run_id):
        artifact = await store.artifacts.load(meta.artifact_id)
        if artifact is None:
            continue
        content = base64.b64encode(artifact.content).decode("ascii")
        await writer.line(
            {
                "type": "artifact",
                "run_id": run_id,
                "metadata": artifact.metadata.to_dict(),
                "content_base64": content,
            }
        )
        result.artifacts += 1
    result.run_ids.add(run_id)


# -- reading ------------------------------------------------------------------------------------


async def read_lines(path: str | Path) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every line of the archive at ``path``, a chunk of lines
    read at a time off the event loop; ``ArchiveFormatError`` for a line that is not a JSON
    object or a header this version cannot read."""
    try:
        handle = await anyio.to_thread.run_sync(lambda: open(path, encoding="utf-8"))  # noqa: SIM115
    except OSError as exc:
        raise ArchiveFormatError(f"cannot read archive {str(path)!r}: {exc.strerror}") from exc
    number = 0
    try:
        while True:
            lines = await anyio.to_thread.run_sync(handle.readlines, _IO_CHUNK)
            if not lines:
                break
            for text in lines:
                number += 1
                if not text.strip():
                    continue
                try:
                    item = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ArchiveFormatError(
                        f"{path}: line {number} is not JSON ({exc.msg}); the archive is damaged"
                    ) from None
                if not isinstance(item, dict) or "type" not in item:
                    raise ArchiveFormatError(
                        f"{path}: line {number} is not an archive line (a JSON object with a "
                        "'type')"
                    )
                if number == 1:
                    _check_header(path, item)
                yield number, item
    finally:
        await anyio.to_thread.run_sync(handle.close)
    if number == 0:
        raise ArchiveFormatError(f"{path} is empty: not an abstractruntime archive")


def _check_header(path: str | Path, item: dict[str, Any]) -> None:
    if item.get("type") != "header" or item.get("format") != FORMAT:
        raise ArchiveFormatError(
            f"{path} is not an abstractruntime archive (its first line is no {FORMAT} header)"
        )
    if item.get("version") != VERSION:
        raise ArchiveFormatError(
            f"{path} is an archive of format version {item.get('version')!r}; this version of "
            f"abstractruntime reads version {VERSION}: upgrade abstractruntime"
        )


@dataclass
class ArchivedRun:
    """A ``run`` line while its records stream past."""

    run_id: str
    state: dict[str, Any]
    ledger_count: int
    ledger_head: str | None
    line: int


def _run(number: int, item: dict[str, Any]) -> ArchivedRun:
    try:
        return ArchivedRun(
            str(item["run_id"]),
            dict(item["state"]),
            int(item["ledger_count"]),
            item.get("ledger_head"),
            number,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveFormatError(f"line {number}: a run line without {exc}") from None


async def verify_archive(
    path: str | Path, *, max_errors: int | None = 100
) -> AsyncIterator[dict[str, Any]]:
    """One report per run of the archive (as ``provenance.verify_run``'s: ``run_id``, ``ok``,
    ``count``, ``errors``, ``first_bad_index``...), checking each chain and that it ends at the
    ``ledger_count``/``ledger_head`` its run line recorded; then, if the file is cut short (no
    ``end`` line) or its counts disagree, a last report with ``run_id`` None."""
    current: ArchivedRun | None = None
    verifier = LedgerVerifier(max_errors=max_errors)
    runs = records = 0
    ended: dict[str, Any] | None = None

    def report() -> dict[str, Any]:
        assert current is not None
        verifier.expect_head(current.ledger_count, current.ledger_head)
        return {
            "run_id": current.run_id,
            **verifier.report(),
            "errors_omitted": verifier.errors_omitted,
        }

    async for number, item in read_lines(path):
        kind = item["type"]
        if ended is not None:
            raise ArchiveFormatError(f"{path}: line {number} comes after the end line")
        if kind == "run":
            if current is not None:
                yield report()
            current, verifier = _run(number, item), LedgerVerifier(max_errors=max_errors)
            runs += 1
        elif kind == "record":
            if current is None or item.get("run_id") != current.run_id:
                raise ArchiveFormatError(
                    f"{path}: line {number} is a record of run {item.get('run_id')!r} outside "
                    "its run"
                )
            record = item.get("record")
            if not isinstance(record, dict):
                raise ArchiveFormatError(f"{path}: line {number}: a record line without record")
            verifier.add(record)
            records += 1
        elif kind == "end":
            ended = item
        elif kind not in ("header", "snapshot", "artifact"):
            raise ArchiveFormatError(f"{path}: line {number} has an unknown type {kind!r}")
    if current is not None:
        yield report()
    problem = None
    if ended is None:
        problem = "the archive has no end line: it was cut short (an export that did not finish)"
    elif ended.get("runs") != runs or ended.get("records") != records:
        problem = (
            f"the end line counts {ended.get('runs')} runs and {ended.get('records')} records "
            f"but the archive holds {runs} and {records}"
        )
    if problem is not None:
        yield {
            "run_id": None,
            "ok": False,
            "count": 0,
            "errors": [{"index": None, "type": "archive_truncated", "error": problem}],
            "first_bad_index": None,
            "head_hash": None,
            "computed_head_hash": None,
            "errors_omitted": 0,
        }


# -- importing ------------------------------------------------------------------------------------


@dataclass
class ArchiveImportReport:
    """What ``import_archive`` did."""

    imported: list[str] = field(default_factory=list)
    #: In the store already: left as they are, not duplicated.
    skipped: list[str] = field(default_factory=list)
    #: Runs whose chain did not verify: run id -> why. Any of them: nothing was imported.
    refused: dict[str, str] = field(default_factory=dict)
    records: int = 0
    snapshots: int = 0
    artifacts: int = 0

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "imported": self.imported,
            "skipped": self.skipped,
            "refused": self.refused,
            "records": self.records,
            "snapshots": self.snapshots,
            "artifacts": self.artifacts,
        }


async def import_archive(store: Store, path: str | Path) -> ArchiveImportReport:
    """Restore the runs of an archive into ``store``, with their ledgers, snapshots and
    artifacts.

    Every chain is verified first (a pass over the file): if one does not verify, nothing is
    imported and ``refused`` says which and why. Then each run is created and its whole
    ledger committed with its state in one ``commit_step`` (one transaction on SQL), so a run
    is there whole or not at all; a run already in the store is skipped (reported), so running
    the import twice imports nothing twice. Memory: one run's ledger at a time.
    """
    report = ArchiveImportReport()
    async for verified in verify_archive(path, max_errors=1):
        if not verified["ok"]:
            error = verified["errors"][0]
            where = "" if error.get("index") is None else f" at record {error['index']}"
            report.refused[verified["run_id"] or "(archive)"] = f"broken{where}: {error['error']}"
    if report.refused:
        return report
    current: ArchivedRun | None = None
    steps: list[StepRecord] = []
    extras: list[dict[str, Any]] = []
    async for _, item in read_lines(path):
        kind = item["type"]
        if kind in ("run", "end"):
            if current is not None:
                await _restore(store, current, steps, extras, report)
            current, steps, extras = (_run(0, item) if kind == "run" else None), [], []
        elif kind == "record":
            steps.append(StepRecord.from_dict(item["record"]))
        elif kind in ("snapshot", "artifact"):
            extras.append(item)
    return report


async def _restore(
    store: Store,
    run: ArchivedRun,
    steps: list[StepRecord],
    extras: list[dict[str, Any]],
    report: ArchiveImportReport,
) -> None:
    state = RunState.from_dict(run.state)
    # The store chains the records again when it commits them: the same hashes, or the record
    # does not round-trip (a field this version does not know) and the run is refused.
    _, head = chain_records([StepRecord.from_dict(s.to_dict()) for s in steps], None)
    if head != run.ledger_head:
        report.refused[run.run_id] = (
            "its records do not round-trip through this version of abstractruntime (the "
            "rebuilt chain ends elsewhere); not imported"
        )
        return
    state_json = encode_state(state)
    now = datetime.now(timezone.utc)
    try:
        handle = await store.create_run(
            state, state_json, lease=(_IMPORTER, now + timedelta(minutes=10))
        )
    except RunExistsError:
        report.skipped.append(run.run_id)
        return
    if steps:
        await store.commit_step(handle, state, state_json, steps, now=now)
    else:
        await store.release(handle, now=now)
    report.imported.append(run.run_id)
    report.records += len(steps)
    for item in extras:
        if item["type"] == "snapshot":
            snapshot = Snapshot.from_dict(item["snapshot"])
            if await store.snapshots.load(snapshot.snapshot_id) is None:
                await store.snapshots.save(snapshot)
                report.snapshots += 1
        else:
            meta = item["metadata"]
            if not await store.artifacts.exists(meta["artifact_id"]):
                await store.artifacts.store(
                    base64.b64decode(item["content_base64"]),
                    content_type=meta["content_type"],
                    run_id=meta.get("run_id"),
                    tags=meta.get("tags") or {},
                    artifact_id=meta["artifact_id"],
                )
                report.artifacts += 1
