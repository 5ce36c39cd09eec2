"""Write the parity fixture with the ORIGINAL AbstractRuntime 0.2.0 (run by hand, not by pytest).

    .venv/bin/python tests/parity/make_fixture.py [--keep-venv DIR]

Makes a throwaway venv, ``pip install abstractruntime==0.2.0`` into it, and runs
``_write_with_original.py`` there (with only this directory on ``sys.path``, so it imports the
original, not us). It (re)writes, next to this file:

- ``fixtures/original_0_2_0/``: ``JsonFileRunStore`` + ``HashChainedLedgerStore(JsonlLedgerStore)``
  + ``JsonSnapshotStore`` + ``FileArtifactStore`` in one directory: a run waiting on ``ask_user``,
  one on ``wait_event``, one waiting until a time now past, a completed one, and a parent waiting
  on its ``ask_user`` child (``start_subworkflow``); one snapshot, one artifact.
- ``fixtures/original_0_2_0_unchained/``: the same writer without ``HashChainedLedgerStore``
  (every ``record_hash`` is null), a completed run and a waiting one.
- ``fixtures/original_0_2_0.json``: which run id is which.

``--keep-venv DIR`` keeps the venv at DIR; point ``ABSTRACTRUNTIME_ORIGINAL_PYTHON`` at its
``bin/python`` to run ``test_the_original_reads_what_we_write`` too.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-venv", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="abstractruntime-0.2.0-"))
    venv = args.keep_venv or work / "venv"
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "abstractruntime==0.2.0"], check=True
            )
        for name in ("original_0_2_0", "original_0_2_0_unchained"):
            shutil.rmtree(FIXTURES / name, ignore_errors=True)
        subprocess.run(
            [str(venv / "bin" / "python"), str(HERE / "_write_with_original.py"), str(FIXTURES)],
            check=True,
            cwd=work,
            env={"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin"},
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {FIXTURES}")


if __name__ == "__main__":
    main()
