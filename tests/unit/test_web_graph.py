"""The run's path as SVG: drawn from the ledger, every label escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("starlette")

from abstractruntime import RunState, RunStatus
from abstractruntime.web.graph import run_graph_svg

NS = "{http://www.w3.org/2000/svg}"


def _state(node: str, status: RunStatus) -> RunState:
    return RunState(run_id="r", workflow_id="w", status=status, current_node=node)


def _nodes(svg: str) -> dict[str, str]:
    root = ET.fromstring(svg)  # well-formed XML: nothing unescaped broke it
    return {
        group.find(f"{NS}text").text or "": group.get("class", "").split()[1]  # type: ignore[union-attr]
        for group in root.iter(f"{NS}g")
    }


def test_the_path_the_current_node_and_the_nodes_never_reached() -> None:
    records = [{"node_id": n} for n in ("a", "a", "b", "a", "b", "c")]
    svg = run_graph_svg(_state("c", RunStatus.WAITING), records, ["a", "b", "c", "d"])
    assert _nodes(svg) == {"a": "visited", "b": "visited", "c": "waiting", "d": "unvisited"}
    edges = [
        p.find(f"{NS}title").text  # type: ignore[union-attr]
        for p in ET.fromstring(svg).iter(f"{NS}path")
        if p.get("class") == "edge"
    ]
    assert "a → b (2 times)" in edges and "b → a" in edges and "b → c" in edges


def test_labels_are_escaped() -> None:
    evil = '<script>alert(1)</script>"&'
    svg = run_graph_svg(_state(evil, RunStatus.FAILED), [{"node_id": evil}], None)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert list(_nodes(svg).values()) == ["failed"]
