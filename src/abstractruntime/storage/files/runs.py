"""``JsonFileRunStore``: one pretty JSON file per run, the original 0.2's layout.

``<base_dir>/run_<run_id>.json`` holds ``RunState.to_dict()`` (the original's
``json.dump(asdict(run), ensure_ascii=False, indent=2)``), written atomically. When a runtime
drives the directory (``FileStore``) the file carries one more key, ``"_ledger"``: the length,
head hash and byte size of the run's committed ledger, which the original ignores on load.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.models import RunState, RunStatus, WaitReason
from ...core.ports import RunStore
from ...core.serde import to_utc
from ...errors import StoreError
from ._io import check_id, pretty_json, read_json, write_atomic

if TYPE_CHECKING:
    from ...core.ports import Store

log = logging.getLogger(__name__)

#: The key of a run file that records the committed ledger (``FileStore``).
LEDGER_KEY = "_ledger"


class JsonFileRunStore(RunStore):
    """Run states as ``run_<id>.json`` files in ``base_dir`` (created if missing).

    Implements ``RunStore`` and ``QueryableRunStore``. Queries read every run file (as the
    original did): fine for thousands of runs, not for millions - use a ``SqlStore`` there.
    Every blocking call runs in a worker thread.

    One process drives a directory at a time: ``Runtime(run_store=JsonFileRunStore(d),
    ledger_store=JsonlLedgerStore(d))`` locks it (see ``FileStore``).
    """

    def __init__(self, base_dir: str | Path) -> None:
        self._base = Path(base_dir)
        self._base.mkdir(parents=True, exist_ok=True)

    @property
    def base_dir(self) -> Path:
        return self._base

    def path(self, run_id: str) -> Path:
        """The run's file (``InvalidArgumentError`` for an id that cannot name a file)."""
        return self._base / f"run_{check_id('run id', run_id)}.json"

    # -- RunStore -----------------------------------------------------------------------------

    async def save(self, run: RunState) -> None:
        """Write the run's file atomically (without ledger bookkeeping)."""
        await asyncio.to_thread(self.write_sync, run, None)

    async def load(self, run_id: str) -> RunState | None:
        """The run, or None when it has no file; ``StoreError`` for a damaged file."""
        found = await asyncio.to_thread(self.read_sync, run_id)
        return None if found is None else found[0]

    # -- QueryableRunStore --------------------------------------------------------------------

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        wait_reason: WaitReason | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[RunState]:
        """Runs matching every given filter, most recently updated first."""
        wanted_status = None if status is None else RunStatus(status)
        wanted_reason = None if wait_reason is None else WaitReason(wait_reason)
        found = [
            state
            for state, _ in await asyncio.to_thread(self.scan_sync)
            if (wanted_status is None or state.status is wanted_status)
            and (workflow_id is None or state.workflow_id == workflow_id)
            and (
                wanted_reason is None
                or (state.waiting is not None and state.waiting.reason is wanted_reason)
            )
        ]
        found.sort(key=lambda s: s.updated_at, reverse=True)
        return found[: max(limit, 0)]

    async def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> list[RunState]:
        """Runs waiting until a time at or before ``now_iso``, earliest first (read-only)."""
        now = to_utc(now_iso)
        due = [
            state
            for state, _ in await asyncio.to_thread(self.scan_sync)
            if state.status is RunStatus.WAITING
            and state.waiting is not None
            and state.waiting.reason is WaitReason.UNTIL
            and state.waiting.until is not None
            and state.waiting.until <= now
        ]
        due.sort(key=lambda s: s.waiting.until if s.waiting and s.waiting.until else now)
        return due[: max(limit, 0)]

    async def list_children(
        self, *, parent_run_id: str, status: RunStatus | None = None
    ) -> list[RunState]:
        """The runs started by ``parent_run_id`` (optionally of one status)."""
        wanted = None if status is None else RunStatus(status)
        return [
            state
            for state, _ in await asyncio.to_thread(self.scan_sync)
            if state.parent_run_id == parent_run_id and (wanted is None or state.status is wanted)
        ]

    # -- for FileStore and the importer (blocking: call them in a worker thread) ---------------

    def read_sync(self, run_id: str) -> tuple[RunState, dict[str, Any] | None] | None:
        """The run and its ledger bookkeeping (None in files the original wrote)."""
        path = self.path(run_id)
        data = read_json(path)
        if data is None:
            return None
        return self._decode(path, data)

    @staticmethod
    def _decode(path: Path, data: Any) -> tuple[RunState, dict[str, Any] | None]:
        try:
            state = RunState.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path} does not hold a run state: {exc!r}") from exc
        meta = data.get(LEDGER_KEY)
        return state, meta if isinstance(meta, dict) else None

    def write_sync(self, state: RunState, ledger: dict[str, Any] | None) -> None:
        data = state.to_dict()
        if ledger is not None:
            data[LEDGER_KEY] = ledger
        write_atomic(self.path(state.run_id), pretty_json(data))

    def scan_sync(self) -> builtins.list[tuple[RunState, dict[str, Any] | None]]:
        """Every readable run file; a damaged one is logged and skipped (as the original)."""
        found = []
        for path in sorted(self._base.glob("run_*.json")):
            try:
                data = read_json(path)
                if data is not None:
                    found.append(self._decode(path, data))
            except (StoreError, OSError) as exc:
                log.warning("skipping %s: %s", path, exc)
        return found

    def paired_store(self, ledger_store: Any, *, artifact_store: Any = None) -> Store | None:
        """The crash-safe ``FileStore`` when ``ledger_store`` is our ``JsonlLedgerStore``
        (bare or in a ``HashChainedLedgerStore``); None otherwise (``Runtime`` then uses a
        generic ``PairedStore``)."""
        from .store import FileStore

        if type(self) is not JsonFileRunStore or not FileStore.accepts(ledger_store):
            return None
        return FileStore(self, ledger_store, artifact_store=artifact_store)
