"""``FileArtifactStore``: artifacts as files, in the original AbstractRuntime 0.2's layout.

    base_dir/
        artifacts/
            {artifact_id}.bin     the content
            {artifact_id}.meta    the metadata: ArtifactMetadata.to_dict() as JSON, indent 2

A directory the original wrote opens here, and the original reads what this store writes (the
same bytes: ``json.dump(..., ensure_ascii=False, indent=2)``). Better than the original:

- every file is written atomically (a temporary file in the same directory, flushed and
  fsynced, then ``os.replace``, then the directory fsynced), so a killed process leaves the old
  file or the new one, never half of one;
- the content is written before the metadata and the metadata deleted before the content: the
  ``.meta`` file says an artifact is whole, so ``exists``, ``load`` and the listings agree and an
  interrupted store or delete leaves at most an unlisted ``.bin``;
- all file I/O runs in a worker thread (``asyncio.to_thread``), never on the event loop.

Limits: the pair of files is not replaced as one, so a process killed between the two renames
of a store that *replaces* an artifact under a chosen id with other content leaves the new
content with the old metadata (``load`` then reports it, as the sizes differ, instead of handing
it out); listings read every ``.meta`` file, as the original did (a SQL store indexes them); on
a case-insensitive file system, ids that differ only in case are one artifact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.artifacts import (
    DEFAULT_CONTENT_TYPE,
    Artifact,
    ArtifactMetadata,
    check_artifact_id,
    check_content,
    check_content_type,
    check_run_id,
    check_tags,
    compute_artifact_id,
    content_sha256,
    matches,
    new_metadata,
    newest_first,
    oldest_first,
)
from ..core.ports import ArtifactStore
from ..errors import StoreError

__all__ = ["FileArtifactStore"]

_log = logging.getLogger(__name__)

_CONTENT = ".bin"
_META = ".meta"


def metadata_json(meta: ArtifactMetadata) -> bytes:
    """The ``.meta`` file's bytes, exactly as the original wrote them."""
    return json.dumps(meta.to_dict(), ensure_ascii=False, indent=2).encode("utf-8")


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; elsewhere there is nothing to open)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole (no reader ever sees a part); not yet durable until
    the directory is fsynced."""
    # Not mkstemp: its files are 0600, where the original's open() left them to the umask. Not
    # named after ``path``: a 250-character id leaves no room in a file name for more.
    tmp = path.with_name(f".tmp-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


class FileArtifactStore(ArtifactStore):
    """Artifacts in ``base_dir/artifacts/`` (see the module's docstring for the layout).

    Nothing is touched on the file system until the first call: the directory is made by the
    first store, and a missing one reads as empty.
    """

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self._base = Path(base_dir)
        self._artifacts_dir = self._base / "artifacts"

    def __repr__(self) -> str:
        return f"FileArtifactStore({str(self._base)!r})"

    @property
    def base_dir(self) -> Path:
        return self._base

    # -- the port -----------------------------------------------------------------------------

    async def store(
        self,
        content: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        """Store ``content`` (replacing what the id held); returns its metadata."""
        data = check_content(content)
        check_content_type(content_type)
        run_id = check_run_id(run_id)
        checked = check_tags(tags)
        if artifact_id is not None:
            check_artifact_id(artifact_id)
        return await asyncio.to_thread(
            self._store_sync, data, content_type, run_id, checked, artifact_id
        )

    async def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> str:
        """Store ``data`` unless already stored; returns its id (its whole SHA-256)."""
        content = check_content(data)
        check_content_type(content_type)
        return await asyncio.to_thread(self._put_sync, content, content_type)

    async def load(self, artifact_id: str) -> Artifact | None:
        """The artifact, or None when unknown (or only half there)."""
        check_artifact_id(artifact_id)
        return await asyncio.to_thread(self._load_sync, artifact_id)

    async def get_metadata(self, artifact_id: str) -> ArtifactMetadata | None:
        """The metadata, or None when unknown."""
        check_artifact_id(artifact_id)
        return await asyncio.to_thread(self._read_meta, self._meta_path(artifact_id))

    async def exists(self, artifact_id: str) -> bool:
        """Whether both of its files are there."""
        check_artifact_id(artifact_id)
        return await asyncio.to_thread(self._exists_sync, artifact_id)

    async def delete(self, artifact_id: str) -> bool:
        """Delete both files; whether there was any."""
        check_artifact_id(artifact_id)
        return await asyncio.to_thread(self._delete_sync, artifact_id)

    async def list_by_run(self, run_id: str) -> list[ArtifactMetadata]:
        """The run's artifacts, oldest first."""
        return oldest_first(await self._scan(run_id=run_id))

    async def list_all(self, *, limit: int | None = 1000) -> list[ArtifactMetadata]:
        """Every artifact, newest first, at most ``limit``."""
        return newest_first(await self._scan(), limit)

    async def search(
        self,
        *,
        run_id: str | None = None,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = 1000,
    ) -> list[ArtifactMetadata]:
        """Artifacts passing every filter, newest first (see ``ArtifactStore.search``)."""
        found = await self._scan(run_id=run_id, content_type=content_type, tags=tags)
        return newest_first(found, limit)

    async def delete_by_run(self, run_id: str) -> int:
        """Delete the run's artifacts; how many."""

        def delete_all() -> int:
            found = self._scan_sync(run_id=run_id)
            return sum(self._delete_sync(meta.artifact_id) for meta in found)

        return await asyncio.to_thread(delete_all)

    # -- in the worker thread -----------------------------------------------------------------

    def _content_path(self, artifact_id: str) -> Path:
        return self._artifacts_dir / f"{artifact_id}{_CONTENT}"

    def _meta_path(self, artifact_id: str) -> Path:
        return self._artifacts_dir / f"{artifact_id}{_META}"

    def _write_pair(self, meta: ArtifactMetadata, content: bytes) -> None:
        self._artifacts_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self._content_path(meta.artifact_id), content)
        _write_atomic(self._meta_path(meta.artifact_id), metadata_json(meta))
        _fsync_dir(self._artifacts_dir)

    def _store_sync(
        self,
        content: bytes,
        content_type: str,
        run_id: str | None,
        tags: dict[str, str],
        artifact_id: str | None,
    ) -> ArtifactMetadata:
        if artifact_id is None:
            artifact_id = compute_artifact_id(content)
        meta = new_metadata(artifact_id, content, content_type, run_id, tags)
        self._write_pair(meta, content)
        return meta

    def _put_sync(self, content: bytes, content_type: str) -> str:
        artifact_id = content_sha256(content)
        if not self._exists_sync(artifact_id):
            self._write_pair(new_metadata(artifact_id, content, content_type, None, {}), content)
        return artifact_id

    def _exists_sync(self, artifact_id: str) -> bool:
        return self._meta_path(artifact_id).is_file() and self._content_path(artifact_id).is_file()

    def _delete_sync(self, artifact_id: str) -> bool:
        # The metadata first: once it is gone the artifact is gone for every reader.
        deleted = _unlink(self._meta_path(artifact_id))
        deleted = _unlink(self._content_path(artifact_id)) or deleted
        if deleted:
            _fsync_dir(self._artifacts_dir)
        return deleted

    def _read_meta(self, path: Path) -> ArtifactMetadata | None:
        """The metadata in ``path``; None when missing; ``StoreError`` when unreadable."""
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data: Any = json.loads(text.decode("utf-8"))
            return ArtifactMetadata.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"artifact metadata {path} cannot be read: {exc}") from exc

    def _load_sync(self, artifact_id: str) -> Artifact | None:
        meta = self._read_meta(self._meta_path(artifact_id))
        if meta is None:
            return None
        try:
            content = self._content_path(artifact_id).read_bytes()
        except FileNotFoundError:
            return None
        if len(content) != meta.size_bytes:
            raise StoreError(
                f"artifact {artifact_id} in {self._artifacts_dir} is torn: {len(content)} bytes "
                f"of content where its metadata says {meta.size_bytes}; store it again"
            )
        return Artifact(meta, content)

    def _scan_sync(
        self,
        *,
        run_id: str | None = None,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[ArtifactMetadata]:
        found = []
        for path in self._artifacts_dir.glob(f"*{_META}"):
            try:
                meta = self._read_meta(path)
            except (StoreError, OSError) as exc:
                # As the original: one unreadable file does not hide the others.
                _log.warning("skipping %s: %s", path, exc)
                continue
            if meta is not None and matches(
                meta, run_id=run_id, content_type=content_type, tags=tags
            ):
                found.append(meta)
        return found

    async def _scan(self, **filters: Any) -> list[ArtifactMetadata]:
        return await asyncio.to_thread(self._scan_sync, **filters)
