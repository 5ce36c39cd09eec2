"""The file stores on a directory the ORIGINAL 0.2.0 wrote (``fixtures/``, see make_fixture.py).

Its ledgers verify here, its waiting runs resume to completion (``Runtime`` and
``ScheduledRuntime``), the original can read what we write back, and a process killed with
SIGKILL while it commits steps never leaves a torn run file or a forked ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import (
    HashChainedLedgerStore,
    JsonFileRunStore,
    JsonlLedgerStore,
    JsonSnapshotStore,
    RunState,
    RunStatus,
    Runtime,
    StepRecord,
    WaitReason,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.errors import InvalidArgumentError, StoreError
from abstractruntime.storage import FileStore, QueryableRunStore
from tests.helpers import eventually
from tests.parity import original_workflows as wf
from tests.parity.file_writer_child import COUNTER_STEPS
from tests.parity.file_writer_child import counter as _counter

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "original_0_2_0"
IDS: dict[str, str] = json.loads((HERE / "fixtures" / "original_0_2_0.json").read_text())
ROOT = HERE.parents[1]


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    target = tmp_path / "runs"
    shutil.copytree(FIXTURE, target)
    return target


def _original_records(run_id: str) -> list[dict[str, Any]]:
    lines = (FIXTURE / f"ledger_{run_id}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _runtime(directory: Path, *, chained: bool = False) -> Runtime:
    ledger = JsonlLedgerStore(directory)
    return Runtime(
        run_store=JsonFileRunStore(directory),
        ledger_store=HashChainedLedgerStore(ledger) if chained else ledger,
        workflow_registry=wf.all_workflows(),
    )


async def test_the_originals_directory_opens_and_its_ledgers_verify(directory: Path) -> None:
    runs = JsonFileRunStore(directory)
    assert isinstance(runs, QueryableRunStore)
    waiting = await runs.list_runs(status=RunStatus.WAITING)
    assert {s.run_id for s in waiting} == {
        IDS[k] for k in ("ask", "event", "timer", "parent", "child")
    }
    assert [
        s.run_id for s in await runs.list_due_wait_until(now_iso="2100-01-01T00:00:00+00:00")
    ] == [IDS["timer"]]
    assert await runs.list_due_wait_until(now_iso="2000-01-01T00:00:00+00:00") == []
    children = await runs.list_children(parent_run_id=IDS["parent"])
    assert [c.run_id for c in children] == [IDS["child"]]
    user = await runs.list_runs(wait_reason=WaitReason.USER)
    assert {s.run_id for s in user} == {IDS["ask"], IDS["child"]}

    store = FileStore(runs, JsonlLedgerStore(directory))
    for name in ("ask", "event", "timer", "completed", "parent", "child"):
        ledger = await store.get_ledger(IDS[name])
        assert ledger == _original_records(IDS[name])
        assert verify_ledger_chain(ledger)["ok"], name
    snapshots = await store.snapshots.list(tag="fixture")
    assert [s.snapshot_id for s in snapshots] == [IDS["snapshot"]]
    assert snapshots[0].state.run_id == IDS["ask"]


@pytest.mark.parametrize("chained", [False, True], ids=["jsonl", "hash-chained-jsonl"])
async def test_a_runtime_resumes_every_waiting_run_of_the_original(
    directory: Path, chained: bool
) -> None:
    rt = _runtime(directory, chained=chained)
    assert isinstance(rt.store, FileStore)
    ask = await rt.get_state(IDS["ask"])
    assert ask.waiting is not None and ask.waiting.prompt == "Approve the order?"
    state = await rt.resume(
        workflow=wf.ask(), run_id=IDS["ask"], wait_key=ask.waiting.wait_key, payload={"ok": 1}
    )
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"answer": {"ok": 1}}
    state = await rt.resume(
        workflow=wf.event(), run_id=IDS["event"], wait_key="evt:fixture", payload={"e": 2}
    )
    assert state.output == {"event": {"e": 2}}
    state = await rt.tick(workflow=wf.timer(), run_id=IDS["timer"])  # its time is past
    assert state.status is RunStatus.COMPLETED
    child = await rt.get_state(IDS["child"])
    assert child.waiting is not None
    state = await rt.resume(
        workflow=wf.ask(), run_id=IDS["child"], wait_key=child.waiting.wait_key, payload={"c": 3}
    )
    assert state.status is RunStatus.COMPLETED
    parent = await rt.get_state(IDS["parent"])  # the child woke its parent
    assert parent.status is RunStatus.COMPLETED
    await rt.store.close()

    # A new process (a new store) sees it all, and every ledger continues the original's chain.
    rt = _runtime(directory)
    for name in ("ask", "event", "timer", "parent", "child"):
        state = await rt.get_state(IDS[name])
        assert state.status is RunStatus.COMPLETED, name
        ledger = await rt.get_ledger(IDS[name])
        original = _original_records(IDS[name])
        assert ledger[: len(original)] == original
        assert len(ledger) > len(original)
        assert verify_ledger_chain(ledger)["ok"], name
        meta = json.loads((directory / f"run_{IDS[name]}.json").read_text())["_ledger"]
        assert meta["count"] == len(ledger) and meta["head"] == ledger[-1]["record_hash"]
    await rt.store.close()


async def test_a_scheduled_runtime_resumes_them_by_itself(directory: Path) -> None:
    sr = await create_scheduled_runtime(
        run_store=JsonFileRunStore(directory),
        ledger_store=JsonlLedgerStore(directory),
        workflows=wf.all_workflows(),
        poll_interval_s=0.05,
    )
    async with sr:
        assert isinstance(sr.store, FileStore)

        async def timer_done() -> bool:
            return (await sr.get_state(IDS["timer"])).status is RunStatus.COMPLETED

        await eventually(timer_done, "the overdue timer was not resumed")
        assert (await sr.respond(IDS["ask"], {"yes": True})).status is RunStatus.COMPLETED
        resumed = await sr.emit_event("evt:fixture", {"e": 1})
        assert [s.run_id for s in resumed] == [IDS["event"]]
        waiting = await sr.find_waiting_runs(wait_reason=WaitReason.USER)
        assert [s.run_id for s in waiting] == [IDS["child"]]
        await sr.respond(IDS["child"], {"c": 1})

        async def parent_done() -> bool:
            return (await sr.get_state(IDS["parent"])).status is RunStatus.COMPLETED

        await eventually(parent_done, "the child's end did not resume its parent")
        for name in ("ask", "event", "timer", "parent", "child"):
            assert verify_ledger_chain(await sr.get_ledger(IDS[name]))["ok"]
    # stop() closed the store it made: the directory is free for another runtime.
    rt = _runtime(directory)
    await rt.run(wf.count())
    await rt.store.close()


async def test_snapshots_of_the_original_restore_and_fork(directory: Path) -> None:
    rt = _runtime(directory)
    snapshot = await JsonSnapshotStore(directory).load(IDS["snapshot"])
    assert snapshot is not None and snapshot.name == "before-answer"
    fork_id = await rt.fork_snapshot(IDS["snapshot"])
    fork = await rt.get_state(fork_id)
    assert fork.status is RunStatus.WAITING and fork.parent_run_id == IDS["ask"]
    saved = json.loads((directory / f"snapshot_{IDS['snapshot']}.json").read_text())
    assert list(saved) == [
        "snapshot_id",
        "run_id",
        "step_id",
        "name",
        "description",
        "tags",
        "created_at",
        "updated_at",
        "run_state",
    ]
    await rt.store.close()


async def test_a_second_runtime_on_the_same_directory_is_refused(directory: Path) -> None:
    first = _runtime(directory)
    await first.run(wf.count())
    second = _runtime(directory)
    assert (await second.get_state(IDS["ask"])).status is RunStatus.WAITING  # reading is fine
    with pytest.raises(StoreError, match="in use by another runtime"):
        await second.run(wf.count())
    await first.store.close()
    await second.run(wf.count())
    await second.store.close()


async def test_a_ledger_alone_cuts_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    """JsonlLedgerStore without its run store (e.g. with an in-memory run store): a line whose
    append never finished is cut, the whole ones before it stay."""
    ledger = JsonlLedgerStore(tmp_path)
    run = RunState.new(workflow_id="wf", entry_node="a")
    first = StepRecord.start(run=run, node_id="a", effect=None).finish_success({"n": 1})
    await ledger.append(first)
    path = tmp_path / f"ledger_{run.run_id}.jsonl"
    with path.open("a", encoding="utf-8") as file:
        file.write('{"run_id": "torn')  # a writer killed mid-line
    second = StepRecord.start(run=run, node_id="b", effect=None).finish_success({"n": 2})
    await ledger.append(second)
    assert [r["result"] for r in await ledger.list(run.run_id)] == [{"n": 1}, {"n": 2}]
    assert path.read_text(encoding="utf-8").count("\n") == 2


async def test_uncommitted_and_torn_ledger_lines_are_cut(directory: Path) -> None:
    rt = _runtime(directory)
    run_id, state = await rt.run(wf.event())
    await rt.store.close()
    committed = (await _runtime(directory).get_ledger(run_id))[:]
    ledger = directory / f"ledger_{run_id}.jsonl"
    with ledger.open("a", encoding="utf-8") as f:  # a step that died before its commit
        f.write(json.dumps({**committed[-1], "node_id": "ghost"}) + "\n")
        f.write('{"run_id": "torn')
    rt = _runtime(directory)
    assert await rt.get_ledger(run_id) == committed
    state = await rt.resume(workflow=wf.event(), run_id=run_id, wait_key="evt:fixture", payload={})
    assert state.status is RunStatus.COMPLETED
    ledger_now = await rt.get_ledger(run_id)
    assert "ghost" not in ledger.read_text() and "torn" not in ledger.read_text()
    assert verify_ledger_chain(ledger_now)["ok"]
    assert len(ledger.read_text().splitlines()) == len(ledger_now)
    await rt.store.close()


async def test_the_originals_torn_ledger_line_is_left_out(directory: Path) -> None:
    ledger = directory / f"ledger_{IDS['event']}.jsonl"
    with ledger.open("a", encoding="utf-8") as f:
        f.write('{"run_id": "to')
    assert await JsonlLedgerStore(directory).list(IDS["event"]) == _original_records(IDS["event"])
    rt = _runtime(directory)
    await rt.resume(workflow=wf.event(), run_id=IDS["event"], wait_key="evt:fixture", payload={})
    assert verify_ledger_chain(await rt.get_ledger(IDS["event"]))["ok"]
    await rt.store.close()


async def test_run_ids_cannot_name_other_files(tmp_path: Path) -> None:
    runs = JsonFileRunStore(tmp_path)
    for bad in ("../x", "a/b", "", ".hidden", "a..b", "x\x00y", "a\\b"):
        with pytest.raises(InvalidArgumentError):
            await runs.load(bad)
        with pytest.raises(InvalidArgumentError):
            await JsonlLedgerStore(tmp_path).list(bad)
    rt = Runtime(run_store=runs, ledger_store=JsonlLedgerStore(tmp_path))
    with pytest.raises(InvalidArgumentError):
        await rt.start(workflow=wf.count(), run_id="../escape")
    assert not (tmp_path.parent / "run_..").exists()
    await rt.store.close()


async def test_a_damaged_run_file_is_a_clear_error(directory: Path) -> None:
    (directory / f"run_{IDS['event']}.json").write_text('{"run_id": ')
    with pytest.raises(StoreError, match="not valid JSON"):
        await JsonFileRunStore(directory).load(IDS["event"])
    # queries skip it, as the original did
    assert IDS["event"] not in {s.run_id for s in await JsonFileRunStore(directory).list_runs()}


# -- the original reads what we write ------------------------------------------------------------

_ORIGINAL_READER = """
import json, sys
from abstractruntime import Runtime
from abstractruntime.storage import HashChainedLedgerStore, JsonFileRunStore, JsonlLedgerStore
from abstractruntime.storage.ledger_chain import verify_ledger_chain
import original_workflows as wf
d, waiting_id = sys.argv[1], sys.argv[2]
runs, ledger = JsonFileRunStore(d), JsonlLedgerStore(d)
out = {r.run_id: r.status.value for r in runs.list_runs(limit=1000)}
ok = {run_id: verify_ledger_chain(ledger.list(run_id))["ok"] for run_id in out}
rt = Runtime(run_store=runs, ledger_store=HashChainedLedgerStore(ledger))
state = rt.resume(workflow=wf.event(), run_id=waiting_id, wait_key="evt:fixture", payload={"o": 1})
ok[waiting_id] = verify_ledger_chain(ledger.list(waiting_id))["ok"]
print(json.dumps({"status": out, "ok": ok, "resumed": state.status.value}))
"""


async def test_the_original_reads_what_we_write(directory: Path, original_python: str) -> None:
    rt = _runtime(directory)
    child = await rt.get_state(IDS["child"])
    assert child.waiting is not None
    await rt.resume(
        workflow=wf.ask(), run_id=IDS["child"], wait_key=child.waiting.wait_key, payload={}
    )
    ours, _ = await rt.run(wf.event())  # ours, waiting: the original resumes it
    await rt.store.close()
    out = subprocess.run(
        [original_python, "-c", _ORIGINAL_READER, str(directory), ours],
        capture_output=True,
        text=True,
        check=True,
        cwd=directory.parent,
        env={"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin"},
    )
    report = json.loads(out.stdout)
    assert report["status"][IDS["parent"]] == "completed"
    assert report["status"][ours] == "waiting"
    assert report["resumed"] == "completed"
    assert all(report["ok"].values()), report["ok"]
    # and we read what the original wrote after us
    rt = _runtime(directory)
    assert (await rt.get_state(ours)).status is RunStatus.COMPLETED
    assert verify_ledger_chain(await rt.get_ledger(ours))["ok"]
    await rt.store.close()


# -- SIGKILL while committing -------------------------------------------------------------------

KILLS = 8


async def test_sigkill_mid_write_never_corrupts_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    for kill in range(KILLS):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.parity.file_writer_child",
            str(directory),
            str(kill),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        await asyncio.wait_for(child.stdout.readline(), 30)  # it is committing steps now
        await asyncio.sleep(0.05 + 0.037 * kill)
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL

    runs = JsonFileRunStore(directory)
    states = await runs.list_runs(limit=10_000)
    assert len(states) == len(list(directory.glob("run_*.json"))) > KILLS
    rt = Runtime(run_store=runs, ledger_store=JsonlLedgerStore(directory))
    store = rt.store
    assert isinstance(store, FileStore)
    for state in states:
        ledger = await rt.get_ledger(state.run_id)
        report = verify_ledger_chain(ledger)
        assert report["ok"], (state.run_id, report)
        meta = json.loads((directory / f"run_{state.run_id}.json").read_text())["_ledger"]
        assert meta["count"] == len(ledger)
        assert meta["head"] == (ledger[-1]["record_hash"] if ledger else None)
        seen = state.vars.get("seen", [])
        assert [r["node_id"] for r in ledger] == [f"n{i}" for i in range(len(seen))]
    # every interrupted run finishes, each step exactly once
    for state in states:
        if state.status is RunStatus.RUNNING:
            done = await rt.tick(workflow=_counter(), run_id=state.run_id, max_steps=1000)
            assert done.output == {"seen": list(range(COUNTER_STEPS))}
            assert verify_ledger_chain(await rt.get_ledger(state.run_id))["ok"]
    assert not list(directory.glob(".tmp-*"))  # a killed writer's temp files went with the lock
    await store.close()


def test_the_example_of_docs_files_md_runs(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "files.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed True"
