"""``store.artifacts`` of a ``SqlStore``: content-addressed bytes (statements in ``statements``).

The id is the SHA-256 of the content, so a put is an insert-if-absent
(``INSERT ... ON CONFLICT DO NOTHING`` on both dialects): two processes that store the same bytes
at once keep one row, and neither fails. Reads check the content against its id, so a blob edited
in the database is reported instead of handed out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread

from ...core.artifacts import (
    DEFAULT_CONTENT_TYPE,
    ArtifactInfo,
    check_artifact_id,
    check_content_type,
    compute_artifact_id,
)
from ...core.serde import utc_now
from ...errors import ArtifactNotFoundError, StoreError
from . import statements

if TYPE_CHECKING:
    from .store import SqlStore

#: Content larger than this is hashed in a worker thread, not on the event loop.
_HASH_IN_THREAD_BYTES = 1 << 20


async def _sha256(data: bytes | bytearray | memoryview) -> str:
    if len(data) > _HASH_IN_THREAD_BYTES:
        return await anyio.to_thread.run_sync(compute_artifact_id, data)
    return compute_artifact_id(data)


class SqlArtifactStore:
    """Artifacts in the database of a ``SqlStore`` (see ``core.ports.ArtifactStore``)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> str:
        """Store ``data`` unless already stored; returns its id (its SHA-256)."""
        check_content_type(content_type)
        artifact_id = await _sha256(data)
        if await self.exists(artifact_id):  # the common repeat: no need to send the bytes
            return artifact_id
        store = self._store
        values = {
            "artifact_id": artifact_id,
            "content_type": content_type,
            "size": len(data),
            "created_at": utc_now(),
            "data": bytes(data),
        }
        async with store._reaching("cannot store an artifact in"), store._write() as conn:
            await conn.execute(statements.insert_artifact_if_absent(store.dialect, values))
        return artifact_id

    async def get(self, artifact_id: str) -> bytes:
        """The content; ``ArtifactNotFoundError`` when unknown, ``StoreError`` when the stored
        bytes no longer hash to their id."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        query = statements.artifact_data_query(artifact_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            data = await conn.scalar(query)
        if data is None:
            raise ArtifactNotFoundError(artifact_id)
        data = bytes(data)
        if await _sha256(data) != artifact_id:
            raise StoreError(
                f"artifact {artifact_id} in {store._masked} was altered: its content no longer "
                "hashes to its id"
            )
        return data

    async def info(self, artifact_id: str) -> ArtifactInfo | None:
        """Content type, size and creation time, or None when unknown."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        query = statements.artifact_info_query(artifact_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        return ArtifactInfo(row.artifact_id, row.content_type, row.size, row.created_at)

    async def exists(self, artifact_id: str) -> bool:
        """Whether it is stored."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        query = statements.artifact_exists_query(artifact_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            return await conn.scalar(query) is not None

    async def delete(self, artifact_id: str) -> bool:
        """Delete it; whether it existed."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        statement = statements.delete_artifact(artifact_id)
        async with store._reaching("cannot delete an artifact in"), store._write() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)
