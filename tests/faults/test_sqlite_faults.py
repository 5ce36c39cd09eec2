"""SQLite under faults: two processes on one file, a full disk, a read-only filesystem.

The disk faults use a small tmpfs mounted by the test (root with CAP_SYS_ADMIN, as on this
project's machines); elsewhere those tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    StepPlan,
    StoreError,
    WorkflowSpec,
    verify_ledger_chain,
)
from abstractruntime.storage import SqlStore
from tests.helpers import tick_when_unleased
from tests.workflows import APPROVAL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmpfs() -> Iterator[Callable[..., Path]]:
    """``mount(size)``: a fresh tmpfs of that size; ``remount`` it with other options later."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = Path(tempfile.mkdtemp(prefix="abstractruntime-tmpfs-"))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def grower(chunk: int) -> WorkflowSpec:
    """Each step's effect returns ``chunk`` characters that the run keeps: the state grows."""

    def node(run: RunState, ctx: Any) -> StepPlan:
        n = len(run.vars.get("chunks", []))
        if n == 40:
            return StepPlan(node_id="grow", complete_output={"chunks": n})
        return StepPlan(
            node_id="grow",
            effect=Effect(EffectType.TOOL_CALLS, {"n": n}, result_key="last"),
            next_node="keep",
        )

    def keep(run: RunState, ctx: Any) -> StepPlan:
        run.vars.setdefault("chunks", []).append(run.vars.pop("last"))
        return StepPlan(node_id="keep", next_node="grow")

    return WorkflowSpec("grower", "grow", {"grow": node, "keep": keep})


def blob(chunk: int) -> Any:
    def effect(run: RunState, eff: Effect, next_node: str | None) -> EffectOutcome:
        return EffectOutcome.completed(str(eff.payload["n"]) * chunk)

    return effect


async def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmpfs: Any) -> None:
    where = tmpfs("1m")
    url = f"sqlite+aiosqlite:///{where / 'runs.db'}"
    wf = grower(40_000)
    handlers = {EffectType.TOOL_CALLS: blob(40_000)}
    async with SqlStore(url) as store:
        # A short lease: the failed commit's release fails too (the disk is full), so the run
        # stays claimed by this runtime until its lease expires.
        rt = Runtime(store=store, effect_handlers=handlers, config=RuntimeConfig(lease_s=1.0))
        run_id = await rt.start(workflow=wf)
        with pytest.raises(StoreError, match="full") as caught:
            await rt.tick(workflow=wf, run_id=run_id)
        assert url in str(caught.value) or "runs.db" in str(caught.value)
        kept = await rt.get_state(run_id)  # the last committed state is still there
        assert kept.status is RunStatus.RUNNING and len(kept.vars.get("chunks", [])) > 0
        assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]
    remount(where, "size=16m")  # space again: the run goes on from its last commit
    async with SqlStore(url) as store:
        rt = Runtime(store=store, effect_handlers=handlers)
        done = await tick_when_unleased(rt, wf, run_id, interval=0.1, max_steps=1000)
        assert done.status is RunStatus.COMPLETED and done.output == {"chunks": 40}
        ledger = await rt.get_ledger(run_id)
        assert verify_ledger_chain(ledger)["ok"]
        assert [r["node_id"] for r in ledger][:4] == ["grow", "keep", "grow", "keep"]


async def test_a_read_only_filesystem_keeps_the_runs_readable(tmpfs: Any) -> None:
    where = tmpfs("4m")
    url = f"sqlite+aiosqlite:///{where / 'runs.db'}"
    async with SqlStore(url) as store:
        run_id, state = await Runtime(store=store).run(APPROVAL)
    assert state.waiting is not None
    remount(where, "ro")
    async with SqlStore(url) as store:
        assert store.read_only
        rt = Runtime(store=store)
        assert (await rt.get_state(run_id)).status is RunStatus.WAITING
        assert verify_ledger_chain(await rt.get_ledger(run_id))["ok"]
        with pytest.raises(StoreError, match="readonly database"):
            await rt.resume(
                workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload={}
            )
    remount(where, "rw")
    async with SqlStore(url) as store:
        rt = Runtime(store=store)
        done = await rt.resume(
            workflow=APPROVAL, run_id=run_id, wait_key=state.waiting.wait_key, payload={"ok": 1}
        )
        assert done.status is RunStatus.COMPLETED


async def test_two_processes_on_one_file_never_see_database_is_locked(sqlite_url: str) -> None:
    async with SqlStore(sqlite_url) as store:
        await store.check()  # create and migrate the file first
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.faults.sqlite_child",
            sqlite_url,
            "150",
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    async with SqlStore(sqlite_url) as store:  # a third process's worth of reads meanwhile
        while any(child.returncode is None for child in children):
            await store.list_runs(limit=50)
            await asyncio.sleep(0.01)
    for child in children:
        out, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        assert json.loads(out) == ["completed"]
        assert b"locked" not in err
    async with SqlStore(sqlite_url) as store:
        assert len(await store.list_runs(status=RunStatus.COMPLETED, limit=1000)) == 300
