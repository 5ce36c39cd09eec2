from __future__ import annotations

import copy
import itertools

from abstractruntime import StepRecord, StepStatus, verify_ledger_chain
from abstractruntime.core.ledger import chain_records


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
