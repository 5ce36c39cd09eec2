"""Writes ``fixtures/original_artifacts/`` with the original AbstractRuntime 0.2.0 itself.

Run it with a Python that has the original installed (not this project), e.g.:

    python3 -m venv /tmp/v020 && /tmp/v020/bin/pip install abstractruntime==0.2.0
    /tmp/v020/bin/python tests/parity/make_artifact_fixture.py

It writes the artifacts through the original's ``FileArtifactStore`` and, next to them in
``expected.json``, what the original reads back (metadata and content as hex), which
``test_artifacts.py`` compares with what ``FileArtifactStore`` reads here.
"""

from __future__ import annotations

import json
import shutil
import sys
from importlib import metadata
from pathlib import Path

from abstractruntime import FileArtifactStore  # the original's, synchronous

OUT = Path(__file__).resolve().parent / "fixtures" / "original_artifacts"


def main() -> None:
    version = metadata.version("abstractruntime")
    if version != "0.2.0":
        sys.exit(f"this needs the original abstractruntime 0.2.0, found {version}")
    shutil.rmtree(OUT, ignore_errors=True)
    store = FileArtifactStore(OUT)
    store.store(b"plain bytes \x00\x01\xff", content_type="application/octet-stream")
    store.store_text("Héllo, 世界! 🌍", run_id="run-1", tags={"kind": "note", "lang": "mixed"})
    store.store_json({"items": [1, 2.5, "x", None], "ok": True}, run_id="run-1")
    store.store(b"chosen", content_type="text/plain", run_id="run-2", artifact_id="my-report_1")
    store.store(b"", tags={"empty": "yes"})
    expected = []
    for meta in store.list_all():
        artifact = store.load(meta.artifact_id)
        assert artifact is not None
        expected.append({"metadata": meta.to_dict(), "content_hex": artifact.content.hex()})
    expected.sort(key=lambda item: item["metadata"]["artifact_id"])
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(expected)} artifacts to {OUT}")


if __name__ == "__main__":
    main()
