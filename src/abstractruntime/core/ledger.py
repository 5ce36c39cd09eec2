"""The hash chain of a run's ledger, and its verification (pure functions, no I/O).

Each record's ``record_hash`` is the SHA-256 (hex) of the canonical JSON (sorted keys, compact
separators, UTF-8) of the record's dict without ``record_hash`` and ``signature``; that dict holds
``prev_hash``, the previous record's ``record_hash`` (``None`` for the first record). Editing,
removing, inserting or reordering a record therefore breaks the chain at that index.

A store may also keep some fields of a record in columns of their own, to index them (the SQL
ledger's ``node_id``, ``status``, ``idempotency_key``...). Queries read those columns, not the
hashed record, so a verifier given them (a ``LedgerRow``) checks that they say what the record
says: a forged column is a ``column_mismatch`` even though the chain itself is intact.

Every error entry has a ``type`` (the original AbstractRuntime's codes, and ours):

=========================  =====================================================================
``prev_hash_mismatch``     ``prev_hash`` is not the previous record's hash
                           (``expected_prev_hash``, ``actual_prev_hash``)
``missing_record_hash``    the record has no ``record_hash``
``record_hash_mismatch``   ``record_hash`` is not the hash of the record's content
                           (``stored``, ``computed``)
``column_mismatch``        a column beside the record disagrees with it (``column``, ``stored``:
                           the column's value, ``hashed``: the record's)
``ledger_count_mismatch``  the run records another number of ledger entries than are stored
``ledger_head_mismatch``   the last record's hash is not the head the run recorded
=========================  =====================================================================

and ``index``, ``error`` (a sentence), ``expected`` and ``actual``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .kernel import check_size
from .models import StepRecord
from .serde import encode, iso, to_utc

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


@dataclass(frozen=True)
class LedgerRow:
    """A stored ledger record with the columns its store keeps beside it (name: value)."""

    record: dict[str, Any]
    columns: Mapping[str, Any] = field(default_factory=dict)


def _comparable(value: Any) -> Any:
    """A column's or a record's value in one form: timestamps as ISO UTC text."""
    if isinstance(value, datetime):
        return iso(to_utc(value))
    return value


def _hashed_value(record: Mapping[str, Any], index: int, column: str) -> Any:
    """What the hashed record says a column should hold (``index``: its chain position)."""
    if column == "seq":
        return index
    if column == "created_at":
        when = record.get("ended_at") or record.get("started_at")
        try:
            return iso(to_utc(when)) if when is not None else None
        except (TypeError, ValueError):
            return when
    return record.get(column)


def column_mismatches(
    record: Mapping[str, Any], index: int, columns: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """``(column, stored, hashed)`` for every column that disagrees with the record at
    position ``index``: ``seq`` is the position, ``created_at`` the record's end (else start)
    time, any other column the record's field of that name."""
    out = []
    for name, stored in columns.items():
        hashed = _hashed_value(record, index, name)
        if _comparable(stored) != _comparable(hashed):
            out.append((name, _comparable(stored), _comparable(hashed)))
    return out


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

    def add(
        self,
        item: Mapping[str, Any] | StepRecord | LedgerRow,
        columns: Mapping[str, Any] | None = None,
    ) -> None:
        """Check the next record against its content, the one before it and, given a
        ``LedgerRow`` (or ``columns``), the columns its store keeps beside it."""
        record: Mapping[str, Any]
        if isinstance(item, LedgerRow):
            record, columns = item.record, item.columns
        else:
            record = item.to_dict() if isinstance(item, StepRecord) else item
        index = self.count
        self.count += 1
        stored_prev = record.get("prev_hash")
        stored_hash = record.get("record_hash")
        if stored_prev != self.head_hash:
            self._error(
                index,
                "prev_hash_mismatch",
                "prev_hash does not match the previous record's hash",
                expected=self.head_hash,
                actual=stored_prev,
                expected_prev_hash=self.head_hash,
                actual_prev_hash=stored_prev,
            )
        computed = compute_record_hash(record)
        if not stored_hash:
            self._error(
                index,
                "missing_record_hash",
                "the record has no record_hash",
                expected=computed,
                actual=stored_hash,
            )
        elif stored_hash != computed:
            self._error(
                index,
                "record_hash_mismatch",
                "record_hash does not match the record's content",
                expected=computed,
                actual=stored_hash,
                stored=stored_hash,
                computed=computed,
            )
        for column, stored, hashed in column_mismatches(record, index, columns or {}):
            self._error(
                index,
                "column_mismatch",
                f"column {column!r} holds {stored!r} but the hashed record says {hashed!r}",
                expected=hashed,
                actual=stored,
                column=column,
                stored=stored,
                hashed=hashed,
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
                "ledger_count_mismatch",
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
                "ledger_head_mismatch",
                "the last record's hash is not the ledger head the run recorded",
                expected=head,
                actual=self.head_hash,
            )

    def _error(
        self, index: int, kind: str, error: str, *, expected: Any, actual: Any, **extra: Any
    ) -> None:
        if self.first_bad_index is None or index < self.first_bad_index:
            self.first_bad_index = index
        if self._max_errors is not None and len(self.errors) >= self._max_errors:
            self.errors_omitted += 1
            return
        entry = {"index": index, "type": kind, "error": error, "expected": expected}
        self.errors.append({**entry, "actual": actual, **extra})

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


def verify_ledger_chain(
    records: Iterable[Mapping[str, Any] | StepRecord | LedgerRow],
) -> dict[str, Any]:
    """Check a run's ledger (oldest first) and report where the chain breaks.

    Returns ``{"ok", "count", "errors", "first_bad_index", "head_hash", "computed_head_hash"}``:
    ``errors`` lists ``{"index", "type", "error", "expected", "actual", ...}`` entries (the
    types and their extra keys are in the module's docstring); ``head_hash`` is the
    last record's stored ``record_hash`` and ``computed_head_hash`` the one recomputed from the
    content. The records are read once, in order, so a generator of any length verifies in
    constant memory (apart from the errors found).
    """
    verifier = LedgerVerifier()
    for record in records:
        verifier.add(record)
    return verifier.report()
