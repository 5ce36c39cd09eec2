from __future__ import annotations

import copy
import itertools
from datetime import datetime

from abstractruntime import StepRecord, StepStatus, verify_ledger_chain
from abstractruntime.core.ledger import LedgerRow, LedgerVerifier, chain_records


def _chain(n: int = 5) -> list[dict]:
    records = [
        StepRecord(
            run_id="r",
            step_id=f"s{i}",
            node_id=f"n{i}",
            status=StepStatus.COMPLETED,
            result={"i": i},
        )
        for i in range(n)
    ]
    dicts, head = chain_records(records, None)
    assert head == dicts[-1]["record_hash"]
    return dicts


def test_intact_chain_verifies() -> None:
    records = _chain()
    report = verify_ledger_chain(records)
    assert report["ok"] is True
    assert report["count"] == 5
    assert report["errors"] == []
    assert report["first_bad_index"] is None
    assert report["head_hash"] == report["computed_head_hash"] == records[-1]["record_hash"]
    assert set(report) == {
        "ok",
        "count",
        "errors",
        "first_bad_index",
        "head_hash",
        "computed_head_hash",
    }


def test_first_record_has_no_prev_hash_and_each_links_to_the_previous() -> None:
    records = _chain()
    assert records[0]["prev_hash"] is None
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["record_hash"]


def test_edited_record_is_reported_at_its_index() -> None:
    records = _chain()
    records[2]["result"] = {"i": 999}
    report = verify_ledger_chain(records)
    assert report["ok"] is False
    assert report["first_bad_index"] == 2
    assert [e["index"] for e in report["errors"]] == [2]
    assert report["head_hash"] == records[-1]["record_hash"]


def test_edited_record_with_recomputed_hash_breaks_the_next_link() -> None:
    from abstractruntime.core.ledger import compute_record_hash

    records = _chain()
    records[1]["result"] = {"i": -1}
    records[1]["record_hash"] = compute_record_hash(records[1])
    report = verify_ledger_chain(records)
    assert report["first_bad_index"] == 2


def test_removed_inserted_and_reordered_records_are_detected() -> None:
    records = _chain()
    removed = records[:2] + records[3:]
    assert verify_ledger_chain(removed)["first_bad_index"] == 2

    inserted = copy.deepcopy(records)
    inserted.insert(3, copy.deepcopy(records[0]))
    assert verify_ledger_chain(inserted)["first_bad_index"] == 3

    reordered = copy.deepcopy(records)
    reordered[1], reordered[2] = reordered[2], reordered[1]
    assert verify_ledger_chain(reordered)["first_bad_index"] == 1


def test_accepts_step_records_and_generators() -> None:
    records = [StepRecord.from_dict(d) for d in _chain(3)]
    assert verify_ledger_chain(r for r in records)["ok"] is True
    assert verify_ledger_chain([])["ok"] is True


# -- error types: the original's codes and keys, next to ours ------------------------------------


def test_a_broken_link_is_a_prev_hash_mismatch_with_the_original_keys() -> None:
    records = _chain()
    records[3]["prev_hash"] = "0" * 64
    errors = verify_ledger_chain(records)["errors"]
    link = next(e for e in errors if e["type"] == "prev_hash_mismatch")
    assert link["index"] == 3
    assert link["expected_prev_hash"] == link["expected"] == records[2]["record_hash"]
    assert link["actual_prev_hash"] == link["actual"] == "0" * 64
    assert link["error"] == "prev_hash does not match the previous record's hash"


def test_an_edited_record_is_a_record_hash_mismatch_with_the_original_keys() -> None:
    records = _chain()
    records[1]["result"] = {"i": 999}
    [error] = verify_ledger_chain(records)["errors"]
    assert error["type"] == "record_hash_mismatch" and error["index"] == 1
    assert error["stored"] == error["actual"] == records[1]["record_hash"]
    assert error["computed"] == error["expected"] != records[1]["record_hash"]


def test_a_record_without_a_hash_is_a_missing_record_hash() -> None:
    """The original's ``test_verify_reports_missing_hashes``: a ledger written without the
    chain (no ``record_hash``) does not verify."""
    plain = StepRecord(run_id="r", step_id="s", node_id="n", status=StepStatus.COMPLETED)
    report = verify_ledger_chain([plain.to_dict()])
    assert report["ok"] is False
    assert any(e["type"] == "missing_record_hash" for e in report["errors"])
    assert report["errors"][0]["index"] == 0 and report["errors"][0]["actual"] is None


def test_columns_beside_a_record_must_agree_with_it() -> None:
    records = _chain(3)
    rows = [
        LedgerRow(
            r,
            {
                "seq": i,
                "node_id": r["node_id"],
                "status": r["status"],
                "created_at": datetime.fromisoformat(r["ended_at"] or r["started_at"]),
            },
        )
        for i, r in enumerate(records)
    ]
    assert verify_ledger_chain(rows)["ok"]
    rows[1] = LedgerRow(records[1], {**rows[1].columns, "node_id": "forged", "seq": 7})
    report = verify_ledger_chain(rows)
    assert report["first_bad_index"] == 1
    assert [(e["type"], e["column"], e["stored"], e["hashed"]) for e in report["errors"]] == [
        ("column_mismatch", "seq", 7, 1),
        ("column_mismatch", "node_id", "forged", "n1"),
    ]
    assert report["head_hash"] == report["computed_head_hash"]  # the chain itself is intact


def test_every_error_has_a_type() -> None:
    verifier = LedgerVerifier()
    for record in _chain(3):
        verifier.add(record)
    verifier.expect_head(4, None)
    verifier.expect_head(3, "x" * 64)
    assert [e["type"] for e in verifier.report()["errors"]] == [
        "ledger_count_mismatch",
        "ledger_head_mismatch",
    ]
