"""Output of the command line: JSON, aligned tables (streamed when long), and a progress line.

Tables and text go to stdout; with ``--json``, JSON does. Progress goes to stderr, and only when
stderr is a terminal, so pipes and logs never see it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from ..core.models import RunState, RunStatus


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else ``text``."""
    print(to_json(data, indent=2) if args.json else text)


def to_json(data: Any, indent: int | None = None) -> str:
    return json.dumps(data, indent=indent, default=str, ensure_ascii=False)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def when_text(value: Any) -> str:
    """An ISO-8601 timestamp as stored in a ledger record, printed like ``when``."""
    if not isinstance(value, str):
        return "-"
    try:
        return when(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return value


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return when(value)
    return str(value).replace("\n", " ")


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name  value`` lines, the values aligned (``runs show``, ``snapshot show``)."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}" for name, value in pairs)


def describe_state(state: RunState) -> str:
    """A run's state in a few words: status, and where it is or what it ended with."""
    text = f"{state.status.value}"
    if state.status is RunStatus.WAITING and state.waiting is not None:
        text += f" ({state.waiting.reason.value}) at {state.current_node}"
        if state.waiting.prompt:
            text += f": {state.waiting.prompt}"
    elif state.status is RunStatus.RUNNING:
        text += f" at {state.current_node}"
    elif state.status is RunStatus.COMPLETED:
        text += f", output {to_json(state.output)}"
    elif state.error:
        text += f": {state.error}"
    return text


# -- tables ------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as aligned columns under their headers."""
    cells = [[cell(c) for c in row] for row in rows]
    return "\n".join(_table_lines(headers, cells, _widths(headers, cells)))


async def stream_table(
    headers: Sequence[str], rows: AsyncIterator[Sequence[Any]], out: TextIO, sample: int = 500
) -> int:
    """Print rows as they come: the first ``sample`` rows set the column widths, so a table of
    any length is aligned and never held in memory. Returns the number of rows."""
    first: list[list[str]] = []
    count = 0
    async for row in rows:
        count += 1
        if len(first) < sample:
            first.append([cell(c) for c in row])
            if len(first) == sample:
                widths = _print_sample(headers, first, out)
            continue
        out.write(_format_row([cell(c) for c in row], widths) + "\n")
    if len(first) < sample:
        _print_sample(headers, first, out)
    return count


async def stream_json(items: AsyncIterator[Any], out: TextIO) -> None:
    """A JSON array written as the items come (a ledger may not fit in memory)."""
    out.write("[")
    first = True
    async for item in items:
        out.write(("\n  " if first else ",\n  ") + to_json(item))
        first = False
    out.write("\n]\n" if not first else "]\n")


def _format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    out = []
    last = len(cells) - 1
    for index, (text, width) in enumerate(zip(cells, widths, strict=True)):
        if index == last:  # nothing to its right to push out of line
            out.append(text)
        elif len(text) > width:  # only rows after the sample can be wider: keep the columns
            out.append(text[: max(width - 1, 0)] + "…")
        else:
            out.append(text.ljust(width))
    return "  ".join(out).rstrip()


def _widths(headers: Sequence[str], rows: list[list[str]]) -> list[int]:
    return [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]


def _table_lines(headers: Sequence[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    return [_format_row(list(headers), widths)] + [_format_row(row, widths) for row in rows]


def _print_sample(headers: Sequence[str], rows: list[list[str]], out: TextIO) -> list[int]:
    widths = _widths(headers, rows)
    out.write("\n".join(_table_lines(headers, rows, widths)) + "\n")
    return widths


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """One status line on stderr, only when stderr is a terminal; rewritten in place, at most
    every ``interval`` seconds, and erased by ``clear`` (or on leaving a ``with`` block)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.clear()

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
