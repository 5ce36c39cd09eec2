"""The workflow's graph with the run's path through it, as an SVG drawn from the ledger.

A workflow's edges live in its handlers' code, so the graph is what the ledger shows: every
node of the spec (when this server has the run's version), in the order the run first reached
them, then the ones it never reached (dashed); an arrow for each move the run made; the node it
is at now outlined by its status (waiting, failed, done). Every label is escaped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any
from xml.sax.saxutils import escape

from ..core.models import RunState, RunStatus

_BOX_W, _BOX_H, _GAP, _PAD = 220, 34, 26, 16


def _path(records: Iterable[dict[str, Any]]) -> list[str]:
    """The nodes the run went through, in order, a node repeated only when it is re-entered."""
    path: list[str] = []
    for record in records:
        node = record.get("node_id")
        if isinstance(node, str) and (not path or path[-1] != node):
            path.append(node)
    return path


def run_graph_svg(
    state: RunState, records: Sequence[dict[str, Any]], spec_nodes: Sequence[str] | None
) -> str:
    """The SVG (a string of markup, every text escaped) of the run's path."""
    path = _path(records)
    order: list[str] = []
    for node in [*path, state.current_node]:
        if node is not None and node not in order:
            order.append(node)
    unvisited = [node for node in (spec_nodes or ()) if node not in order]
    nodes = order + unvisited
    row = {node: index for index, node in enumerate(nodes)}
    edges: dict[tuple[str, str], int] = {}
    for a, b in itertools.pairwise(path):
        edges[(a, b)] = edges.get((a, b), 0) + 1
    width = _PAD * 2 + _BOX_W + 120
    height = _PAD * 2 + len(nodes) * (_BOX_H + _GAP) - _GAP

    def top(node: str) -> int:
        return _PAD + row[node] * (_BOX_H + _GAP)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="the run\'s path through its workflow">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>',
    ]
    for (a, b), count in edges.items():
        x = _PAD + _BOX_W
        if row[b] == row[a] + 1:
            cx = _PAD + _BOX_W // 2
            d = f"M{cx},{top(a) + _BOX_H} L{cx},{top(b) - 2}"
        else:
            y1, y2 = top(a) + _BOX_H // 2, top(b) + _BOX_H // 2
            bulge = x + 30 + 14 * abs(row[b] - row[a])
            d = f"M{x},{y1} C{bulge},{y1} {bulge},{y2} {x + 2},{y2}"
        label = f"{a} → {b}" + (f" ({count} times)" if count > 1 else "")
        parts.append(
            f'<path class="edge" d="{d}" marker-end="url(#arrow)">'
            f"<title>{escape(label)}</title></path>"
        )
    for node in nodes:
        if node == state.current_node:
            kind = {
                RunStatus.WAITING: "waiting",
                RunStatus.FAILED: "failed",
                RunStatus.COMPLETED: "done",
                RunStatus.CANCELLED: "cancelled",
                RunStatus.RUNNING: "running",
            }[state.status]
        else:
            kind = "visited" if node in path else "unvisited"
        y = top(node)
        text = node if len(node) <= 28 else node[:27] + "…"
        parts.append(
            f'<g class="node {kind}"><title>{escape(node)}: {kind}</title>'
            f'<rect x="{_PAD}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6"/>'
            f'<text x="{_PAD + 12}" y="{y + _BOX_H // 2 + 5}">{escape(text)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
