"""``FileArtifactStore`` killed mid-write (``kill -9`` on a real process) leaves whole artifacts.

The writer stores the same artifacts over and over (the same bytes under the same ids, as
re-running a step does), so a kill lands in the middle of replacing files that exist: a store
that wrote in place would leave them cut short.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from abstractruntime import FileArtifactStore, compute_artifact_id

COUNT = 6


def contents() -> list[bytes]:
    rng = random.Random(7)
    return [rng.randbytes(1_000_000 + i) for i in range(COUNT)]


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from abstractruntime import FileArtifactStore
    from tests.parity.test_artifact_files_crash import contents

    async def main():
        store = FileArtifactStore(sys.argv[1])
        items = contents()
        rounds = 0
        while True:
            for i, content in enumerate(items):
                await store.store(content, run_id="run-1", tags={"i": str(i)})
            rounds += 1
            if rounds == 1:
                print("writing", flush=True)

    asyncio.run(main())
    """
)


async def _check(store: FileArtifactStore, tmp_path: Path) -> None:
    expected = {compute_artifact_id(c): (i, c) for i, c in enumerate(contents())}
    listed = await store.list_all(limit=None)
    assert {m.artifact_id for m in listed} == set(expected)
    for artifact_id, (i, content) in expected.items():
        artifact = await store.load(artifact_id)
        assert artifact is not None and artifact.content == content
        assert (artifact.metadata.run_id, artifact.metadata.tags) == ("run-1", {"i": str(i)})
    # A temporary file a kill left behind is no artifact.
    names = {p.name for p in (tmp_path / "artifacts").iterdir()}
    assert {n for n in names if not n.startswith(".tmp-")} == {
        f"{i}{ext}" for i in expected for ext in (".bin", ".meta")
    }


async def test_killed_writers_leave_only_whole_artifacts(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    store = FileArtifactStore(tmp_path)
    for round_ in range(8):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        ) as child:
            assert child.stdout is not None and child.stdout.readline() == "writing\n"
            time.sleep(0.013 * round_)
            os.kill(child.pid, signal.SIGKILL)
        await _check(store, tmp_path)
