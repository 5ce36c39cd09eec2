"""The original AbstractRuntime 0.2's ``tests/test_artifacts.py``, ported to ``await``, on every
artifact store: in-memory, SQLite, Postgres and files; plus what the original did not test (a
directory it wrote, bad ids, concurrent stores, our ``put`` beside its ``store``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from abstractruntime import (
    Artifact,
    ArtifactMetadata,
    ArtifactStore,
    FileArtifactStore,
    InMemoryArtifactStore,
    InvalidArgumentError,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    StoreError,
    WorkflowSpec,
    artifact_ref,
    compute_artifact_id,
    create_scheduled_runtime,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
)
from abstractruntime.core.artifacts import MAX_TAG_LENGTH, is_artifact_id
from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore, SqlStore

FIXTURE = Path(__file__).parent / "fixtures" / "original_artifacts"
KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "file"]
Factory = Callable[[], ArtifactStore]


@pytest.fixture(params=KINDS)
async def artifact_stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Makes artifact stores that all see the same artifacts (SQL: one ``SqlStore`` each)."""
    kind = request.param
    made: list[SqlStore] = []
    if kind == "memory":
        shared = InMemoryArtifactStore()

        def factory() -> ArtifactStore:
            return shared

    elif kind == "file":

        def factory() -> ArtifactStore:
            return FileArtifactStore(tmp_path / "files")

    else:
        url = str(request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url"))

        def factory() -> ArtifactStore:
            sql = SqlStore(url)
            made.append(sql)
            return sql.artifacts

    factory.kind = kind
    yield factory
    for sql in made:
        await sql.close()


@pytest.fixture
def store(artifact_stores: Factory) -> ArtifactStore:
    return artifact_stores()


# -- the original's TestInMemoryArtifactStore, on every store ---------------------------------


async def test_store_and_load_bytes(store: ArtifactStore) -> None:
    content = b"Hello, World!"
    metadata = await store.store(content, content_type="text/plain")
    assert metadata.artifact_id is not None
    assert metadata.content_type == "text/plain"
    assert metadata.size_bytes == len(content)
    artifact = await store.load(metadata.artifact_id)
    assert artifact is not None
    assert artifact.content == content
    assert artifact.content_type == "text/plain"
    assert artifact.metadata == metadata


async def test_content_addressed_id(store: ArtifactStore) -> None:
    meta1 = await store.store(b"Deterministic content")
    meta2 = await store.store(b"Deterministic content")
    assert meta1.artifact_id == meta2.artifact_id
    assert len(await store.list_all()) == 1


async def test_different_content_different_id(store: ArtifactStore) -> None:
    meta1 = await store.store(b"Content A")
    meta2 = await store.store(b"Content B")
    assert meta1.artifact_id != meta2.artifact_id


async def test_explicit_artifact_id(store: ArtifactStore) -> None:
    metadata = await store.store(b"content", artifact_id="my-custom-id")
    assert metadata.artifact_id == "my-custom-id"
    assert await store.exists("my-custom-id")


async def test_exists(store: ArtifactStore) -> None:
    assert not await store.exists("nonexistent")
    metadata = await store.store(b"content")
    assert await store.exists(metadata.artifact_id)


async def test_delete(store: ArtifactStore) -> None:
    metadata = await store.store(b"content")
    assert await store.delete(metadata.artifact_id) is True
    assert not await store.exists(metadata.artifact_id)
    assert await store.load(metadata.artifact_id) is None
    assert await store.delete("nonexistent") is False


async def test_get_metadata(store: ArtifactStore) -> None:
    metadata = await store.store(b"x" * 10000, content_type="application/octet-stream")
    loaded = await store.get_metadata(metadata.artifact_id)
    assert loaded is not None
    assert loaded.artifact_id == metadata.artifact_id
    assert loaded.size_bytes == 10000
    assert await store.get_metadata("nonexistent") is None


async def test_list_by_run(store: ArtifactStore) -> None:
    await store.store(b"run1-a", run_id="run-1")
    await store.store(b"run1-b", run_id="run-1")
    await store.store(b"run2-a", run_id="run-2")
    await store.store(b"no-run")
    assert len(await store.list_by_run("run-1")) == 2
    assert len(await store.list_by_run("run-2")) == 1
    assert len(await store.list_by_run("run-3")) == 0


async def test_tags(store: ArtifactStore) -> None:
    metadata = await store.store(b"content", tags={"source": "llm", "model": "gpt-4"})
    loaded = await store.get_metadata(metadata.artifact_id)
    assert loaded is not None
    assert loaded.tags == {"source": "llm", "model": "gpt-4"}


# -- TestArtifactConvenienceMethods ------------------------------------------------------------


async def test_store_text(store: ArtifactStore) -> None:
    metadata = await store.store_text("Hello, World!")
    assert metadata.content_type == "text/plain"
    assert await store.load_text(metadata.artifact_id) == "Hello, World!"


async def test_store_json(store: ArtifactStore) -> None:
    data = {"key": "value", "nested": {"a": 1, "b": [1, 2, 3]}}
    metadata = await store.store_json(data)
    assert metadata.content_type == "application/json"
    assert await store.load_json(metadata.artifact_id) == data
    # The original's bytes (compact, UTF-8), so the same data gets the original's id.
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    assert metadata.artifact_id == hashlib.sha256(compact).hexdigest()[:32]


async def test_store_text_with_encoding(store: ArtifactStore) -> None:
    text = "Héllo, 世界! 🌍"
    metadata = await store.store_text(text)
    assert await store.load_text(metadata.artifact_id) == text
    latin = await store.store_text("Héllo", encoding="latin-1", content_type="text/x-latin")
    assert await store.load_text(latin.artifact_id, encoding="latin-1") == "Héllo"
    assert latin.size_bytes == 5


async def test_load_nonexistent_returns_none(store: ArtifactStore) -> None:
    assert await store.load("nonexistent") is None
    assert await store.load_text("nonexistent") is None
    assert await store.load_json("nonexistent") is None


# -- TestFileArtifactStore ---------------------------------------------------------------------


async def test_file_store_writes_the_original_layout(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    metadata = await store.store(b"Persistent content", content_type="text/plain")
    artifacts_dir = tmp_path / "artifacts"
    assert (artifacts_dir / f"{metadata.artifact_id}.bin").read_bytes() == b"Persistent content"
    meta_file = artifacts_dir / f"{metadata.artifact_id}.meta"
    # Byte for byte what the original's json.dump(..., ensure_ascii=False, indent=2) writes.
    expected = json.dumps(metadata.to_dict(), ensure_ascii=False, indent=2)
    assert meta_file.read_text(encoding="utf-8") == expected
    assert list(json.loads(expected)) == [
        "artifact_id",
        "content_type",
        "size_bytes",
        "created_at",
        "run_id",
        "tags",
    ]
    artifact = await store.load(metadata.artifact_id)
    assert artifact is not None and artifact.content == b"Persistent content"
    assert sorted(p.name for p in artifacts_dir.iterdir()) == sorted(
        [f"{metadata.artifact_id}.bin", f"{metadata.artifact_id}.meta"]
    )  # no temporary file left behind


async def test_file_store_persistence_across_instances(tmp_path: Path) -> None:
    metadata = await FileArtifactStore(tmp_path).store_json({"persistent": True})
    assert await FileArtifactStore(tmp_path).load_json(metadata.artifact_id) == {"persistent": True}


async def test_file_store_delete_removes_files(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    metadata = await store.store(b"content")
    content_path = tmp_path / "artifacts" / f"{metadata.artifact_id}.bin"
    meta_path = tmp_path / "artifacts" / f"{metadata.artifact_id}.meta"
    assert content_path.exists() and meta_path.exists()
    assert await store.delete(metadata.artifact_id)
    assert not content_path.exists() and not meta_path.exists()


async def test_file_store_touches_nothing_until_it_writes(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "later")
    assert await store.list_all() == [] and not await store.exists("x")
    assert not (tmp_path / "later").exists()
    await store.store(b"now")
    assert (tmp_path / "later" / "artifacts").is_dir()


async def test_file_store_half_written_pairs_are_not_artifacts(tmp_path: Path) -> None:
    """An interrupted store leaves a .bin alone (content goes first), an interrupted delete
    too (metadata goes first): neither is listed, exists, or loads."""
    store = FileArtifactStore(tmp_path)
    meta = await store.store(b"whole")
    (tmp_path / "artifacts" / "orphan.bin").write_bytes(b"half")
    assert not await store.exists("orphan") and await store.load("orphan") is None
    assert [m.artifact_id for m in await store.list_all()] == [meta.artifact_id]


async def test_file_store_reports_a_torn_pair_and_skips_bad_metadata(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    meta = await store.store(b"four", artifact_id="torn")
    (tmp_path / "artifacts" / "torn.bin").write_bytes(b"other content")
    with pytest.raises(StoreError, match="torn"):
        await store.load("torn")
    (tmp_path / "artifacts" / "bad.meta").write_text("{not json")
    (tmp_path / "artifacts" / "bad.bin").write_bytes(b"")
    with pytest.raises(StoreError, match=r"bad\.meta"):
        await store.get_metadata("bad")
    assert [m.artifact_id for m in await store.list_all()] == [meta.artifact_id]


# -- the original's directory opens here -------------------------------------------------------


def _expected() -> list[dict[str, Any]]:
    return json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


async def test_a_directory_the_original_wrote_opens_here(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "orig")
    store = FileArtifactStore(tmp_path / "orig")
    expected = _expected()
    assert len(expected) == 5
    for item in expected:
        meta = ArtifactMetadata.from_dict(item["metadata"])
        content = bytes.fromhex(item["content_hex"])
        assert await store.get_metadata(meta.artifact_id) == meta
        assert await store.load(meta.artifact_id) == Artifact(meta, content)
        assert await store.get(meta.artifact_id) == content
        assert await store.exists(meta.artifact_id)
        if meta.artifact_id != "my-report_1":  # the original's own content address
            assert meta.artifact_id == compute_artifact_id(content)
    everything = await store.list_all()
    assert sorted(m.artifact_id for m in everything) == [
        i["metadata"]["artifact_id"] for i in expected
    ]
    created = [m.created_at for m in everything]
    assert created == sorted(created, reverse=True)
    assert {m.artifact_id for m in await store.list_by_run("run-1")} == {
        i["metadata"]["artifact_id"] for i in expected if i["metadata"]["run_id"] == "run-1"
    }
    [note] = await store.search(tags={"kind": "note"})
    assert await store.load_text(note.artifact_id) == "Héllo, 世界! 🌍"
    [chosen] = await store.search(run_id="run-2", content_type="text/plain")
    assert chosen.artifact_id == "my-report_1"
    # ... and goes on here: a store under the original's id replaces it, as there.
    again = await store.store_text("Héllo, 世界! 🌍", run_id="run-1", tags={"kind": "note"})
    assert again.artifact_id == note.artifact_id
    assert (await store.get_metadata(note.artifact_id)).tags == {"kind": "note"}  # type: ignore[union-attr]
    assert await store.delete_by_run("run-1") == 2
    assert len(await store.list_all()) == 3


async def test_the_original_reads_a_directory_written_here(
    tmp_path: Path, original_python: str
) -> None:
    store = FileArtifactStore(tmp_path)
    text = await store.store_text("Grüße", run_id="run-1", tags={"k": "v"})
    chosen = await store.store(b"\x00raw", artifact_id="chosen_id", content_type="x/y")
    script = textwrap.dedent(
        f"""
        import json, sys
        from abstractruntime import FileArtifactStore
        store = FileArtifactStore({str(tmp_path)!r})
        out = {{m.artifact_id: m.to_dict() for m in store.list_all()}}
        out["text"] = store.load_text({text.artifact_id!r})
        out["raw"] = store.load({chosen.artifact_id!r}).content.hex()
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [str(original_python), "-c", script], capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout)
    assert seen[text.artifact_id] == text.to_dict()
    assert seen[chosen.artifact_id] == chosen.to_dict()
    assert (seen["text"], seen["raw"]) == ("Grüße", b"\x00raw".hex())


# -- TestArtifactReferences --------------------------------------------------------------------


def test_artifact_ref() -> None:
    assert artifact_ref("abc123") == {"$artifact": "abc123"}


def test_is_artifact_ref() -> None:
    assert is_artifact_ref({"$artifact": "abc123"})
    assert not is_artifact_ref({"other": "value"})
    assert not is_artifact_ref("string")
    assert not is_artifact_ref(123)
    assert not is_artifact_ref(None)


def test_get_artifact_id() -> None:
    assert get_artifact_id(artifact_ref("my-id")) == "my-id"


async def test_resolve_artifact(store: ArtifactStore) -> None:
    metadata = await store.store_json({"resolved": True})
    artifact = await resolve_artifact(artifact_ref(metadata.artifact_id), store)
    assert artifact is not None
    assert artifact.as_json() == {"resolved": True}


async def test_resolve_nonexistent(store: ArtifactStore) -> None:
    assert await resolve_artifact(artifact_ref("nonexistent"), store) is None
    assert await resolve_artifact({"not": "a ref"}, store) is None


# -- TestArtifactRuntimeIntegration (Runtime(artifact_store=...) comes with the runtime's part of
#    issue #11; these run once it is there) ---------------------------------------------------


def test_runtime_has_artifact_store() -> None:
    artifact_store = InMemoryArtifactStore()
    runtime = Runtime(
        run_store=InMemoryRunStore(),
        ledger_store=InMemoryLedgerStore(),
        artifact_store=artifact_store,
    )
    assert runtime.artifact_store is artifact_store


def test_set_artifact_store() -> None:
    runtime = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    assert runtime.artifact_store is None
    artifact_store = InMemoryArtifactStore()
    runtime.set_artifact_store(artifact_store)
    assert runtime.artifact_store is artifact_store


async def test_scheduled_runtime_with_artifact_store() -> None:
    artifact_store = InMemoryArtifactStore()
    sr = await create_scheduled_runtime(artifact_store=artifact_store, auto_start=False)
    try:
        assert sr.runtime.artifact_store is artifact_store
    finally:
        await sr.stop()


# -- TestArtifactWorkflowIntegration -----------------------------------------------------------


async def test_store_large_result_as_artifact(store: ArtifactStore) -> None:
    large_data = {"items": [f"item-{i}" for i in range(1000)]}

    async def process_node(run: RunState, ctx: Any) -> StepPlan:
        metadata = await store.store_json(large_data, run_id=run.run_id)
        return StepPlan(
            node_id="process",
            complete_output={
                "result_ref": artifact_ref(metadata.artifact_id),
                "artifact_id": metadata.artifact_id,
            },
        )

    workflow = WorkflowSpec("artifact_workflow", "process", {"process": process_node})
    runtime = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    run_id = await runtime.start(workflow=workflow)
    state = await runtime.tick(workflow=workflow, run_id=run_id)
    assert state.status == RunStatus.COMPLETED
    assert state.output is not None and is_artifact_ref(state.output["result_ref"])
    artifact = await resolve_artifact(state.output["result_ref"], store)
    assert artifact is not None and artifact.as_json() == large_data
    assert len(await store.list_by_run(run_id)) == 1


async def test_pass_artifact_between_nodes(store: ArtifactStore) -> None:
    async def producer_node(run: RunState, ctx: Any) -> StepPlan:
        metadata = await store.store_json({"produced": "data", "size": 1000}, run_id=run.run_id)
        run.vars["data_ref"] = artifact_ref(metadata.artifact_id)
        return StepPlan(node_id="producer", next_node="consumer")

    async def consumer_node(run: RunState, ctx: Any) -> StepPlan:
        artifact = await resolve_artifact(run.vars["data_ref"], store)
        assert artifact is not None
        data = artifact.as_json()
        return StepPlan(
            node_id="consumer",
            complete_output={"consumed": data["produced"], "size": data["size"]},
        )

    workflow = WorkflowSpec(
        "producer_consumer", "producer", {"producer": producer_node, "consumer": consumer_node}
    )
    runtime = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    run_id = await runtime.start(workflow=workflow)
    state = await runtime.tick(workflow=workflow, run_id=run_id)
    assert state.status == RunStatus.COMPLETED
    assert state.output == {"consumed": "data", "size": 1000}


# -- TestArtifactEdgeCases ---------------------------------------------------------------------


async def test_empty_content(store: ArtifactStore) -> None:
    metadata = await store.store(b"")
    assert metadata.size_bytes == 0
    artifact = await store.load(metadata.artifact_id)
    assert artifact is not None and artifact.content == b""


async def test_large_content(store: ArtifactStore) -> None:
    content = b"x" * (1024 * 1024) + b"tail"  # over the size hashed in a worker thread
    metadata = await store.store(content)
    assert metadata.size_bytes == len(content)
    artifact = await store.load(metadata.artifact_id)
    assert artifact is not None and artifact.content == content


async def test_binary_content(store: ArtifactStore) -> None:
    content = bytes(range(256))
    metadata = await store.store(content, content_type="application/octet-stream")
    artifact = await store.load(metadata.artifact_id)
    assert artifact is not None and artifact.content == content


async def test_unicode_in_json(store: ArtifactStore) -> None:
    data = {"emoji": "🎉🚀", "chinese": "你好世界", "arabic": "مرحبا", "math": "∑∏∫"}
    metadata = await store.store_json(data)
    assert await store.load_json(metadata.artifact_id) == data


# -- TestArtifactListAll -----------------------------------------------------------------------


async def test_list_all_empty(store: ArtifactStore) -> None:
    assert await store.list_all() == []


async def test_list_all_returns_all_newest_first(store: ArtifactStore) -> None:
    ids = [(await store.store(c)).artifact_id for c in (b"a", b"b", b"c")]
    listed = await store.list_all()
    assert len(listed) == 3
    assert [m.artifact_id for m in listed] == ids[::-1]
    assert [m.artifact_id for m in await store.list_all(limit=None)] == ids[::-1]


async def test_list_all_respects_limit(store: ArtifactStore) -> None:
    for i in range(10):
        await store.store(f"content-{i}".encode())
    assert len(await store.list_all(limit=5)) == 5
    assert await store.list_all(limit=0) == []


# -- TestArtifactSearch ------------------------------------------------------------------------


async def test_search_filters(store: ArtifactStore) -> None:
    a = await store.store(b"a", run_id="run-1", content_type="text/plain", tags={"kind": "note"})
    await store.store(b"b", run_id="run-1", content_type="application/json", tags={"kind": "data"})
    c = await store.store(b"c", run_id="run-2", content_type="text/plain", tags={"kind": "note"})

    res = await store.search(run_id="run-1", content_type="text/plain")
    assert [m.artifact_id for m in res] == [a.artifact_id]
    res = await store.search(tags={"kind": "note"})
    assert [m.artifact_id for m in res] == [c.artifact_id, a.artifact_id]  # newest first
    assert await store.search(tags={"kind": "note", "other": "x"}) == []
    assert await store.search(tags={"kind": "NOTE"}) == []  # case-sensitive, as the original
    assert len(await store.search()) == 3
    assert len(await store.search(tags={})) == 3


async def test_search_applies_the_limit_after_the_filter(store: ArtifactStore) -> None:
    """The original, without run_id, filtered only the newest ``limit``; here every match."""
    old = await store.store(b"old", tags={"k": "v"})
    for i in range(3):
        await store.store(f"new-{i}".encode())
    assert [m.artifact_id for m in await store.search(tags={"k": "v"}, limit=2)] == [
        old.artifact_id
    ]


async def test_restore_replaces_metadata_and_tags(store: ArtifactStore) -> None:
    first = await store.store(b"same", run_id="run-1", tags={"a": "1", "b": "2"})
    second = await store.store(b"same", run_id="run-2", tags={"a": "9"}, content_type="x/y")
    assert first.artifact_id == second.artifact_id
    assert await store.get_metadata(first.artifact_id) == second
    assert await store.search(tags={"b": "2"}) == []
    assert await store.search(tags={"a": "1"}) == []
    assert [m.artifact_id for m in await store.search(tags={"a": "9"})] == [first.artifact_id]
    assert await store.list_by_run("run-1") == []
    chosen = await store.store(b"v1", artifact_id="doc")
    await store.store(b"version two", artifact_id="doc")
    assert await store.get("doc") == b"version two"
    assert (await store.get_metadata("doc")).size_bytes == 11  # type: ignore[union-attr]
    assert chosen.size_bytes == 2


# -- TestArtifactDeleteByRun -------------------------------------------------------------------


async def test_delete_by_run(store: ArtifactStore) -> None:
    await store.store(b"a", run_id="run-1", tags={"t": "x"})
    await store.store(b"b", run_id="run-1")
    await store.store(b"c", run_id="run-2", tags={"t": "x"})
    assert await store.delete_by_run("run-1") == 2
    assert len(await store.list_by_run("run-1")) == 0
    assert len(await store.list_by_run("run-2")) == 1
    assert len(await store.search(tags={"t": "x"})) == 1


async def test_delete_by_run_nonexistent(store: ArtifactStore) -> None:
    assert await store.delete_by_run("nonexistent") == 0


# -- TestArtifactIdValidation, on every store --------------------------------------------------

VALID = ["abc123", "my-artifact", "test_artifact", "ABC-123_test", "a" * 250, "-", "_x"]
INVALID = [
    "../../../etc/passwd",
    "test/file",
    "test.file",
    "..",
    "a\\b",
    "a b",
    "x\n",  # the original's pattern (re.match with $) let a trailing newline through
    "é",
    "a" * 251,
    "nul\x00",
]


async def test_valid_artifact_ids(store: ArtifactStore) -> None:
    for i, artifact_id in enumerate(VALID):
        await store.store(f"{i}".encode(), artifact_id=artifact_id)
    for i, artifact_id in enumerate(VALID):
        assert await store.exists(artifact_id)
        assert await store.get(artifact_id) == f"{i}".encode()
    # Case is part of an id (on a case-sensitive file system for the file store).
    assert not await store.exists("abc-123_test")


async def test_invalid_artifact_ids_are_refused_everywhere(
    store: ArtifactStore, tmp_path: Path
) -> None:
    for artifact_id in INVALID:
        with pytest.raises(InvalidArgumentError, match="Invalid artifact_id"):
            await store.store(b"evil", artifact_id=artifact_id)
        for read in (store.load, store.get_metadata, store.exists, store.delete, store.get):
            with pytest.raises(InvalidArgumentError, match="Invalid artifact_id"):
                await read(artifact_id)
    with pytest.raises(InvalidArgumentError, match="cannot be empty"):
        await store.store(b"content", artifact_id="")
    with pytest.raises(ValueError, match="Invalid artifact_id"):  # the original's exception
        await store.store(b"content", artifact_id="a.b")
    assert await store.list_all() == []
    assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []  # the file store


async def test_bad_content_tags_and_run_ids_are_refused(store: ArtifactStore) -> None:
    with pytest.raises(TypeError, match="bytes"):
        await store.store("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="content_type"):
        await store.store(b"x", content_type="")
    with pytest.raises(InvalidArgumentError, match="tag"):
        await store.store(b"x", tags={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="255"):
        await store.store(b"x", tags={"k": "v" * 256})
    with pytest.raises(InvalidArgumentError, match="run_id"):
        await store.store(b"x", run_id="r" * 65)
    with pytest.raises(InvalidArgumentError, match="NUL"):
        await store.store(b"x", run_id="r\x00")
    assert await store.list_all() == []
    assert await store.list_by_run("r\x00") == []
    assert await store.search(content_type="a\x00", tags={"k\x00": "v"}) == []
    assert await store.search(tags={"n": 1}) == []  # type: ignore[dict-item]
    assert await store.list_by_run(7) == []  # type: ignore[arg-type]
    assert await store.delete_by_run(7) == 0  # type: ignore[arg-type]


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    artifact_id=st.text(max_size=260) | st.from_regex(r"[A-Za-z0-9_-]{1,250}", fullmatch=True),
    key=st.text(max_size=260),
    value=st.text(st.characters(), max_size=260),
    content=st.binary(max_size=300),
)
@example(artifact_id="..", key="k", value="v", content=b"x")
@example(artifact_id="ok", key="\ud800", value="v", content=b"x")
@example(artifact_id="ok", key="k", value="lone \udfff", content=b"x")
@example(artifact_id="ok-" + "z" * 247, key="ü" * 255, value="💥" * 255, content=b"")
async def test_hostile_ids_and_tags_round_trip_or_are_refused(
    store: ArtifactStore, artifact_id: str, key: str, value: str, content: bytes
) -> None:
    """Any id and tag either round-trips exactly (and is found by its tag) or is refused with
    ``InvalidArgumentError`` naming what is wrong, on every store."""

    def storable(text: str) -> bool:
        if len(text) > MAX_TAG_LENGTH or "\x00" in text:
            return False
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True

    valid = is_artifact_id(artifact_id) and storable(key) and storable(value)
    try:
        meta = await store.store(content, artifact_id=artifact_id, tags={key: value}, run_id="r")
    except InvalidArgumentError as exc:
        assert not valid
        assert "artifact_id" in str(exc) or "tag" in str(exc)
        return
    assert valid
    assert await store.load(artifact_id) == Artifact(meta, content)
    assert artifact_id in [m.artifact_id for m in await store.search(tags={key: value})]
    assert artifact_id in [m.artifact_id for m in await store.list_by_run("r")]


# -- TestComputeArtifactId ---------------------------------------------------------------------


def test_compute_artifact_id_is_the_originals() -> None:
    content = b"test content"
    assert compute_artifact_id(content) == compute_artifact_id(content)
    assert len(compute_artifact_id(content)) == 32  # first 32 hex digits of the SHA-256
    assert compute_artifact_id(content) == "6ae8a75555209fd6c44157c0aed8016e"
    assert compute_artifact_id(content) == hashlib.sha256(content).hexdigest()[:32]
    assert compute_artifact_id(b"content a") != compute_artifact_id(b"content b")


async def test_compute_artifact_id_check_before_store(store: ArtifactStore) -> None:
    content = b"check this content"
    artifact_id = compute_artifact_id(content)
    assert not await store.exists(artifact_id)
    await store.store(content)
    assert await store.exists(artifact_id)


# -- ours beside the original's: put / get / info ----------------------------------------------


async def test_put_and_store_share_one_id_space(store: ArtifactStore) -> None:
    data = b"shared bytes"
    put_id = await store.put(data, content_type="text/plain")
    assert put_id == hashlib.sha256(data).hexdigest()  # ours: the whole SHA-256
    stored = await store.store(data, run_id="run-1")
    assert stored.artifact_id == compute_artifact_id(data) == put_id[:32]  # the original's
    for artifact_id in (put_id, stored.artifact_id):
        assert await store.get(artifact_id) == data
        info = await store.info(artifact_id)
        assert info is not None and info.size == len(data)
        assert info.created_at.tzinfo is not None
    put_artifact = await store.load(put_id)
    assert put_artifact is not None
    assert (put_artifact.metadata.run_id, put_artifact.metadata.tags) == (None, {})
    assert put_artifact.content_type == "text/plain"
    assert [m.artifact_id for m in await store.list_by_run("run-1")] == [stored.artifact_id]
    assert await store.put(data, content_type="x/other") == put_id  # the first one wins
    assert (await store.info(put_id)).content_type == "text/plain"  # type: ignore[union-attr]
    assert len(await store.list_all()) == 2


async def test_metadata_read_back_is_a_copy(store: ArtifactStore) -> None:
    meta = await store.store(b"x", tags={"a": "1"})
    meta.tags["a"] = "changed"
    loaded = await store.get_metadata(meta.artifact_id)
    assert loaded is not None and loaded.tags == {"a": "1"}
    loaded.tags["b"] = "2"
    assert (await store.get_metadata(meta.artifact_id)).tags == {"a": "1"}  # type: ignore[union-attr]


# -- concurrency -------------------------------------------------------------------------------


async def test_concurrent_stores_of_the_same_bytes_keep_one_whole_artifact(
    artifact_stores: Factory,
) -> None:
    """Several stores (connections, processes in real life) store the same bytes at once, with
    different metadata: one artifact, whole, whose tags are those of one of the writers, and
    the tag index agrees with them."""
    stores = [artifact_stores() for _ in range(4)]
    data = b"raced" * 50_000
    metas = await asyncio.gather(
        *(
            s.store(data, run_id=f"run-{i}", tags={"writer": str(i), "same": "yes"})
            for i, s in enumerate(stores)
        )
    )
    artifact_id = compute_artifact_id(data)
    assert {m.artifact_id for m in metas} == {artifact_id}
    final = await stores[0].get_metadata(artifact_id)
    assert final is not None and final.tags["same"] == "yes"
    writer = final.tags["writer"]
    assert final.run_id == f"run-{writer}"
    assert [m.artifact_id for m in await stores[1].search(tags={"writer": writer})] == [artifact_id]
    assert [m.tags for m in await stores[2].search(tags={"same": "yes"})] == [final.tags]
    assert await stores[3].get(artifact_id) == data
    assert len(await stores[0].list_all()) == 1
    puts = await asyncio.gather(*(s.put(data) for s in stores for _ in range(2)))
    assert set(puts) == {hashlib.sha256(data).hexdigest()}
    assert len(await stores[0].list_all()) == 2


# -- SQL only ----------------------------------------------------------------------------------


async def test_sql_reads_detect_altered_bytes_whatever_the_id(db_url: str) -> None:
    async with SqlStore(db_url) as sql:
        ids = [
            (await sql.artifacts.store(b"original")).artifact_id,
            (await sql.artifacts.store(b"chosen", artifact_id="mine")).artifact_id,
            await sql.artifacts.put(b"put"),
        ]
        async with sql.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE abstractruntime_artifacts SET data = :d"), {"d": b"forged"}
            )
        for artifact_id in ids:
            with pytest.raises(StoreError, match=f"artifact {artifact_id}.*altered"):
                await sql.artifacts.load(artifact_id)
        assert (await sql.artifacts.get_metadata("mine")) is not None  # metadata stays readable


async def test_sql_tags_live_in_their_indexed_table(db_url: str) -> None:
    async with SqlStore(db_url) as sql:
        meta = await sql.artifacts.store(b"x", tags={"k": "v", "k2": "v2"})
        async with sql.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT artifact_id, key, value FROM abstractruntime_artifact_tags")
            )
            assert sorted(tuple(r) for r in rows) == [
                (meta.artifact_id, "k", "v"),
                (meta.artifact_id, "k2", "v2"),
            ]
        assert await sql.artifacts.delete(meta.artifact_id)
        async with sql.engine.connect() as conn:
            count = await conn.scalar(sa.text("SELECT count(*) FROM abstractruntime_artifact_tags"))
        assert count == 0


# -- the file store never blocks the event loop ------------------------------------------------


async def test_file_store_io_runs_in_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    loop_thread = threading.get_ident()
    seen: list[int] = []
    real_open = os.open

    def spying_open(*args: Any, **kwargs: Any) -> int:
        seen.append(threading.get_ident())
        return real_open(*args, **kwargs)

    monkeypatch.setattr(os, "open", spying_open)
    store = FileArtifactStore(tmp_path)
    meta = await store.store(b"x")
    await store.delete(meta.artifact_id)
    assert seen and loop_thread not in seen


# -- the port's defaults serve a store written for the original ---------------------------------


class _DictStore(ArtifactStore):
    """Only the original's seven abstract methods, as a user's own store would have."""

    def __init__(self) -> None:
        self.items: dict[str, Artifact] = {}

    async def store(  # type: ignore[override]
        self,
        content: bytes,
        *,
        content_type: str = "application/octet-stream",
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        artifact_id: str | None = None,
    ) -> ArtifactMetadata:
        artifact_id = artifact_id or compute_artifact_id(content)
        at = "2026-01-01T00:00:00+00:00"
        meta = ArtifactMetadata(artifact_id, content_type, len(content), at, run_id, tags or {})
        self.items[artifact_id] = Artifact(meta, content)
        return meta

    async def load(self, artifact_id: str) -> Artifact | None:
        return self.items.get(artifact_id)

    async def get_metadata(self, artifact_id: str) -> ArtifactMetadata | None:
        found = self.items.get(artifact_id)
        return None if found is None else found.metadata

    async def exists(self, artifact_id: str) -> bool:
        return artifact_id in self.items

    async def delete(self, artifact_id: str) -> bool:
        return self.items.pop(artifact_id, None) is not None

    async def list_by_run(self, run_id: str) -> list[ArtifactMetadata]:
        return [a.metadata for a in self.items.values() if a.metadata.run_id == run_id]

    async def list_all(self, *, limit: int | None = 1000) -> list[ArtifactMetadata]:
        return [a.metadata for a in self.items.values()][:limit]


async def test_a_store_with_only_the_abstract_methods_gets_the_rest() -> None:
    store = _DictStore()
    assert isinstance(store, ArtifactStore) and isinstance(InMemoryArtifactStore(), ArtifactStore)
    assert issubclass(FileArtifactStore, ArtifactStore) and not isinstance(object(), ArtifactStore)
    meta = await store.store_json({"a": 1}, run_id="r", tags={"k": "v"})
    assert await store.load_json(meta.artifact_id) == {"a": 1}
    assert [m.artifact_id for m in await store.search(tags={"k": "v"})] == [meta.artifact_id]
    put_id = await store.put(b"bytes")
    assert await store.get(put_id) == b"bytes"
    assert (await store.info(put_id)).size == 5  # type: ignore[union-attr]
    assert await store.delete_by_run("r") == 1

    class Incomplete(ArtifactStore):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]
