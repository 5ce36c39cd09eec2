"""Each named crash point kills a real process there; a new process then finishes the run, and
what the effect did matches docs/effects.md: run twice only when the kill fell between the
effect and its commit, committed once always."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from abstractruntime import RunStatus, verify_ledger_chain
from abstractruntime.core import crashpoints
from abstractruntime.storage import SqlStore
from tests.chaos.point_child import EFFECTFUL, LEASE_S, runtime
from tests.helpers import tick_when_unleased

ROOT = Path(__file__).resolve().parents[2]

# crash spec -> (ledger records committed when it struck, effect executions in all)
EXPECTED = {
    "after_claim@1": (0, 1),
    "after_handler@1": (0, 1),
    "in_effect@1": (0, 2),  # the effect ran, its result was not recorded: it runs again
    "in_group_commit@1": (0, 1),  # the claim's transaction: nothing ran yet
    "in_group_commit@2": (0, 2),  # the effect's step: its COMMIT never happened
    "after_commit@1": (1, 1),  # the effect's step is committed: never again
}


CASES = [pytest.param(spec, "sqlite", id=f"sqlite-{spec}") for spec in EXPECTED] + [
    pytest.param(spec, "postgres", id=f"postgres-{spec}", marks=pytest.mark.postgres)
    for spec in EXPECTED
    if not spec.startswith("in_group_commit")  # SQLite's writer thread only
]


@pytest.mark.parametrize(("spec", "backend"), CASES)
async def test_a_kill_at_each_point_loses_nothing_committed(
    spec: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))
    effects = tmp_path / "effects.log"
    kills = tmp_path / "kills.log"
    async with SqlStore(url) as store:
        run_id = await runtime(store, str(effects)).start(workflow=EFFECTFUL)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.chaos.point_child",
        url,
        run_id,
        str(effects),
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            crashpoints.ENV: spec,
            crashpoints.LOG_ENV: str(kills),
        },
    )
    assert await asyncio.wait_for(child.wait(), 60) == -signal.SIGKILL
    assert kills.read_text().split()[0] == spec.partition("@")[0]

    committed, executions = EXPECTED[spec]
    async with SqlStore(url) as store:
        rt = runtime(store, str(effects))
        assert len(await rt.get_ledger(run_id)) == committed
        # The dead process's lease blocks the run until it expires.
        state = await tick_when_unleased(rt, EFFECTFUL, run_id, timeout=LEASE_S + 10)
        assert state.status is RunStatus.COMPLETED
        assert state.output == {"receipt": {"charged": 42}}
        ledger = await rt.get_ledger(run_id)
    assert verify_ledger_chain(ledger)["ok"]
    assert [(r["node_id"], r["status"]) for r in ledger] == [
        ("call", "completed"),
        ("done", "completed"),
    ]
    assert effects.read_text().split() == [run_id] * executions


def test_bad_specs_are_refused_naming_the_points() -> None:
    with pytest.raises(ValueError, match="after_claim, after_handler"):
        crashpoints._parse("before_lunch=0.5")
    with pytest.raises(ValueError, match="no number"):
        crashpoints._parse("after_commit@soon")
    assert crashpoints._parse(" after_commit@3, in_effect=0.25 ") == {
        "after_commit": (0.0, 3),
        "in_effect": (0.25, 0),
    }
    assert crashpoints._parse("") == {}
