"""Workflow specs: a named graph of node handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidWorkflowError
from .models import DEFAULT_WORKFLOW_VERSION, RunState, StepPlan
from .throttle import check_max_concurrent_runs


class RunContext(Protocol):
    """What a node handler may rely on in ``ctx`` (``core.context.StepContext`` gives more)."""

    def now_iso(self) -> str: ...


# ``async def handler(run, ctx) -> StepPlan``; a plain ``def`` is accepted too.
NodeHandler = Callable[[RunState, Any], StepPlan | Awaitable[StepPlan]]


@dataclass
class WorkflowSpec:
    """A workflow: its id, the node a run starts at, and a handler per node id.

    ``version`` (default ``"1"``) names this code of the workflow. A run records the version
    it started on and is only ever driven by that version's spec: a registry may hold several
    versions of one workflow, and a worker claims only the runs of the versions it has, so old
    and new workers can share one database during a deploy. ``Runtime.migrate_runs`` moves
    waiting runs to another version on purpose.
    ``max_concurrent_runs=N``: at most N runs of the workflow started and not finished
    (running or waiting) across every worker of the store; a run started beyond that is stored
    at once but waits durably, and is admitted in order of arrival when one ends
    (``core.throttle``).
    """

    workflow_id: str
    entry_node: str
    nodes: dict[str, NodeHandler] = field(default_factory=dict)
    version: str = DEFAULT_WORKFLOW_VERSION
    max_concurrent_runs: int | None = None

    def __post_init__(self) -> None:
        check_max_concurrent_runs(str(self.workflow_id), self.max_concurrent_runs)
        if not isinstance(self.workflow_id, str) or not self.workflow_id:
            raise InvalidWorkflowError("WorkflowSpec.workflow_id must be a non-empty string")
        version = self.version
        if not isinstance(version, str) or not version or len(version) > 64 or "\x00" in version:
            raise InvalidWorkflowError(
                f"workflow {self.workflow_id!r}: version must be a non-empty string of at most "
                f"64 characters (no NUL), got {version!r}"
            )
        if not isinstance(self.nodes, Mapping):
            raise InvalidWorkflowError(
                f"workflow {self.workflow_id!r}: nodes must be a dict of node id -> handler"
            )
        for node_id, handler in self.nodes.items():
            if not callable(handler):
                raise InvalidWorkflowError(
                    f"workflow {self.workflow_id!r}: handler of node {node_id!r} is not callable"
                )
        if self.entry_node not in self.nodes:
            raise InvalidWorkflowError(
                f"workflow {self.workflow_id!r}: entry node {self.entry_node!r} is not one of "
                f"its nodes {sorted(self.nodes)}"
            )

    def get_node(self, node_id: str) -> NodeHandler:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(
                f"workflow {self.workflow_id!r} has no node {node_id!r} "
                f"(nodes: {', '.join(sorted(self.nodes))})"
            ) from None

    def is_terminal(self, node_id: str) -> bool:
        """Always False, as in the original: a run ends when a node returns
        ``StepPlan(complete_output=...)``, not at a node of a special kind."""
        return False
