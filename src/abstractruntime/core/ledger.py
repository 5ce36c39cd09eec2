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

from .kernel import check_size
from .models import StepRecord
from .serde import encode

_UNHASHED = ("record_hash", "signature")


def compute_record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key not in _UNHASHED}
    return _sha256(encode(body, root="record"))


def chain_records(
    records: Sequence[StepRecord], head: str | None, max_bytes: int | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Link ``records`` onto ``head``: fills their hashes, returns their dicts and the new head.

    A record over ``max_bytes`` (``RuntimeConfig.max_record_bytes``) is a ``SizeLimitError``.
    """
    out = []
    for record in records:
        record.prev_hash = head
        record.record_hash = None
        data = record.to_dict()
        body = {key: value for key, value in data.items() if key not in _UNHASHED}
        text = encode(body, root="record")
        what = f"the ledger record of node {record.node_id!r}"
        check_size(text, what, "max_record_bytes", max_bytes)
        head = record.record_hash = data["record_hash"] = _sha256(text)
        out.append(data)
    return out, head


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LedgerVerifier:
    """Checks one run's ledger a record at a time, in constant memory.

    Feed it the records oldest first with ``add``; ``report()`` says where the chain breaks.
    ``verify_ledger_chain`` is this over a whole sequence; ``abstractruntime.provenance`` feeds
    it records streamed from a store, so a ledger of any length verifies without being loaded.

    Args:
        max_errors: Keep at most this many error entries (the others are only counted in
            ``errors_omitted``); None keeps them all. ``first_bad_index`` is exact either way.
    """

    def __init__(self, *, max_errors: int | None = None) -> None:
        self.count = 0
        self.errors: list[dict[str, Any]] = []
        self.errors_omitted = 0
        self.first_bad_index: int | None = None
        #: The last record's stored ``record_hash``, and the one recomputed from its content.
        self.head_hash: str | None = None
        self.computed_head_hash: str | None = None
        self._max_errors = max_errors

    @property
    def ok(self) -> bool:
        return self.first_bad_index is None

    def add(self, item: Mapping[str, Any] | StepRecord) -> None:
        """Check the next record against its content and the one before it."""
        record = item.to_dict() if isinstance(item, StepRecord) else item
        index = self.count
        self.count += 1
        stored_prev = record.get("prev_hash")
        stored_hash = record.get("record_hash")
        if stored_prev != self.head_hash:
            self._error(
                index,
                "prev_hash does not match the previous record's hash",
                expected=self.head_hash,
                actual=stored_prev,
            )
        computed = compute_record_hash(record)
        if stored_hash != computed:
            self._error(
                index,
                "record_hash does not match the record's content",
                expected=computed,
                actual=stored_hash,
            )
        # Chain on the stored hash so one edited record is reported once, at its own index.
        self.head_hash = stored_hash
        self.computed_head_hash = computed

    def expect_head(self, count: int, head: str | None) -> None:
        """After the last record: compare with the length and head hash the run recorded.

        The chain cannot tell a ledger whose last records were deleted from a shorter one; the
        run's own record of its ledger can (unless it was edited too).
        """
        if count != self.count:
            missing = count > self.count
            self._error(
                min(count, self.count),
                (
                    f"the run records {count} ledger entries but {self.count} are stored: "
                    + ("records are missing at the end" if missing else "records were added")
                ),
                expected=count,
                actual=self.count,
            )
        elif head != self.head_hash:
            self._error(
                max(count - 1, 0),
                "the last record's hash is not the ledger head the run recorded",
                expected=head,
                actual=self.head_hash,
            )

    def _error(self, index: int, error: str, *, expected: Any, actual: Any) -> None:
        if self.first_bad_index is None or index < self.first_bad_index:
            self.first_bad_index = index
        if self._max_errors is not None and len(self.errors) >= self._max_errors:
            self.errors_omitted += 1
            return
        self.errors.append({"index": index, "error": error, "expected": expected, "actual": actual})

    def report(self) -> dict[str, Any]:
        """``{"ok", "count", "errors", "first_bad_index", "head_hash", "computed_head_hash"}``."""
        return {
            "ok": self.ok,
            "count": self.count,
            "errors": list(self.errors),
            "first_bad_index": self.first_bad_index,
            "head_hash": self.head_hash,
            "computed_head_hash": self.computed_head_hash,
        }


def verify_ledger_chain(records: Iterable[Mapping[str, Any] | StepRecord]) -> dict[str, Any]:
    """Check a run's ledger (oldest first) and report where the chain breaks.

    Returns ``{"ok", "count", "errors", "first_bad_index", "head_hash", "computed_head_hash"}``:
    ``errors`` lists ``{"index", "error", "expected", "actual"}`` entries; ``head_hash`` is the
    last record's stored ``record_hash`` and ``computed_head_hash`` the one recomputed from the
    content. The records are read once, in order, so a generator of any length verifies in
    constant memory (apart from the errors found).
    """
    verifier = LedgerVerifier()
    for record in records:
        verifier.add(record)
    return verifier.report()
