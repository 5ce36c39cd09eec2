#!/usr/bin/env python3
"""Draw the spans of one trace as a waterfall (SVG), from a JSON-lines span file.

    python scripts/waterfall.py SPANS.jsonl OUT.svg [--trace TRACE_ID] [--title TEXT]

``SPANS.jsonl`` is what ``abstractruntime.observability.export.JsonLinesSpanExporter`` writes
(``ABSTRACTRUNTIME_OTEL_SPANS_FILE`` with ``worker --otel``); several processes may append to
one file. Without ``--trace``, the trace with the most ``abstractruntime.step`` spans is drawn.
Rows are spans in tree order (children under their parent, by start time); a bar's length is
its duration on one time axis for all processes, and a gap longer than a tenth of the trace is
cut out (a run that waits for days still fits), shown as a zig-zag. Steps in error are red.
Standard library only: no collector UI runs here.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

ROW, LABEL_W, BAR_W, PAD = 22, 430, 620, 12
COLOURS = {
    "abstractruntime.start": "#7f8c8d",
    "abstractruntime.step": "#27ae60",
    "abstractruntime.commit": "#e67e22",
    "abstractruntime.scheduler.poll": "#8e44ad",
}


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pick_trace(spans: list[dict[str, Any]]) -> str:
    steps = Counter(s["trace_id"] for s in spans if s["name"] == "abstractruntime.step")
    if not steps:
        raise SystemExit("no abstractruntime.step span in the file")
    return steps.most_common(1)[0][0]


def tree_order(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children[parent].append(span)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: s["start"]):
            out.append((depth, span))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return out


def time_axis(spans: list[dict[str, Any]]) -> tuple[Any, list[int], int]:
    """A function from a time (ns) to x, with long idle gaps cut out; the cut points."""
    start = min(s["start"] for s in spans)
    end = max(s["end"] for s in spans)
    busy: list[list[int]] = []
    for span in sorted(spans, key=lambda s: s["start"]):
        if busy and span["start"] <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], span["end"])
        else:
            busy.append([span["start"], span["end"]])
    limit = (end - start) // 10 or 1
    cuts: list[tuple[int, int]] = []  # (at, removed) for gaps longer than limit
    for before, after in pairwise(busy):
        gap = after[0] - before[1]
        if gap > limit:
            cuts.append((after[0], gap - limit // 4))
    total = end - start - sum(removed for _, removed in cuts)

    def x(t: int) -> float:
        shift = sum(removed for at, removed in cuts if t >= at)
        return LABEL_W + (t - start - shift) / max(total, 1) * BAR_W

    return x, [at for at, _ in cuts], total


def label(span: dict[str, Any]) -> str:
    attributes = span.get("attributes") or {}
    name = span["name"].replace("abstractruntime.", "")
    node = attributes.get("abstractruntime.node_id")
    seq = attributes.get("abstractruntime.ledger_seq")
    if span["name"] == "abstractruntime.step" and node is not None:
        name = f"step #{seq} {node} ({attributes.get('abstractruntime.status')})"
    elif span["name"] == "abstractruntime.commit":
        name = f"commit {attributes.get('db.system.name', '')}".strip()
    return name


def render(spans: list[dict[str, Any]], title: str, trace_id: str) -> str:
    rows = tree_order(spans)
    x, cuts, total = time_axis(spans)
    services = sorted({f"{s.get('service') or '?'} pid {s.get('pid', '?')}" for s in spans})
    height = PAD * 2 + 40 + ROW * len(rows) + 20 * len(services) + 30
    width = LABEL_W + BAR_W + PAD * 2 + 200
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{PAD}" y="{PAD + 14}" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    top = PAD + 40
    for at in cuts:
        cx = x(at) - 3
        out.append(
            f'<path d="M{cx:.1f},{top - 6} l4,6 l-4,6 l4,6" stroke="#999" fill="none" '
            f'transform="translate(0,0)"/><line x1="{cx:.1f}" y1="{top}" x2="{cx:.1f}" '
            f'y2="{top + ROW * len(rows)}" stroke="#ccc" stroke-dasharray="3,3"/>'
        )
    for index, (depth, span) in enumerate(rows):
        y = top + index * ROW
        x0, x1 = x(span["start"]), x(span["end"])
        colour = COLOURS.get(span["name"], "#2980b9")  # effects, and the callers' spans
        if span["name"].startswith("abstractruntime.effect"):
            colour = "#3498db"
        elif not span["name"].startswith("abstractruntime."):
            colour = "#34495e"
        if span.get("status") == "ERROR":
            colour = "#c0392b"
        duration_ms = (span["end"] - span["start"]) / 1e6
        who = (span.get("service") or "?")[:18]
        text = label(span)
        if span["trace_id"] != trace_id:
            text += " (its own trace, linked)"
        out.append(
            f'<text x="{PAD + depth * 14}" y="{y + 15}">{escape(text)}</text>'
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.5):.1f}" height="{ROW - 8}" '
            f'fill="{colour}" rx="2"><title>{escape(span["name"])} {duration_ms:.2f} ms '
            f"({escape(who)})</title></rect>"
            f'<text x="{max(x1, x0 + 1.5) + 4:.1f}" y="{y + 15}" fill="#555" font-size="10">'
            f"{duration_ms:.2f} ms · {escape(who)}</text>"
        )
        for link in span.get("links") or []:
            out.append(
                f'<circle cx="{x0 - 5:.1f}" cy="{y + ROW / 2}" r="3" fill="#8e44ad">'
                f"<title>link to {link['span_id']}</title></circle>"
            )
    y = top + ROW * len(rows) + 22
    trace_ms = total / 1e6
    out.append(
        f'<text x="{PAD}" y="{y}" fill="#555">trace {escape(trace_id)}: '
        f"{len(rows)} spans, {trace_ms:.1f} ms of activity drawn; dashed lines cut idle time; "
        "a purple dot: a link to the span that resumed the step</text>"
    )
    for offset, service in enumerate(services):
        out.append(
            f'<text x="{PAD}" y="{y + 20 * (offset + 1)}" fill="#555">process: '
            f"{escape(service)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spans", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--trace", help="the trace id to draw (default: the largest run trace)")
    parser.add_argument("--title", default="abstractruntime: one run, one trace")
    args = parser.parse_args()
    spans = load(args.spans)
    trace_id = args.trace or pick_trace(spans)
    mine = [s for s in spans if s["trace_id"] == trace_id]
    # The spans that resumed steps (in other traces) are drawn too, above the run's spans.
    linked = {link["span_id"] for s in mine for link in s.get("links") or []}
    mine += [s for s in spans if s["span_id"] in linked and s["trace_id"] != trace_id]
    args.out.write_text(render(mine, args.title, trace_id))
    print(f"{args.out}: {len(mine)} spans of trace {trace_id}")


if __name__ == "__main__":
    main()
