"""``JsonSnapshotStore``: one pretty JSON file per snapshot, the original 0.2's layout.

``<base_dir>/snapshot_<snapshot_id>.json`` holds the snapshot's dict (``snapshot_id``,
``run_id``, ``step_id``, ``name``, ``description``, ``tags``, ``created_at``, ``updated_at``,
``run_state``), written atomically.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from ...core.serde import utc_now
from ...core.snapshot import Snapshot
from ...errors import StoreError
from ._io import check_id, fsync_dir, pretty_json, read_json, write_atomic

log = logging.getLogger(__name__)


def snapshot_from_file(path: Path, data: Any) -> Snapshot:
    """A snapshot from its file's dict; the original allowed an empty name, we do not."""
    if not isinstance(data, dict):
        raise StoreError(f"{path} does not hold a snapshot")
    data = dict(data)
    if not (isinstance(data.get("name"), str) and data["name"].strip()):
        data["name"] = "(unnamed)"
    data.setdefault("created_at", data.get("updated_at") or utc_now())
    data.setdefault("updated_at", data["created_at"])
    try:
        return Snapshot.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path} does not hold a snapshot: {exc}") from exc


class JsonSnapshotStore:
    """Snapshots as ``snapshot_<id>.json`` files in ``base_dir`` (``store.snapshots``)."""

    def __init__(self, base_dir: str | Path) -> None:
        self._base = Path(base_dir)
        self._base.mkdir(parents=True, exist_ok=True)

    @property
    def base_dir(self) -> Path:
        return self._base

    def path(self, snapshot_id: str) -> Path:
        return self._base / f"snapshot_{check_id('snapshot id', snapshot_id)}.json"

    async def save(self, snapshot: Snapshot) -> None:
        """Insert or replace it; a replaced snapshot keeps its first ``created_at``."""
        await asyncio.to_thread(self._save_sync, snapshot)

    def _save_sync(self, snapshot: Snapshot) -> None:
        path = self.path(snapshot.snapshot_id)
        with contextlib.suppress(StoreError):
            previous = read_json(path)
            if previous is not None:
                snapshot.created_at = snapshot_from_file(path, previous).created_at
        snapshot.updated_at = max(utc_now(), snapshot.created_at)
        write_atomic(path, pretty_json(snapshot.to_dict()))

    async def load(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None when unknown."""
        path = self.path(snapshot_id)
        data = await asyncio.to_thread(read_json, path)
        return None if data is None else snapshot_from_file(path, data)

    async def delete(self, snapshot_id: str) -> bool:
        """Delete it; whether it existed."""
        return await asyncio.to_thread(self._delete_sync, self.path(snapshot_id))

    @staticmethod
    def _delete_sync(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    async def list(
        self,
        *,
        run_id: str | None = None,
        tag: str | None = None,
        query: str | None = None,
        limit: int | None = 100,
        after: tuple[datetime, str] | None = None,
    ) -> builtins.list[Snapshot]:
        """Snapshots passing every filter, newest first (damaged files are skipped)."""
        found = [
            s
            for s in await asyncio.to_thread(self.scan_sync)
            if s.matches(run_id=run_id, tag=tag, query=query)
            and (after is None or (s.created_at, s.snapshot_id) < after)
        ]
        found.sort(key=lambda s: (s.created_at, s.snapshot_id), reverse=True)
        return found if limit is None else found[: max(limit, 0)]

    def scan_sync(self) -> builtins.list[Snapshot]:
        found = []
        for path in sorted(self._base.glob("snapshot_*.json")):
            try:
                data = read_json(path)
                if data is not None:
                    found.append(snapshot_from_file(path, data))
            except (StoreError, OSError) as exc:
                log.warning("skipping %s: %s", path, exc)
        return found
