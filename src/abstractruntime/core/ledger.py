"""The hash chain of a run's ledger, and its verification (pure functions, no I/O).

Each record's ``record_hash`` is the SHA-256 (hex) of the canonical JSON (sorted keys, compact
separators, UTF-8) of the record's dict without ``record_hash`` and ``signature``; that dict holds
``prev_hash``, the previous record's ``record_hash`` (``None`` for the first record). Editing,
removing, inserting or reordering a record therefore breaks the chain at that index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .models import StepRecord
from .serde import encode

_UNHASHED = ("record_hash", "signature")


def compute_record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key not in _UNHASHED}
    return hashlib.sha256(encode(body, root="record").encode("utf-8")).hexdigest()


def chain_records(
    records: Sequence[StepRecord], head: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Link ``records`` onto ``head``: fills their hashes, returns their dicts and the new head."""
    out = []
    for record in records:
        record.prev_hash = head
        record.record_hash = None
        data = record.to_dict()
        head = record.record_hash = data["record_hash"] = compute_record_hash(data)
        out.append(data)
    return out, head


def verify_ledger_chain(records: Iterable[Mapping[str, Any] | StepRecord]) -> dict[str, Any]:
    """Check a run's ledger (oldest first) and report where the chain breaks.

    Returns ``{"ok", "count", "errors", "first_bad_index", "head_hash", "computed_head_hash"}``:
    ``errors`` lists ``{"index", "error", ...}`` entries; ``head_hash`` is the last record's stored
    ``record_hash`` and ``computed_head_hash`` the one recomputed from the content. The records
    are read once, in order, so a generator of any length verifies in constant memory.
    """
    errors: list[dict[str, Any]] = []
    expected_prev: str | None = None
    head_hash: str | None = None
    computed_head: str | None = None
    count = 0
    for index, item in enumerate(records):
        record = item.to_dict() if isinstance(item, StepRecord) else item
        count += 1
        stored_prev = record.get("prev_hash")
        stored_hash = record.get("record_hash")
        if stored_prev != expected_prev:
            errors.append(
                {
                    "index": index,
                    "error": "prev_hash does not match the previous record's hash",
                    "expected": expected_prev,
                    "actual": stored_prev,
                }
            )
        computed = compute_record_hash(record)
        if stored_hash != computed:
            errors.append(
                {
                    "index": index,
                    "error": "record_hash does not match the record's content",
                    "expected": computed,
                    "actual": stored_hash,
                }
            )
        # Chain on the stored hash so one edited record is reported once, at its own index.
        expected_prev = stored_hash
        head_hash = stored_hash
        computed_head = computed
    return {
        "ok": not errors,
        "count": count,
        "errors": errors,
        "first_bad_index": errors[0]["index"] if errors else None,
        "head_hash": head_hash,
        "computed_head_hash": computed_head,
    }
