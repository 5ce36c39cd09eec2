"""Artifacts stored by revision 0003 keep working after 0004 (run, tags, any id, digest)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime import ArtifactMetadata, StoreError, compute_artifact_id
from abstractruntime.storage import SqlStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
OLD = [(b"old report", "application/pdf"), (b"", "application/octet-stream")]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_empty_url"))


async def _write_like_0003(store: SqlStore) -> list[str]:
    """Insert artifacts the way revision 0003's ``put`` did: id = SHA-256, its columns only."""
    ids = []
    async with store.engine.begin() as conn:
        for data, content_type in OLD:
            artifact_id = hashlib.sha256(data).hexdigest()
            ids.append(artifact_id)
            await conn.execute(
                sa.text(
                    "INSERT INTO abstractruntime_artifacts (artifact_id, content_type, size,"
                    " created_at, data) VALUES (:id, :type, :size, :created, :data)"
                ),
                {
                    "id": artifact_id,
                    "type": content_type,
                    "size": len(data),
                    "created": T0,
                    "data": data,
                },
            )
    return ids


async def test_artifacts_of_0003_survive_the_upgrade_and_work_with_the_new_api(
    empty_url: str,
) -> None:
    old = SqlStore(empty_url)
    try:
        await old.upgrade("0003_snapshots_artifacts")
        ids = await _write_like_0003(old)
    finally:
        await old.close()

    async with SqlStore(empty_url) as store:
        await store.upgrade()
        artifacts = store.artifacts
        for artifact_id, (data, content_type) in zip(ids, OLD, strict=True):
            assert await artifacts.get(artifact_id) == data
            meta = await artifacts.get_metadata(artifact_id)
            assert meta == ArtifactMetadata(
                artifact_id, content_type, len(data), T0.isoformat(), None, {}
            )
            info = await artifacts.info(artifact_id)
            assert info is not None and info.created_at == T0
            # put of the same bytes finds the old row instead of adding one.
            assert await artifacts.put(data) == artifact_id
        assert [m.artifact_id for m in await artifacts.list_all()] == sorted(ids, reverse=True)
        # The new API beside the old rows.
        new = await artifacts.store(b"old report", run_id="run-1", tags={"k": "v"})
        assert new.artifact_id == compute_artifact_id(b"old report") != ids[0]
        assert [m.artifact_id for m in await artifacts.search(tags={"k": "v"})] == [new.artifact_id]
        chosen = await artifacts.store(b"x", artifact_id="a-chosen-id-" + "z" * 200)
        assert len(await artifacts.list_all()) == 4

        # An old row altered behind our back is still caught (its digest came from its id).
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE abstractruntime_artifacts SET data = :d WHERE artifact_id = :i"),
                {"d": b"forged", "i": ids[0]},
            )
        with pytest.raises(StoreError, match="altered"):
            await artifacts.get(ids[0])

        # Down to 0003: what it can hold (ids that are their content's SHA-256) stays.
        await store.downgrade("0003_snapshots_artifacts")
        async with store.engine.connect() as conn:
            kept = await conn.scalars(sa.text("SELECT artifact_id FROM abstractruntime_artifacts"))
            assert sorted(kept) == sorted(ids)
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert "abstractruntime_artifact_tags" not in tables
        assert chosen.artifact_id not in ids
        await store.upgrade()
        assert await store.artifacts.get(ids[1]) == b""
