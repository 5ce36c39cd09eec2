"""``store.snapshots`` and ``store.artifacts`` on every backend: memory, SQLite and Postgres."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from abstractruntime import (
    ArtifactNotFoundError,
    InvalidArgumentError,
    RunState,
    RunStatus,
    SerializationError,
    Snapshot,
    StoreError,
    artifact_ref,
    resolve_artifact,
)
from abstractruntime.storage import SqlStore
from tests.helpers import own_vars

StoreFactory = Callable[[], Any]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def _state(run_id: str = "run-1", **vars: Any) -> RunState:
    return RunState(
        run_id=run_id,
        workflow_id="wf",
        status=RunStatus.WAITING,
        current_node="ask",
        vars=dict(vars),
    )


def _snap(name: str, *, minutes: int = 0, run_id: str = "run-1", **kwargs: Any) -> Snapshot:
    snap = Snapshot.from_run(run=_state(run_id), name=name, **kwargs)
    snap.created_at = T0 + timedelta(minutes=minutes)
    return snap


async def _count(store: Any, table: str) -> int:
    if isinstance(store, SqlStore):
        async with store.engine.connect() as conn:
            return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))
    if table == "abstractruntime_artifacts":
        return len(store.artifacts._blobs)
    return len(store.snapshots._snapshots)


# -- snapshots ---------------------------------------------------------------------------------


async def test_save_and_load_round_trip(store: Any) -> None:
    state = _state(order={"id": 42, "lines": [1.5, "x", None]})
    snap = Snapshot.from_run(
        run=state, name="before approval", description="Order 42", tags=["Prod", "eu"]
    )
    snap.step_id = "step-7"
    await store.snapshots.save(snap)

    loaded = await store.snapshots.load(snap.snapshot_id)
    assert loaded == snap
    assert loaded.tags == ["Prod", "eu"]  # the spelling is kept
    assert own_vars(loaded.state) == {"order": {"id": 42, "lines": [1.5, "x", None]}}
    assert loaded.state.status is RunStatus.WAITING
    assert await store.snapshots.load("nope") is None


async def test_save_again_replaces_it_but_keeps_created_at(store: Any) -> None:
    snap = _snap("first", tags=["a", "b"])
    await store.snapshots.save(snap)
    first_updated = snap.updated_at
    assert snap.created_at == T0

    again = Snapshot.from_dict(snap.to_dict())
    again.name, again.tags, again.created_at = "renamed", ["C"], T0 + timedelta(days=1)
    await store.snapshots.save(again)
    assert again.created_at == T0  # the stored one wins
    assert again.updated_at >= first_updated

    loaded = await store.snapshots.load(snap.snapshot_id)
    assert loaded.name == "renamed" and loaded.tags == ["C"] and loaded.created_at == T0
    assert [s.name for s in await store.snapshots.list(tag="c")] == ["renamed"]
    assert await store.snapshots.list(tag="a") == []  # the old tags went with the old version
    assert await _count(store, "abstractruntime_snapshots") == 1


async def test_delete(store: Any) -> None:
    snap = _snap("gone", tags=["t"])
    await store.snapshots.save(snap)
    assert await store.snapshots.delete(snap.snapshot_id) is True
    assert await store.snapshots.delete(snap.snapshot_id) is False
    assert await store.snapshots.load(snap.snapshot_id) is None
    assert await store.snapshots.list(tag="t") == []
    if isinstance(store, SqlStore):
        assert await _count(store, "abstractruntime_snapshot_tags") == 0


async def test_list_filters_newest_first_and_limit(store: Any) -> None:
    await store.snapshots.save(_snap("alpha", minutes=1, tags=["Prod"]))
    await store.snapshots.save(_snap("beta", minutes=3, description="The BIG one", tags=["dev"]))
    await store.snapshots.save(_snap("gamma", minutes=2, run_id="run-2", tags=["PROD", "x"]))

    async def names(**filters: Any) -> list[str]:
        return [s.name for s in await store.snapshots.list(**filters)]

    assert await names() == ["beta", "gamma", "alpha"]
    assert await names(limit=2) == ["beta", "gamma"]
    assert await names(limit=None) == ["beta", "gamma", "alpha"]
    assert await names(run_id="run-1") == ["beta", "alpha"]
    assert await names(tag="prod") == ["gamma", "alpha"]
    assert await names(tag=" pRoD ") == ["gamma", "alpha"]
    assert await names(tag="prod", run_id="run-2") == ["gamma"]
    assert await names(tag="nope") == []
    assert await names(query="ALP") == ["alpha"]
    assert await names(query="big") == ["beta"]  # the description is searched too
    assert await names(query="a", tag="dev") == ["beta"]
    assert await names(query="") == ["beta", "gamma", "alpha"]


async def test_search_is_case_insensitive_beyond_ascii(store: Any) -> None:
    await store.snapshots.save(_snap("Café CRÈME"))
    await store.snapshots.save(_snap("plain"))
    assert [s.name for s in await store.snapshots.list(query="café crème")] == ["Café CRÈME"]
    assert [s.name for s in await store.snapshots.list(query="CAFÉ")] == ["Café CRÈME"]


LITERAL_NAMES = [
    "100% done",
    "100 percent done",
    "a_c",
    "abc",
    "it's here",
    "its here",
    "a;b",
    "x -- y",
    r"back\slash",
    "slash/name",
    "'; DROP TABLE abstractruntime_runs; --",
]


LITERAL_QUERIES = [
    ("%", ["100% done"]),
    ("0% d", ["100% done"]),
    ("_", ["a_c", "'; DROP TABLE abstractruntime_runs; --"]),
    ("a_c", ["a_c"]),
    ("'", ["it's here", "'; DROP TABLE abstractruntime_runs; --"]),
    ("t's", ["it's here"]),
    (";", ["a;b", "'; DROP TABLE abstractruntime_runs; --"]),
    ("--", ["x -- y", "'; DROP TABLE abstractruntime_runs; --"]),
    ("\\", [r"back\slash"]),
    ("/", ["slash/name"]),
    ("'; DROP TABLE abstractruntime_runs; --", ["'; DROP TABLE abstractruntime_runs; --"]),
    ("%_%", []),
]


async def test_search_takes_the_query_literally(store: Any) -> None:
    for minutes, name in enumerate(LITERAL_NAMES):
        await store.snapshots.save(_snap(name, minutes=minutes, tags=[name]))
    for query, expected in LITERAL_QUERIES:
        found = await store.snapshots.list(query=query, limit=None)
        assert sorted(s.name for s in found) == sorted(expected), query
    # Tags are bound values too.
    assert [s.name for s in await store.snapshots.list(tag=LITERAL_NAMES[-1])] == [
        LITERAL_NAMES[-1]
    ]
    assert await store.snapshots.list(tag="%") == []
    if isinstance(store, SqlStore):  # and nothing was executed
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "abstractruntime_runs" in tables


async def test_a_state_that_cannot_be_stored_names_the_key(store: Any) -> None:
    snap = Snapshot.from_run(run=_state(bad=float("nan")), name="nan")
    with pytest.raises(SerializationError, match=r"run_state\['vars'\]\['bad'\]"):
        await store.snapshots.save(snap)
    assert await store.snapshots.load(snap.snapshot_id) is None


# -- artifacts ---------------------------------------------------------------------------------


async def test_artifact_round_trip_and_metadata(store: Any) -> None:
    data = b"\x00\x01 big payload \xff" * 1000
    artifact_id = await store.artifacts.put(data, content_type="application/pdf")
    assert artifact_id == hashlib.sha256(data).hexdigest()
    assert await store.artifacts.get(artifact_id) == data
    assert await store.artifacts.exists(artifact_id)
    info = await store.artifacts.info(artifact_id)
    assert (info.artifact_id, info.content_type, info.size) == (
        artifact_id,
        "application/pdf",
        len(data),
    )
    assert info.created_at.tzinfo is not None

    empty = await store.artifacts.put(b"")
    assert await store.artifacts.get(empty) == b""
    assert (await store.artifacts.info(empty)).content_type == "application/octet-stream"


async def test_same_content_is_stored_once(store: Any) -> None:
    first = await store.artifacts.put(b"same bytes", content_type="text/plain")
    second = await store.artifacts.put(b"same bytes", content_type="application/json")
    assert first == second
    assert await _count(store, "abstractruntime_artifacts") == 1
    assert (await store.artifacts.info(first)).content_type == "text/plain"  # the first wins


async def test_concurrent_puts_of_the_same_bytes_keep_one_copy(
    store_factory: StoreFactory,
) -> None:
    stores = [store_factory() for _ in range(4)]  # four connections (processes, in real life)
    data = b"raced" * 10_000
    ids = await asyncio.gather(*(s.artifacts.put(data) for s in stores for _ in range(3)))
    assert set(ids) == {hashlib.sha256(data).hexdigest()}
    assert await _count(stores[0], "abstractruntime_artifacts") == 1
    assert await stores[1].artifacts.get(ids[0]) == data


async def test_unknown_and_malformed_artifact_ids(store: Any) -> None:
    unknown = "0" * 64
    with pytest.raises(ArtifactNotFoundError, match=unknown) as info:
        await store.artifacts.get(unknown)
    assert isinstance(info.value, KeyError)
    assert await store.artifacts.info(unknown) is None
    assert await store.artifacts.exists(unknown) is False
    assert await store.artifacts.delete(unknown) is False
    with pytest.raises(InvalidArgumentError, match="Invalid artifact_id"):
        await store.artifacts.get("../../etc/passwd")
    with pytest.raises(InvalidArgumentError, match="content_type"):
        await store.artifacts.put(b"x", content_type="")
    with pytest.raises(TypeError, match="bytes"):
        await store.artifacts.put("text")


async def test_delete_artifact(store: Any) -> None:
    artifact_id = await store.artifacts.put(b"temporary")
    assert await store.artifacts.delete(artifact_id) is True
    assert await store.artifacts.exists(artifact_id) is False
    with pytest.raises(ArtifactNotFoundError):
        await store.artifacts.get(artifact_id)


async def test_resolve_artifact_loads_refs_and_gives_none_for_other_values(store: Any) -> None:
    artifact_id = await store.artifacts.put(b"report", content_type="text/plain")
    vars = {"report": artifact_ref(artifact_id), "small": {"x": 1}}
    artifact = await resolve_artifact(vars["report"], store.artifacts)
    assert (artifact.content, artifact.content_type) == (b"report", "text/plain")
    assert await resolve_artifact(vars["small"], store.artifacts) is None
    assert await resolve_artifact(artifact_ref("gone"), store.artifacts) is None


async def test_altered_artifact_is_reported_not_returned(db_url: str) -> None:
    async with SqlStore(db_url) as store:
        artifact_id = await store.artifacts.put(b"original")
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE abstractruntime_artifacts SET data = :d"), {"d": b"forged"}
            )
        with pytest.raises(StoreError, match=f"artifact {artifact_id}.*altered"):
            await store.artifacts.get(artifact_id)


async def test_snapshots_page_with_a_keyset_cursor(store: Any, tmp_path: Any) -> None:
    """Pages of ``list(after=...)`` cover every snapshot once, ties in time included."""
    from abstractruntime import JsonSnapshotStore

    for snapshots in (store.snapshots, JsonSnapshotStore(tmp_path / "files")):
        made = [_snap(f"s{i}", minutes=i // 3) for i in range(8)]  # three share each minute
        for snap in made:
            await snapshots.save(snap)
        pages: list[list[str]] = []
        after = None
        while page := await snapshots.list(limit=3, after=after):
            pages.append([s.snapshot_id for s in page])
            after = (page[-1].created_at, page[-1].snapshot_id)
        flat = [snapshot_id for page in pages for snapshot_id in page]
        assert [len(page) for page in pages] == [3, 3, 2]
        assert flat == [s.snapshot_id for s in await snapshots.list(limit=None)]
        assert sorted(flat) == sorted(s.snapshot_id for s in made)
