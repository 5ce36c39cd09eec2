"""The command line's output helpers: aligned tables, streamed tables, terminal-only progress."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

from abstractruntime.cli.output import Progress, stream_table, table


def test_table_aligns_columns_and_shows_missing_values() -> None:
    text = table(("ID", "NAME", "LAST"), [["a", None, "x"], ["long-id", "n", ""]])
    assert text.splitlines() == [
        "ID       NAME  LAST",
        "a        -     x",
        "long-id  n     -",
    ]


async def test_a_streamed_table_keeps_its_columns_past_the_sample() -> None:
    async def rows() -> AsyncIterator[list[Any]]:
        yield ["a", "short"]
        yield ["b", "also"]
        yield ["c", "much longer than the sample"]  # after the sample: truncated, not shifted

    out = io.StringIO()
    assert await stream_table(("K", "VALUE"), rows(), out, sample=2) == 3
    assert out.getvalue().splitlines() == [
        "K  VALUE",
        "a  short",
        "b  also",
        "c  much longer than the sample",
    ]

    async def wide() -> AsyncIterator[list[Any]]:
        yield ["a", "x"]
        yield ["much longer key", "y"]

    out = io.StringIO()
    await stream_table(("K", "V"), wide(), out, sample=1)
    assert out.getvalue().splitlines() == ["K  V", "a  x", "…  y"]


def test_progress_is_silent_unless_stderr_is_a_terminal() -> None:
    pipe = io.StringIO()
    progress = Progress(pipe)
    progress.update("working", force=True)
    progress.clear()
    assert pipe.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    progress = Progress(tty, interval=3600)
    progress.update("one", force=True)
    progress.update("two")  # within the interval: not redrawn
    progress.clear()
    assert tty.getvalue() == "\r\x1b[2Kone\r\x1b[2K"
