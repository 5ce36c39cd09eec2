"""Blocking file primitives of the file stores (called in a worker thread, never on the loop).

- ``write_atomic``: a temp file in the same directory, written, flushed and fsynced, then
  ``os.replace``-d over the target and the directory fsynced: a reader (or a process started
  after a kill) sees the old file or the new one, never a torn one.
- ``append_lines``: appends to a JSONL file with one ``write`` and an fsync, first cutting
  anything past the length the caller knows to be committed (a torn or uncommitted tail).
- ``DirectoryLock``: an exclusive ``fcntl.flock`` on ``.abstractruntime.lock``, so a second
  process driving the same directory fails at once with a clear error (no-op where ``fcntl``
  does not exist, i.e. Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ...errors import InvalidArgumentError, StoreError

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Ids that are safe as a part of a file name: no separators, no "..", no leading dot.
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")
#: Prefix of our temp files: the original's globs (``run_*.json``) never match them.
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".abstractruntime.lock"


def check_id(what: str, value: str) -> str:
    """``value`` if it is safe in a file name, else ``InvalidArgumentError``."""
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value) or ".." in value:
        raise InvalidArgumentError(
            f"{what} {value!r} cannot name a file: use 1-200 letters, digits, '_', '-' or '.' "
            "(not first), without '..'"
        )
    return value


def fsync_dir(directory: Path) -> None:
    """Make a created, renamed or removed entry of ``directory`` durable."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # pragma: no cover - platforms that cannot open a directory
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def pretty_json(data: Any) -> str:
    """The original's layout: ``json.dump(..., ensure_ascii=False, indent=2)``."""
    return json.dumps(data, ensure_ascii=False, indent=2)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that a crash leaves the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{path} is not valid JSON ({exc}); it was probably torn by a writer that did not "
            "write atomically (the original 0.2 killed mid-save). Restore it from a backup or a "
            "snapshot, or delete it to drop the run."
        ) from exc


def append_lines(path: Path, lines: list[str], committed: int | None) -> int:
    """Append ``lines`` (each ending in a newline) and fsync; returns the file's new size.

    ``committed``: the size the caller knows to be committed; anything past it (a record of a
    step that crashed before its commit, a torn line) is cut first. None: only a torn last
    line (no newline: its append never finished) is cut.
    """
    data = "".join(lines).encode("utf-8")
    # Read and write: cutting a torn last line reads backwards for its newline.
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    created = not path.exists()
    fd = os.open(path, flags, 0o644)
    try:
        size = os.fstat(fd).st_size
        if committed is not None and size > committed:
            os.ftruncate(fd, committed)
        elif committed is None and size:
            _cut_torn_tail(fd, size)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
    return size


def _cut_torn_tail(fd: int, size: int) -> None:
    """Cut the file after its last newline (a torn last line), reading backwards by blocks."""
    end = size
    while end > 0:
        start = max(0, end - 4096)
        block = os.pread(fd, end - start, start)
        if end == size and block.endswith(b"\n"):
            return
        cut = block.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def scan_jsonl(path: Path, limit: int | None = None) -> tuple[list[dict[str, Any]], int, int]:
    """The records of a JSONL ledger: ``(records, valid_bytes, file_size)``.

    Reads at most ``limit`` records. A last line without its newline is a torn append and is
    left out (``valid_bytes`` ends before it); a bad line before the end is a ``StoreError``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0, 0
    records: list[dict[str, Any]] = []
    offset = 0
    while offset < len(raw) and (limit is None or len(records) < limit):
        end = raw.find(b"\n", offset)
        if end < 0:
            break  # torn: the append that wrote it never finished
        line = raw[offset:end].strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StoreError(
                    f"{path}: line {len(records) + 1} is not valid JSON ({exc}); the ledger is "
                    "damaged"
                ) from exc
        offset = end + 1
    return records, offset, len(raw)


class DirectoryLock:
    """An exclusive lock on a directory for this process (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None or fcntl is None:
            return
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{self.directory} is in use by another runtime (pid {holder}, lock "
                f"{path}); one process drives a file store directory at a time - stop the "
                "other one, close its store (await store.close()), or move to a SqlStore "
                "(abstractruntime db import-files) to run several workers"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        for stale in self.directory.glob(f"{TMP_PREFIX}*"):  # temp files of a killed writer
            with contextlib.suppress(OSError):
                stale.unlink()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:  # a store dropped without close() frees its directory
        self.release()
