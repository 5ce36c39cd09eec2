"""Provenance tooling: verify the hash chains of ledgers straight from a store, streaming.

    report = await verify_run(store, run_id)
    async for report in verify_all(store):      # one report per run, in run id order
        if not report["ok"]:
            print(report["run_id"], report["first_bad_index"], report["errors"][0]["error"])

Records are streamed from the store (``Store.scan_ledgers``: one read, a batch of rows at a
time) into a ``LedgerVerifier``, so memory stays flat however long a ledger is and however many
runs the database holds. Next to the chain itself, each ledger is checked against the length and
head hash its run recorded when the last step was committed, which catches records deleted from
the end of a ledger (the one edit the chain alone cannot see). A store that keeps some fields of
a record in indexed columns beside it (``SqlStore``: ``node_id``, ``status``,
``idempotency_key``...) streams them too (``scan_ledger_rows``), and a column that disagrees with
its hashed record is an error (``column_mismatch``): queries read the columns, so a forged one
must not pass verification.

A report is that of ``verify_ledger_chain`` (``ok``, ``count``, ``errors``, ``first_bad_index``,
``head_hash``, ``computed_head_hash``) plus ``run_id`` and ``errors_omitted`` (errors beyond
``max_errors`` are counted, not listed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol, runtime_checkable

from .core.ledger import LedgerRow, LedgerVerifier
from .core.ports import LedgerHead, Store
from .errors import RunNotFoundError

#: Error entries kept per run by default: enough to read, bounded for a ledger that is all bad.
DEFAULT_MAX_ERRORS = 100
#: ``progress`` is called after every this many records.
PROGRESS_EVERY = 1000

#: Called with the number of records verified so far.
ProgressCallback = Callable[[int], None]


@runtime_checkable
class IndexedLedgers(Protocol):
    """A store whose ledger keeps some fields of each record in columns of their own."""

    def scan_ledger_rows(
        self, run_id: str | None = None
    ) -> AsyncGenerator[LedgerHead | LedgerRow, None]:
        """``Store.scan_ledgers``, each record with its columns (a ``LedgerRow``)."""
        ...


async def verify_run(
    store: Store,
    run_id: str,
    *,
    max_errors: int | None = DEFAULT_MAX_ERRORS,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Verify one run's ledger; ``RunNotFoundError`` (a ``KeyError``) for an unknown run.

    ``progress``, if given, is called with the number of records verified so far, every
    ``PROGRESS_EVERY`` records.
    """
    async with contextlib.aclosing(_verify(store, run_id, max_errors, progress)) as reports:
        async for report in reports:
            return report
    raise RunNotFoundError(run_id)  # pragma: no cover - the store raises it first


def verify_all(
    store: Store,
    *,
    max_errors: int | None = DEFAULT_MAX_ERRORS,
    progress: ProgressCallback | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Verify every run's ledger: an async iterator of one report per run, in run id order.

    Use it with ``async for``; stopping early is fine (wrap it in ``contextlib.aclosing`` to
    give the database connection back at once). ``progress``, if given, is called with the
    number of records verified so far (all runs), every ``PROGRESS_EVERY`` records.
    """
    return _verify(store, None, max_errors, progress)


async def _verify(
    store: Store,
    run_id: str | None,
    max_errors: int | None,
    progress: ProgressCallback | None,
) -> AsyncGenerator[dict[str, Any], None]:
    head: LedgerHead | None = None
    verifier = LedgerVerifier(max_errors=max_errors)
    records = 0
    scan: AsyncGenerator[LedgerHead | LedgerRow | dict[str, Any], None] = (
        store.scan_ledger_rows(run_id)
        if isinstance(store, IndexedLedgers)
        else store.scan_ledgers(run_id)
    )
    async with contextlib.aclosing(scan) as items:
        async for item in items:
            if isinstance(item, LedgerHead):
                if head is not None:
                    yield _report(head, verifier)
                head, verifier = item, LedgerVerifier(max_errors=max_errors)
            else:
                verifier.add(item)
                records += 1
                if progress is not None and records % PROGRESS_EVERY == 0:
                    progress(records)
    if head is not None:
        yield _report(head, verifier)


def _report(head: LedgerHead, verifier: LedgerVerifier) -> dict[str, Any]:
    verifier.expect_head(head.count, head.head)
    return {"run_id": head.run_id, **verifier.report(), "errors_omitted": verifier.errors_omitted}
