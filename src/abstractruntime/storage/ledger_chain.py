"""``HashChainedLedgerStore``: a ``LedgerStore`` decorator that hash-chains what it appends.

The original 0.2's wrapper, made async: each appended record gets ``prev_hash`` (the run's last
``record_hash``, read once from ``inner.list`` per run and then kept) and its ``record_hash``,
computed by ``core.ledger.compute_record_hash`` - the same canonical JSON and SHA-256 as the
original, so chains written by either verify with the other's ``verify_ledger_chain``.

Tamper-evident, not tamper-proof: whoever can write the files can recompute the chain.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping
from typing import Any

from ..core import ledger
from ..core.ledger import verify_ledger_chain
from ..core.models import StepRecord
from ..core.paired import maybe_await
from ..core.ports import LedgerStore

__all__ = ["HashChainedLedgerStore", "compute_record_hash", "verify_ledger_chain"]


def compute_record_hash(*, record: Mapping[str, Any], prev_hash: str | None) -> str:
    """The ``record_hash`` of ``record`` chained onto ``prev_hash`` (the original's signature;
    ``record_hash`` and ``signature`` are left out of what is hashed)."""
    return ledger.compute_record_hash({**record, "prev_hash": prev_hash})


class HashChainedLedgerStore(LedgerStore):
    """Wraps ``inner`` (any ledger store, sync or async) and chains the records it appends.

    A runtime (``Runtime(run_store=..., ledger_store=HashChainedLedgerStore(...))``) chains
    the records of its commits itself, onto the same head: the hashes are identical, and the
    file stores write them without going through this wrapper twice.
    """

    #: Tells ``Runtime`` that the ledger it wraps may be driven directly (same hashes).
    chains_records = True

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._heads: dict[str, str | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _head(self, run_id: str) -> str | None:
        if run_id not in self._heads:
            records = await maybe_await(self.inner.list(run_id))
            self._heads[run_id] = records[-1].get("record_hash") if records else None
        return self._heads[run_id]

    async def append(self, record: StepRecord) -> None:
        """Set ``record.prev_hash`` and ``record.record_hash``, then append it to ``inner``."""
        lock = self._locks.setdefault(record.run_id, asyncio.Lock())
        async with lock:
            record.prev_hash = await self._head(record.run_id)
            record.record_hash = None
            record.record_hash = ledger.compute_record_hash(record.to_dict())
            await maybe_await(self.inner.append(record))
            self._heads[record.run_id] = record.record_hash

    async def list(self, run_id: str) -> builtins.list[dict[str, Any]]:
        return list(await maybe_await(self.inner.list(run_id)))

    def note_head(self, run_id: str, head: str | None) -> None:
        """Records were appended to ``inner`` behind our back (by a ``FileStore``, already
        chained): continue the chain from ``head``."""
        self._heads[run_id] = head
