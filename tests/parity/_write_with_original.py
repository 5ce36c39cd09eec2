"""Run by ``make_fixture.py`` under the ORIGINAL abstractruntime 0.2.0 (synchronous API)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

import original_workflows as wf

import abstractruntime
from abstractruntime import Runtime
from abstractruntime.scheduler import WorkflowRegistry
from abstractruntime.storage import (
    HashChainedLedgerStore,
    JsonFileRunStore,
    JsonlLedgerStore,
    JsonSnapshotStore,
    Snapshot,
)
from abstractruntime.storage.artifacts import FileArtifactStore

assert version("abstractruntime") == "0.2.0", version("abstractruntime")
assert "site-packages" in abstractruntime.__file__, abstractruntime.__file__


def runtime(directory: Path, *, chained: bool) -> Runtime:
    ledger = JsonlLedgerStore(directory)
    registry = WorkflowRegistry()
    for spec in wf.all_workflows():
        registry.register(spec)
    return Runtime(
        run_store=JsonFileRunStore(directory),
        ledger_store=HashChainedLedgerStore(ledger) if chained else ledger,
        workflow_registry=registry,
    )


def main(fixtures: Path) -> None:
    chained_dir = fixtures / "original_0_2_0"
    rt = runtime(chained_dir, chained=True)
    ids: dict[str, str] = {}

    def run(name: str, spec: object, vars: dict | None = None) -> str:
        run_id = rt.start(workflow=spec, vars=vars)
        rt.tick(workflow=spec, run_id=run_id)
        ids[name] = run_id
        return run_id

    run("ask", wf.ask())
    run("event", wf.event())
    until = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
    run("timer", wf.timer(), {"until": until})
    run("completed", wf.count())
    run("parent", wf.parent())
    ids["child"] = rt.get_state(ids["parent"]).waiting.details["sub_run_id"]
    for name in ("ask", "event", "timer", "parent", "child"):
        assert rt.get_state(ids[name]).status.value == "waiting", name
    assert rt.get_state(ids["completed"]).status.value == "completed"

    snapshot = Snapshot.from_run(
        run=rt.get_state(ids["ask"]), name="before-answer", tags=["fixture"]
    )
    JsonSnapshotStore(chained_dir).save(snapshot)
    ids["snapshot"] = snapshot.snapshot_id
    artifact = FileArtifactStore(chained_dir).store(
        b"hello from 0.2.0", content_type="text/plain", run_id=ids["ask"]
    )
    ids["artifact"] = artifact.artifact_id

    plain_dir = fixtures / "original_0_2_0_unchained"
    plain = runtime(plain_dir, chained=False)
    done = plain.start(workflow=wf.count())
    plain.tick(workflow=wf.count(), run_id=done)
    waiting = plain.start(workflow=wf.event())
    plain.tick(workflow=wf.event(), run_id=waiting)
    ids["unchained_completed"], ids["unchained_event"] = done, waiting

    (fixtures / "original_0_2_0.json").write_text(json.dumps(ids, indent=2) + "\n")
    time.sleep(2.5)  # the timer's time is now past: the directory holds an overdue wait


if __name__ == "__main__":
    main(Path(sys.argv[1]))
