"""Archives: export -> verify -> purge what was exported -> import, with a run tree, on every
backend; tampered and cut archives are reported; the scheduler applies a retention policy."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import RunStatus, Runtime, RuntimeConfig, Snapshot
from abstractruntime.errors import ArchiveFormatError, InvalidArgumentError
from abstractruntime.scheduler import Scheduler
from abstractruntime.storage.archive import export_runs, import_archive, verify_archive
from tests.helpers.clock import FakeClock
from tests.integration.test_purge import ASK, _finished, _gone
from tests.workflows import counter

DAY = timedelta(days=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rt(store: Any, clock: FakeClock) -> Runtime:
    return Runtime(store=store, config=RuntimeConfig(clock=clock, max_batched_steps=1))


async def _export(store: Any, path: Path, clock: FakeClock, **kwargs: Any) -> Any:
    buffer = io.StringIO()
    result = await export_runs(
        store, buffer, older_than=kwargs.pop("older_than", DAY), now=clock(), **kwargs
    )
    path.write_text(buffer.getvalue())
    return result


async def _reports(path: Path) -> list[dict[str, Any]]:
    return [report async for report in verify_archive(path)]


async def test_round_trip_with_a_run_tree(
    store: Any, rt: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    parent = await _finished(rt)
    child = await _finished(rt, steps=5, parent_run_id=parent)
    single = await _finished(rt)
    await store.snapshots.save(Snapshot.from_run(run=await rt.get_state(child), name="snap"))
    blob = await store.artifacts.store(b"payload", run_id=child, tags={"kind": "x"})
    waiting = await rt.start(workflow=ASK)
    await rt.tick(workflow=ASK, run_id=waiting)
    ledgers = {run_id: await rt.get_ledger(run_id) for run_id in (parent, child, single)}
    states = {run_id: (await rt.get_state(run_id)).to_dict() for run_id in ledgers}
    clock.advance(2 * DAY.total_seconds())
    path = tmp_path / "archive.jsonl"

    exported = await _export(store, path, clock)

    assert exported.run_ids == {parent, child, single}
    assert exported.records == sum(map(len, ledgers.values()))
    assert (exported.snapshots, exported.artifacts) == (1, 1)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["version"] == 1
    assert lines[-1] == {
        "type": "end",
        "runs": 3,
        "records": exported.records,
        "snapshots": 1,
        "artifacts": 1,
    }
    run_lines = [line["run_id"] for line in lines if line["type"] == "run"]
    assert run_lines.index(parent) < run_lines.index(child)  # a tree, root first
    reports = await _reports(path)
    assert [r["ok"] for r in reports] == [True, True, True]
    assert {r["run_id"]: r["count"] for r in reports} == {k: len(v) for k, v in ledgers.items()}

    # A run that finishes between the export and the purge is not deleted: it is not exported.
    await rt.resume(workflow=ASK, run_id=waiting, wait_key=f"user:{waiting}:ask", payload={"a": 1})
    purged = await store.purge(older_than=timedelta(0), now=clock(), run_ids=exported.run_ids)
    assert purged.runs == 3 and purged.snapshots == 1 and purged.artifacts == 1
    for run_id in ledgers:
        assert await _gone(store, run_id)
    assert not await _gone(store, waiting)

    report = await import_archive(store, path)
    assert report.ok and sorted(report.imported) == sorted(ledgers) and report.skipped == []
    assert report.records == exported.records
    for run_id, ledger in ledgers.items():
        assert await rt.get_ledger(run_id) == ledger
        assert (await rt.get_state(run_id)).to_dict() == states[run_id]
        handle = await store.load_run(run_id)
        assert (handle.seq, handle.head) == (len(ledger), ledger[-1]["record_hash"])
    assert await store.artifacts.get(blob.artifact_id) == b"payload"
    assert [s.name for s in await store.snapshots.list(run_id=child)] == ["snap"]
    # The chains verify in the store, as they did in the archive.
    from abstractruntime.provenance import verify_all

    assert all([r["ok"] async for r in verify_all(store)])

    again = await import_archive(store, path)
    assert again.imported == [] and sorted(again.skipped) == sorted(ledgers)
    assert len(await rt.get_ledger(parent)) == len(ledgers[parent])


async def test_a_tampered_line_is_reported_and_refused_at_import(
    store: Any, rt: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    good = await _finished(rt)
    bad = await _finished(rt, steps=4)
    clock.advance(2 * DAY.total_seconds())
    path = tmp_path / "a.jsonl"
    await _export(store, path, clock)
    lines = path.read_text().splitlines()
    for i, text in enumerate(lines):
        item = json.loads(text)
        if item["type"] == "record" and item["run_id"] == bad and item["record"]["node_id"] == "n2":
            item["record"]["result"] = {"forged": True}
            lines[i] = json.dumps(item)
    tampered = tmp_path / "t.jsonl"
    tampered.write_text("\n".join(lines) + "\n")

    reports = {r["run_id"]: r for r in await _reports(tampered)}
    assert reports[good]["ok"]
    assert not reports[bad]["ok"] and reports[bad]["first_bad_index"] == 2
    assert reports[bad]["errors"][0]["type"] == "record_hash_mismatch"

    await store.purge(older_than=DAY, now=clock())
    report = await import_archive(store, tampered)
    assert not report.ok and list(report.refused) == [bad]
    assert report.imported == []  # nothing at all: the archive does not verify
    assert await _gone(store, good)


async def test_a_cut_archive_and_garbage_are_told(
    store: Any, rt: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    await _finished(rt)
    clock.advance(2 * DAY.total_seconds())
    path = tmp_path / "a.jsonl"
    await _export(store, path, clock)
    lines = path.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-2]) + "\n")  # the end line and the last record gone
    reports = await _reports(cut)
    assert not all(r["ok"] for r in reports)
    assert reports[-1]["run_id"] is None and "cut short" in reports[-1]["errors"][0]["error"]
    garbage = tmp_path / "g.jsonl"
    garbage.write_text("not json\n")
    with pytest.raises(ArchiveFormatError, match="not JSON"):
        await _reports(garbage)
    newer = tmp_path / "v2.jsonl"
    newer.write_text(lines[0].replace('"version":1', '"version":2') + "\n")
    with pytest.raises(ArchiveFormatError, match="version 2"):
        await _reports(newer)
    with pytest.raises(ArchiveFormatError, match="cannot read"):
        await _reports(tmp_path / "missing.jsonl")


async def test_export_refuses_bad_arguments_before_writing(store: Any, clock: FakeClock) -> None:
    out = io.StringIO()
    with pytest.raises(InvalidArgumentError, match="finished runs only"):
        await export_runs(store, out, older_than=DAY, statuses=["running"])
    assert out.getvalue() == ""


async def test_the_scheduler_applies_the_retention_policy(store: Any, clock: FakeClock) -> None:
    hour = 3600.0
    config = RuntimeConfig(
        clock=clock, retention=timedelta(hours=1), retention_interval_s=24 * hour
    )
    rt = Runtime(store=store, config=config)
    workflow = counter(2)
    rt.workflow_registry.register(workflow)
    scheduler = Scheduler(rt, poll_interval_s=0.05, wait=clock.wait)
    old = [await _finished(rt, steps=2) for _ in range(3)]
    living = await rt.start(workflow=ASK)
    await rt.tick(workflow=ASK, run_id=living)
    clock.advance(2 * hour)
    recent = await _finished(rt, steps=2)

    await scheduler.poll_once()
    await scheduler.retention.wait()
    for run_id in old:
        assert await _gone(store, run_id)
    assert not await _gone(store, recent) and not await _gone(store, living)
    assert scheduler.retention.purged.runs == 3

    # Old enough now, but the next pass waits for the interval.
    clock.advance(2 * hour)
    await scheduler.poll_once()
    await scheduler.retention.wait()
    assert not await _gone(store, recent)
    clock.advance(24 * hour)
    await scheduler.poll_once()
    await scheduler.retention.wait()
    assert await _gone(store, recent)
    assert not await _gone(store, living)
    await scheduler.stop()


async def test_retention_off_by_default_and_checked() -> None:
    assert RuntimeConfig().retention is None
    with pytest.raises(InvalidArgumentError, match="retention"):
        RuntimeConfig(retention=-DAY)
    with pytest.raises(InvalidArgumentError, match="retention_interval_s"):
        RuntimeConfig(retention=DAY, retention_interval_s=0)


async def test_retention_on_a_store_without_purge_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from abstractruntime.storage import JsonFileRunStore, JsonlLedgerStore

    clock = FakeClock()
    rt = Runtime(
        run_store=JsonFileRunStore(tmp_path),
        ledger_store=JsonlLedgerStore(tmp_path),
        config=RuntimeConfig(clock=clock, retention=DAY),
    )
    rt.workflow_registry.register(counter(2))
    scheduler = Scheduler(rt, poll_interval_s=0.05, wait=clock.wait)
    run_id = await _finished(rt, steps=2)
    clock.advance(2 * DAY.total_seconds())
    with caplog.at_level("WARNING", logger="abstractruntime.scheduler"):
        await scheduler.poll_once()
        await scheduler.poll_once()
    assert not scheduler.retention.busy
    assert [r.message for r in caplog.records].count(
        f"RuntimeConfig.retention is set but {type(rt.store).__name__} cannot purge runs; ignored"
    ) == 1
    assert (await rt.get_state(run_id)).status is RunStatus.COMPLETED
    await scheduler.stop()
