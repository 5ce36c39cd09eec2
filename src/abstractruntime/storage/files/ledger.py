"""``JsonlLedgerStore``: one JSON line per ledger record, the original 0.2's layout.

``<base_dir>/ledger_<run_id>.jsonl``: each line is ``json.dumps(record, ensure_ascii=False)`` of
the record's dict, as the original wrote it. Appends are fsynced; a torn last line (a writer
killed mid-append) is left out when reading and cut before the next append.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from pathlib import Path
from typing import Any

from ...core.models import StepRecord
from ...core.ports import LedgerStore
from ._io import append_lines, check_id, scan_jsonl


def record_line(record: dict[str, Any]) -> str:
    """A record as the original wrote it (default separators, field order), with its newline."""
    return json.dumps(record, ensure_ascii=False) + "\n"


class JsonlLedgerStore(LedgerStore):
    """Ledgers as ``ledger_<id>.jsonl`` files in ``base_dir`` (created if missing).

    It does not chain records: wrap it in ``HashChainedLedgerStore`` for that, as with the
    original (a runtime chains the records it commits either way).
    """

    def __init__(self, base_dir: str | Path) -> None:
        self._base = Path(base_dir)
        self._base.mkdir(parents=True, exist_ok=True)

    @property
    def base_dir(self) -> Path:
        return self._base

    def path(self, run_id: str) -> Path:
        """The run's ledger file (``InvalidArgumentError`` for an id that cannot name a file)."""
        return self._base / f"ledger_{check_id('run id', run_id)}.jsonl"

    async def append(self, record: StepRecord) -> None:
        """Append one record and fsync it."""
        path = self.path(record.run_id)
        line = record_line(record.to_dict())
        await asyncio.to_thread(append_lines, path, [line], None)

    async def list(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """The run's records, oldest first (empty when it has no ledger file)."""
        return await asyncio.to_thread(self.read_sync, run_id, None)

    def read_sync(self, run_id: str, limit: int | None) -> builtins.list[dict[str, Any]]:
        """At most ``limit`` records (blocking: call it in a worker thread)."""
        return scan_jsonl(self.path(run_id), limit)[0]
