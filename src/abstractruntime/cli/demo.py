"""``abstractruntime demo [--answer TEXT]``: the README's approval, across process restarts."""

from __future__ import annotations

import argparse

from ..core.ledger import verify_ledger_chain
from ..core.models import RunStatus
from ..core.runtime import Runtime
from ..demo import DEMO_WORKFLOW, WORKFLOW_ID
from ..storage.sql import SqlStore
from .base import EXIT_BROKEN, EXIT_OK, Parser, Subparsers
from .output import emit


async def run_demo(args: argparse.Namespace, store: SqlStore) -> int:
    rt = Runtime(store=store)
    waiting = await store.list_runs(status=RunStatus.WAITING, workflow_id=WORKFLOW_ID, limit=1)
    if not waiting:
        run_id, state = await rt.run(DEMO_WORKFLOW, vars={"employee": "ada", "amount": 420})
        assert state.waiting is not None
        emit(
            args,
            {"run_id": run_id, "status": state.status.value, "prompt": state.waiting.prompt},
            f"Started run {run_id}; it is now {state.status} and has left memory.\n"
            f"  Question: {state.waiting.prompt} {state.waiting.choices}\n"
            f"Answer it from a new process: abstractruntime demo --answer yes",
        )
        return EXIT_OK
    state = waiting[0]
    assert state.waiting is not None
    if args.answer is None:
        emit(
            args,
            {"run_id": state.run_id, "status": state.status.value, "prompt": state.waiting.prompt},
            f"Run {state.run_id} is still waiting: {state.waiting.prompt}\n"
            "Answer it with: abstractruntime demo --answer yes",
        )
        return EXIT_OK
    state = await rt.resume(
        workflow=DEMO_WORKFLOW,
        run_id=state.run_id,
        wait_key=state.waiting.wait_key,
        payload={"answer": args.answer},
    )
    ledger = await rt.get_ledger(state.run_id)
    report = verify_ledger_chain(ledger)
    lines = [f"Run {state.run_id} resumed in this new process: {state.status}, {state.output}"]
    lines.append(f"{'#':>3}  {'node':<8} {'status':<10} {'record_hash':<16} prev_hash")
    for index, record in enumerate(ledger):
        lines.append(
            f"{index:>3}  {record['node_id']:<8} {record['status']:<10} "
            f"{record['record_hash'][:16]:<16} {(record['prev_hash'] or '-')[:16]}"
        )
    verdict = "verified" if report["ok"] else f"BROKEN at index {report['first_bad_index']}"
    lines.append(f"Ledger chain {verdict}: {report['count']} records, head {report['head_hash']}")
    emit(
        args,
        {"run_id": state.run_id, "state": state.to_dict(), "ledger": ledger, "verify": report},
        "\n".join(lines),
    )
    return EXIT_OK if report["ok"] else EXIT_BROKEN


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    demo = subparsers.add_parser(
        "demo", help="an approval that waits for you, across process restarts", parents=[common]
    )
    demo.set_defaults(handler=run_demo)
    demo.add_argument("--answer", help="answer the waiting approval (e.g. yes or no)")
