"""The original's ``tests/test_snapshots.py``, ported: a snapshot store's round trip and search.

The original's first test used ``InMemorySnapshotStore``; it runs here on that store (the
in-memory pair's storage) and on a SQLite file's ``store.snapshots``. Its second test used
``JsonSnapshotStore`` for a store that outlives its process; that is a SQLite file here, read
back through a second ``SqlStore`` (the JSON store's own port is ``test_file_stores.py``'s).
"""

from __future__ import annotations

from typing import Any

from abstractruntime.core.models import RunState
from abstractruntime.storage.snapshots import InMemorySnapshotStore, Snapshot
from tests.parity.backends import Backend, backend_fixture

backend = backend_fixture()


def snapshot_store_of(backend: Backend) -> Any:
    return InMemorySnapshotStore() if backend.kind == "pair" else backend.kwargs["store"].snapshots


async def test_snapshot_store_roundtrip_and_search(backend: Backend) -> None:
    store = snapshot_store_of(backend)
    run = RunState.new(workflow_id="wf", entry_node="n1", vars={"x": 1})
    s1 = Snapshot.from_run(run=run, name="invoice:1", description="first", tags=["prod", "invoice"])
    s2 = Snapshot.from_run(run=run, name="notes", description="misc", tags=["dev"])
    await store.save(s1)
    await store.save(s2)

    loaded = await store.load(s1.snapshot_id)
    assert loaded is not None
    assert loaded.name == "invoice:1"
    assert loaded.run_state["vars"]["x"] == 1

    by_tag = await store.list(tag="invoice")
    assert [s.snapshot_id for s in by_tag] == [s1.snapshot_id]

    by_query = await store.list(query="first")
    assert [s.snapshot_id for s in by_query] == [s1.snapshot_id]


async def test_persisted_snapshot_store_roundtrip(backend: Backend) -> None:
    """A store opened afterwards on the same storage reads the snapshot back (for the
    in-memory pair, which lives as long as its process, the same store)."""
    store = snapshot_store_of(backend)
    run = RunState.new(workflow_id="wf", entry_node="n1", vars={"x": 1})
    snap = Snapshot.from_run(run=run, name="invoice", description="hello", tags=["prod"])
    await store.save(snap)

    reopened = store if backend.kind == "pair" else backend.reopen()["store"].snapshots
    loaded = await reopened.load(snap.snapshot_id)
    assert loaded is not None
    assert loaded.snapshot_id == snap.snapshot_id
    assert loaded.run_state["workflow_id"] == "wf"

    listed = await reopened.list(tag="prod")
    assert [s.snapshot_id for s in listed] == [snap.snapshot_id]
