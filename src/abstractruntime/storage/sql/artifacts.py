"""``store.artifacts`` of a ``SqlStore`` (statements in ``statements``).

An artifact is one row: its bytes, their SHA-256, the content type, the run and the tags (as
given, JSON), plus one row per tag in ``abstractruntime_artifact_tags`` so that
``search(tags=...)`` is an index lookup on ``(key, value)`` on both dialects (JSON containment
would need a GIN index on Postgres and has no index on SQLite). ``run_id`` and ``content_type``
are indexed columns of the row.

``store()`` is an upsert of the row followed, in the same transaction, by the replacement of its
tags; ``put()`` an insert-if-absent (``ON CONFLICT DO NOTHING``): two processes that store the
same bytes at once keep one row, and neither fails. Reads check the bytes against their digest,
so content edited in the database is reported instead of handed out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ...core.artifacts import (
    DEFAULT_CONTENT_TYPE,
    ORIGINAL_ID_LENGTH,
    Artifact,
    ArtifactMetadata,
    check_artifact_id,
    check_content,
    check_content_type,
    check_run_id,
    check_tags,
    content_sha256,
    new_metadata,
)
from ...core.kernel import unstorable
from ...core.ports import ArtifactStore
from ...core.serde import utc_now
from ...errors import ArtifactNotFoundError, StoreError
from . import statements

if TYPE_CHECKING:
    from .store import SqlStore

#: Content larger than this is hashed in a worker thread, not on the event loop.
_HASH_IN_THREAD_BYTES = 1 << 20


async def _sha256(data: bytes | bytearray | memoryview) -> str:
    if len(data) > _HASH_IN_THREAD_BYTES:
        return await anyio.to_thread.run_sync(content_sha256, data)
    return content_sha256(data)


def _metadata(row: Any) -> ArtifactMetadata:
    return ArtifactMetadata(
        artifact_id=row.artifact_id,
        content_type=row.content_type,
        size_bytes=row.size,
        created_at=row.created_at.isoformat(),
        run_id=row.run_id,
        tags=dict(row.tags or {}),
    )


class SqlArtifactStore(ArtifactStore):
    """Artifacts in the database of a ``SqlStore`` (see ``core.ports.ArtifactStore``)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def store(
        self,
        content: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        """Store ``content`` (replacing what the id held) in one transaction; its metadata."""
        data = check_content(content)
        content_type = check_content_type(content_type)
        run_id = check_run_id(run_id)
        checked_tags = check_tags(tags)
        if artifact_id is not None:
            check_artifact_id(artifact_id)
        digest = await _sha256(data)
        if artifact_id is None:
            artifact_id = digest[:ORIGINAL_ID_LENGTH]  # compute_artifact_id, without hashing again
        now = utc_now()
        meta = new_metadata(artifact_id, data, content_type, run_id, checked_tags, now)
        store = self._store
        await store._ensure_ready()
        values = statements.artifact_values(meta, data, digest, now)
        async with store._reaching("cannot store an artifact in"), store._write() as conn:
            # The row first: on Postgres its lock orders concurrent stores of the id.
            await conn.execute(statements.upsert_artifact(store.dialect, values))
            await conn.execute(statements.delete_artifact_tags(artifact_id))
            if checked_tags:
                await conn.execute(
                    statements.insert_artifact_tags(),
                    [
                        {"artifact_id": artifact_id, "key": key, "value": value}
                        for key, value in checked_tags.items()
                    ],
                )
        return meta

    async def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> str:
        """Store ``data`` unless already stored; returns its id (its whole SHA-256)."""
        content = check_content(data)
        check_content_type(content_type)
        artifact_id = await _sha256(content)
        if await self.exists(artifact_id):  # the common repeat: no need to send the bytes
            return artifact_id
        now = utc_now()
        meta = new_metadata(artifact_id, content, content_type, None, {}, now)
        store = self._store
        values = statements.artifact_values(meta, content, artifact_id, now)
        async with store._reaching("cannot store an artifact in"), store._write() as conn:
            await conn.execute(statements.insert_artifact_if_absent(store.dialect, values))
        return artifact_id

    async def load(self, artifact_id: str) -> Artifact | None:
        """The artifact, or None when unknown; ``StoreError`` when the stored bytes no longer
        hash to their digest."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        query = statements.artifact_query(artifact_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        data = bytes(row.data)
        if await _sha256(data) != row.sha256:
            raise StoreError(
                f"artifact {artifact_id} in {store._masked} was altered: its content no longer "
                "hashes to its recorded SHA-256"
            )
        return Artifact(_metadata(row), data)

    async def get(self, artifact_id: str) -> bytes:
        """The content; ``ArtifactNotFoundError`` when unknown, ``StoreError`` when altered."""
        artifact = await self.load(artifact_id)
        if artifact is None:
            raise ArtifactNotFoundError(artifact_id)
        return artifact.content

    async def get_metadata(self, artifact_id: str) -> ArtifactMetadata | None:
        """The metadata, or None when unknown."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        query = statements.artifact_meta_query(artifact_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _metadata(row)

    async def exists(self, artifact_id: str) -> bool:
        """Whether it is stored."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        query = statements.artifact_exists_query(artifact_id)
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            return await conn.scalar(query) is not None

    async def delete(self, artifact_id: str) -> bool:
        """Delete it and its tags; whether it existed."""
        check_artifact_id(artifact_id)
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot delete an artifact in"), store._write() as conn:
            # Not left to ON DELETE CASCADE alone: a SQLite connection made by someone else may
            # have foreign keys off.
            await conn.execute(statements.delete_artifact_tags(artifact_id))
            result = await conn.execute(statements.delete_artifact(artifact_id))
        return bool(result.rowcount)

    async def list_by_run(self, run_id: str) -> list[ArtifactMetadata]:
        """The run's artifacts, oldest first."""
        return await self._select(
            statements.search_artifacts_query(run_id=run_id, limit=None, oldest_first=True),
            run_id,
        )

    async def list_all(self, *, limit: int | None = 1000) -> list[ArtifactMetadata]:
        """Every artifact, newest first, at most ``limit``."""
        return await self._select(statements.search_artifacts_query(limit=limit))

    async def search(
        self,
        *,
        run_id: str | None = None,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = 1000,
    ) -> list[ArtifactMetadata]:
        """Artifacts passing every filter, newest first (see ``ArtifactStore.search``)."""
        query = statements.search_artifacts_query(
            run_id=run_id, content_type=content_type, tags=tags, limit=limit
        )
        return await self._select(query, run_id, content_type, *(tags or {}).items())

    async def delete_by_run(self, run_id: str) -> int:
        """Delete the run's artifacts and their tags in one transaction; how many."""
        if not isinstance(run_id, str) or unstorable(run_id):
            return 0
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot delete artifacts in"), store._write() as conn:
            await conn.execute(statements.delete_run_artifact_tags(run_id))
            result = await conn.execute(statements.delete_run_artifacts(run_id))
        return int(result.rowcount)

    async def _select(self, query: Any, *filters: Any) -> list[ArtifactMetadata]:
        flat = [v for f in filters for v in (f if isinstance(f, tuple) else (f,))]
        if any(not isinstance(v, str) for v in flat if v is not None) or unstorable(*flat):
            # Stored values are strings without NUL: nothing else can match (and Postgres
            # refuses to compare a NUL or a number with text).
            return []
        store = self._store
        await store._ensure_ready()
        async with store._reaching("cannot read"), store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_metadata(row) for row in rows]
