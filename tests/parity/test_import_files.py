"""``import_files`` / ``abstractruntime db import-files DIR``: a directory the original 0.2.0
wrote, copied into memory, SQLite and Postgres stores with its hash chains intact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import (
    JsonFileRunStore,
    JsonlLedgerStore,
    RunStatus,
    Runtime,
    verify_ledger_chain,
)
from abstractruntime.storage.artifact_files import FileArtifactStore
from abstractruntime.storage.import_files import import_files
from tests.helpers import cli
from tests.parity import original_workflows as wf

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
IDS: dict[str, str] = json.loads((FIXTURES / "original_0_2_0.json").read_text())
RUNS = ("ask", "event", "timer", "completed", "parent", "child")


def _records(directory: Path, run_id: str) -> list[dict[str, Any]]:
    text = (directory / f"ledger_{run_id}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    target = tmp_path / "files"
    shutil.copytree(FIXTURES / "original_0_2_0", target)
    return target


async def test_the_originals_directory_imports_with_its_chains(store: Any, directory: Path) -> None:
    report = await import_files(store, directory)
    assert report.ok and sorted(report.imported) == sorted(IDS[n] for n in RUNS)
    assert report.snapshots_imported == [IDS["snapshot"]] and not report.chained
    for name in RUNS:
        run_id = IDS[name]
        ledger = await store.get_ledger(run_id)
        assert ledger == _records(directory, run_id)  # the original's hashes, unchanged
        head = await store.load_run(run_id)
        assert head.seq == len(ledger) and head.head == ledger[-1]["record_hash"]
        state = json.loads((directory / f"run_{run_id}.json").read_text())
        assert head.state.to_dict() == state
    snapshot = await store.snapshots.load(IDS["snapshot"])
    assert snapshot is not None and snapshot.name == "before-answer"
    assert report.artifacts_imported == [IDS["artifact"]]
    original = await FileArtifactStore(directory).load(IDS["artifact"])
    artifact = await store.artifacts.load(IDS["artifact"])
    assert original is not None and artifact is not None
    assert artifact.content == original.content
    assert artifact.metadata.run_id == original.metadata.run_id
    assert artifact.metadata.tags == original.metadata.tags
    assert artifact.metadata.content_type == original.metadata.content_type

    again = await import_files(store, directory)
    assert again.ok and not again.imported and len(again.skipped) == len(RUNS)
    assert again.snapshots_skipped == [IDS["snapshot"]]
    assert again.artifacts_skipped == [IDS["artifact"]] and not again.artifacts_imported

    # the imported runs go on in the database; a later import still sees them as imported
    rt = Runtime(store=store, workflow_registry=wf.all_workflows())
    state = await rt.resume(
        workflow=wf.event(), run_id=IDS["event"], wait_key="evt:fixture", payload={"e": 1}
    )
    assert state.status is RunStatus.COMPLETED
    assert verify_ledger_chain(await rt.get_ledger(IDS["event"]))["ok"]
    state = await rt.tick(workflow=wf.timer(), run_id=IDS["timer"])
    assert state.status is RunStatus.COMPLETED
    third = await import_files(store, directory)
    assert third.ok and len(third.skipped) == len(RUNS)


async def test_an_artifact_id_taken_by_other_bytes_is_a_conflict(
    store: Any, directory: Path
) -> None:
    await store.artifacts.store(b"other bytes", artifact_id=IDS["artifact"])
    report = await import_files(store, directory)
    assert not report.ok and list(report.artifact_conflicts) == [IDS["artifact"]]
    kept = await store.artifacts.load(IDS["artifact"])
    assert kept is not None and kept.content == b"other bytes"  # left as it is


async def test_a_broken_chain_refuses_that_run_only(store: Any, directory: Path) -> None:
    path = directory / f"ledger_{IDS['ask']}.jsonl"
    records = _records(directory, IDS["ask"])
    records[0]["node_id"] = "forged"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = await import_files(store, directory)
    assert not report.ok
    assert list(report.refused) == [IDS["ask"]]
    assert "broken hash chain at record 0" in report.refused[IDS["ask"]]
    assert len(report.imported) == len(RUNS) - 1
    with pytest.raises(KeyError):
        await store.load_run(IDS["ask"])


async def test_an_unchained_ledger_is_chained_on_import(store: Any, tmp_path: Path) -> None:
    directory = tmp_path / "plain"
    shutil.copytree(FIXTURES / "original_0_2_0_unchained", directory)
    report = await import_files(store, directory)
    expected = sorted([IDS["unchained_completed"], IDS["unchained_event"]])
    assert report.ok and sorted(report.chained) == expected == sorted(report.imported)
    for run_id in expected:
        ledger = await store.get_ledger(run_id)
        assert verify_ledger_chain(ledger)["ok"]
        original = _records(directory, run_id)
        strip = ("prev_hash", "record_hash")
        assert [{k: v for k, v in r.items() if k not in strip} for r in ledger] == [
            {k: v for k, v in r.items() if k not in strip} for r in original
        ]
    assert (await import_files(store, directory)).skipped == expected


async def test_a_run_id_taken_by_other_content_is_a_conflict(store: Any, directory: Path) -> None:
    rt = Runtime(store=store)
    await rt.start(workflow=wf.count(), run_id=IDS["completed"])
    report = await import_files(store, directory)
    assert not report.ok and list(report.conflicts) == [IDS["completed"]]
    assert (await store.load_run(IDS["completed"])).state.status is RunStatus.RUNNING


async def test_only_the_committed_ledger_of_our_file_store_is_imported(
    store: Any, tmp_path: Path
) -> None:
    directory = tmp_path / "ours"
    rt = Runtime(run_store=JsonFileRunStore(directory), ledger_store=JsonlLedgerStore(directory))
    run_id, _ = await rt.run(wf.event())
    await rt.store.close()
    committed = _records(directory, run_id)
    with (directory / f"ledger_{run_id}.jsonl").open("a") as f:
        f.write(json.dumps({**committed[-1], "node_id": "uncommitted"}) + "\n{torn")
    report = await import_files(store, directory)
    assert report.ok and report.imported == [run_id]
    assert await store.get_ledger(run_id) == committed


def test_the_command_imports_then_reports_nothing_new(tmp_path: Path, directory: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'import.db'}"
    first = cli("db", "import-files", str(directory), cwd=tmp_path, url=url)
    assert first.returncode == 0, first.stderr
    assert f"imported {len(RUNS)} runs" in first.stdout
    second = cli("--json", "db", "import-files", str(directory), cwd=tmp_path, url=url)
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)
    assert data["imported"] == [] and len(data["skipped"]) == len(RUNS) and data["ok"]
    text = cli("db", "import-files", str(directory), cwd=tmp_path, url=url)
    assert "nothing new to import" in text.stdout
    verify = cli("ledger", "verify", "--all", cwd=tmp_path, url=url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_command_exits_1_when_a_run_is_refused(tmp_path: Path, directory: Path) -> None:
    path = directory / f"ledger_{IDS['event']}.jsonl"
    path.write_text(path.read_text().replace('"wait"', '"forged"', 1))
    url = f"sqlite+aiosqlite:///{tmp_path / 'import.db'}"
    result = cli("db", "import-files", str(directory), cwd=tmp_path, url=url)
    assert result.returncode == 1
    assert f"refused {IDS['event']}: broken hash chain" in result.stdout
    assert f"imported {len(RUNS) - 1} runs" in result.stdout
    missing = cli("db", "import-files", str(tmp_path / "nope"), cwd=tmp_path, url=url)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr
