"""The ``Snapshot`` dataclass and the artifact reference helpers (no store involved)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from abstractruntime import (
    InvalidArgumentError,
    RunState,
    RunStatus,
    Snapshot,
    artifact_ref,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
)
from abstractruntime.storage import InMemoryArtifactStore


def _state(run_id: str = "r1") -> RunState:
    return RunState(
        run_id=run_id, workflow_id="wf", status=RunStatus.RUNNING, current_node="a", vars={"n": 1}
    )


def test_fields_are_those_of_the_contract_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Snapshot)] == [
        "snapshot_id",
        "run_id",
        "step_id",
        "name",
        "description",
        "tags",
        "created_at",
        "updated_at",
        "run_state",
    ]


def test_from_run_copies_the_state() -> None:
    state = _state()
    snap = Snapshot.from_run(run=state, name="n", tags=["A", "a", " b ", ""])
    state.vars["n"] = 99  # later changes do not leak in
    assert snap.run_id == "r1" and snap.state.vars == {"n": 1}
    assert snap.tags == ["A", "b"]  # trimmed, empty and case-duplicates dropped
    assert len(snap.snapshot_id) == 32
    assert snap.created_at == snap.updated_at and snap.created_at.tzinfo is not None
    assert Snapshot.from_dict(snap.to_dict()) == snap


def test_a_single_string_tag_is_one_tag() -> None:
    assert Snapshot.from_run(run=_state(), name="n", tags="prod").tags == ["prod"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "non-empty name"),
        ({"name": "   "}, "non-empty name"),
        ({"name": "x" * 256}, "at most 255"),
        ({"snapshot_id": ""}, "snapshot_id"),
        ({"run_id": "x" * 65}, "run_id has at most 64"),
        ({"tags": ["x" * 256]}, "tag has at most 255"),
        ({"run_state": {}}, "needs run_state"),
        ({"run_state": {"run_id": "r1"}}, "not the dict of a RunState"),
        ({"run_id": "other"}, "belongs to run 'r1'"),
    ],
)
def test_invalid_snapshots_are_refused(changes: dict[str, object], message: str) -> None:
    fields = Snapshot.from_run(run=_state(), name="ok").to_dict() | changes
    with pytest.raises(ValueError, match=message):
        Snapshot.from_dict(fields)


def test_matches_is_the_filter_of_list() -> None:
    snap = Snapshot.from_run(run=_state(), name="Before 100%", description="Ünïcode", tags=["Prod"])
    assert snap.matches(tag="prod") and snap.matches(tag="PROD")
    assert snap.matches(query="100%") and snap.matches(query="ünï")
    assert not snap.matches(query="1_0")
    assert not snap.matches(run_id="r2")
    assert snap.matches()


def test_artifact_refs() -> None:
    for artifact_id in (hashlib.sha256(b"x").hexdigest(), "abc", "my-report_2", "A" * 250):
        ref = artifact_ref(artifact_id)
        assert ref == {"$artifact": artifact_id}
        assert is_artifact_ref(ref) and get_artifact_id(ref) == artifact_id
    bad = ("", "../x", "a.b", "a/b", "a b", "x\n", "é", "A" * 251, 7, None)
    for value in (*({"$artifact": b} for b in bad), "abc", None, {}):
        assert not is_artifact_ref(value)
    for artifact_id in bad[1:]:
        with pytest.raises(InvalidArgumentError, match="Invalid artifact_id"):
            artifact_ref(artifact_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="cannot be empty"):
        artifact_ref("")
    with pytest.raises(InvalidArgumentError, match="not an artifact reference"):
        get_artifact_id({"x": 1})


async def test_resolve_artifact_in_memory() -> None:
    store = InMemoryArtifactStore()
    ref = artifact_ref(await store.put(b"payload"))
    artifact = await resolve_artifact(ref, store)
    assert artifact is not None and artifact.content == b"payload"
    assert await resolve_artifact("inline", store) is None
    assert await resolve_artifact(artifact_ref("f" * 64), store) is None
