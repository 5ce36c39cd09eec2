"""Races (issue 7.5): several processes resume, emit and cancel the same runs at once.

Five child processes (``race_child.py``) on one SQLite file or one Postgres database: two resume
every run, one emits every run's event, two cancel every other run (in opposite orders). They
go through the runs in rounds of a few, each round started together on a file barrier, so that
they all fall on the same runs at the same moment. Read back from the database afterwards:

- each run got exactly one effect: one resume record (its payload written once, by the one child
  told it succeeded) or one cancel record, never both, and nothing after a cancel;
- every loser got a clear error of the package's tree naming the run;
- no child crashed, and every ledger chain verifies.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from abstractruntime import (
    ConcurrentUpdateError,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    verify_ledger_chain,
)
from abstractruntime.storage import SqlStore
from tests.helpers import eventually
from tests.helpers.state import own_vars
from tests.reliability.race_child import RACE
from tests.workflows import waiter

ROOT = Path(__file__).resolve().parents[2]
RUNS = 24
#: Runs per round: every child starts each round at the same moment, on the same runs.
PER_ROUND = 3
RESUMERS = ("resume-a", "resume-b")
EMITTER = "emit-c"
CANCELLERS = ("cancel-d", "cancel-e")
#: What a loser may be told: another caller resumed or cancelled the run first, or holds it.
LOST = {"RunNotWaitingError", "RunLeasedError", "ConcurrentUpdateError"}

pytestmark = pytest.mark.slow


def spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.race_child", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_concurrent_resume_emit_and_cancel_from_several_processes(
    db_url: str, tmp_path: Path
) -> None:
    async with SqlStore(db_url) as store:
        if db_url.startswith("sqlite"):
            await store.upgrade()
        rt = Runtime(store=store)
        runs: list[tuple[str, str]] = []
        for i in range(RUNS):
            key = f"race:{i}:'%_;--"
            run_id, state = await rt.run(RACE, vars={"key": key})
            assert state.status is RunStatus.WAITING
            runs.append((run_id, key))
        contested = {run_id for i, (run_id, _) in enumerate(runs) if i % 2 == 0}

        barrier = tmp_path / "barrier"
        barrier.mkdir()
        rounds = [runs[i : i + PER_ROUND] for i in range(0, RUNS, PER_ROUND)]
        plan = {
            RESUMERS[0]: ("resume", rounds),
            RESUMERS[1]: ("resume", rounds),
            EMITTER: ("emit", rounds),
            CANCELLERS[0]: ("cancel", [[r for r in rnd if r[0] in contested] for rnd in rounds]),
            CANCELLERS[1]: (
                "cancel",
                [[r for r in rnd[::-1] if r[0] in contested] for rnd in rounds],
            ),
        }
        children = {
            name: spawn(
                {
                    "url": db_url,
                    "name": name,
                    "role": role,
                    "peers": list(plan),
                    "rounds": order,
                    "barrier": str(barrier),
                }
            )
            for name, (role, order) in plan.items()
        }
        try:
            await eventually(
                lambda: all(c.poll() is not None for c in children.values()),
                "a child never finished",
                timeout=60,
            )
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.kill()
        reports: dict[str, dict[str, Any]] = {}
        for name, child in children.items():
            out, err = child.communicate()
            assert child.returncode == 0 and "Traceback" not in err, (name, err)
            reports[name] = json.loads(out)["results"]

        effects: Counter[str] = Counter()
        for run_id, key in runs:
            state = await rt.get_state(run_id)
            ledger = await rt.get_ledger(run_id)
            assert verify_ledger_chain(ledger)["ok"], run_id
            assert ledger[0]["status"] == "waiting"
            # Exactly one effect after the wait, and nothing after a cancel.
            assert len(ledger) == 2, (run_id, ledger)
            last = ledger[1]
            outcomes = {name: reports[name][run_id] for name in (*RESUMERS, EMITTER)}
            told = {name: o for name, o in outcomes.items() if "ok" in o}
            for name, outcome in outcomes.items():
                if "error" in outcome:  # a loser: told clearly, about this run
                    assert outcome["error"] in LOST, (name, outcome)
                    assert run_id in outcome["message"], (name, outcome)
            if last["status"] == "completed":  # resumed once, by the one told so
                winner = last["result"]["by"]
                assert told == {winner: {"ok": "completed"}}, (run_id, told)
                assert state.status is RunStatus.COMPLETED
                assert state.vars["event"] == {"by": winner} and state.output == {"by": winner}
                effects["resumed"] += 1
            else:  # cancelled, before anyone resumed it
                assert run_id in contested
                assert last["status"] == "failed" and last["result"]["cancelled"] is True
                assert state.status is RunStatus.CANCELLED and told == {}
                effects["cancelled"] += 1
            # Every resumer that did not win was told why (emit_event skips lost runs).
            for name in RESUMERS:
                assert "error" in outcomes[name] or name in told, (name, outcomes[name])
            if run_id in contested:
                for name in CANCELLERS:  # both cancellers were answered with the final state
                    assert reports[name][run_id] == {"ok": state.status.value}, (name, run_id)
            else:
                assert state.status is RunStatus.COMPLETED
            assert await store.list_runs(wait_key=key) == []
        assert effects["resumed"] + effects["cancelled"] == RUNS
        assert not await store.list_runs(status=RunStatus.WAITING)


async def test_a_resume_that_landed_is_not_reported_as_lost(store_factory: Any) -> None:
    gate = asyncio.Event()

    async def after(run: RunState, ctx: Any) -> StepPlan:
        await gate.wait()
        return StepPlan(node_id="done", complete_output=own_vars(run))

    wf = waiter("evt:landed")
    wf.nodes["done"] = after
    async with Runtime(store=store_factory()) as a, Runtime(store=store_factory()) as b:
        run_id, _ = await a.run(wf)
        resume = asyncio.create_task(
            a.resume(workflow=wf, run_id=run_id, wait_key="evt:landed", payload={"by": "a"})
        )

        async def resumed() -> bool:
            return len(await a.get_ledger(run_id)) == 2

        await eventually(resumed, "a's resume never committed its wait's end")
        cancelled = await b.cancel_run(run_id, reason="meanwhile")
        assert cancelled.status is RunStatus.CANCELLED
        gate.set()
        try:
            state = await resume
        except ConcurrentUpdateError as exc:
            ledger = await a.get_ledger(run_id)
            assert ledger[1]["result"] != {"by": "a"}, f"the resume landed, yet: {exc}"
            raise
        assert state.status is RunStatus.CANCELLED
        ledger = await a.get_ledger(run_id)
        assert [r["status"] for r in ledger] == ["waiting", "completed", "failed"]
        assert ledger[1]["result"] == {"by": "a"}
