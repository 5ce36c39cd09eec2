"""The effects' own trace in the chaos tests: one line per execution, on disk (fsynced) before
the effect returns, so it survives the SIGKILL that follows."""

from __future__ import annotations

import os


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
