"""``WorkflowRegistry``: the workflows a runtime or a worker can drive, by id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .spec import WorkflowSpec


class WorkflowRegistry:
    """Workflows by ``workflow_id``; subworkflows and the scheduler look runs' workflows up here."""

    def __init__(self, workflows: Iterable[WorkflowSpec] = ()) -> None:
        self._workflows: dict[str, WorkflowSpec] = {}
        for workflow in workflows:
            self.register(workflow)

    def register(self, workflow: WorkflowSpec) -> WorkflowSpec:
        """Add ``workflow``; registering another spec under a taken id is a ``ValueError``."""
        if not isinstance(workflow, WorkflowSpec):
            raise TypeError(f"expected a WorkflowSpec, got {type(workflow).__name__}")
        existing = self._workflows.get(workflow.workflow_id)
        if existing is not None and existing is not workflow:
            raise ValueError(f"workflow {workflow.workflow_id!r} is already registered")
        self._workflows[workflow.workflow_id] = workflow
        return workflow

    def get(self, workflow_id: str) -> WorkflowSpec | None:
        return self._workflows.get(workflow_id)

    def require(self, workflow_id: str) -> WorkflowSpec:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise KeyError(f"workflow {workflow_id!r} is not registered (registered: {known})")
        return workflow

    def ids(self) -> list[str]:
        return sorted(self._workflows)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._workflows

    def __iter__(self) -> Iterator[WorkflowSpec]:
        return iter(list(self._workflows.values()))

    def __len__(self) -> int:
        return len(self._workflows)
