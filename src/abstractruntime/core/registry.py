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
        """Add ``workflow``; returns it.

        Raises ``ValueError`` when its id is taken, even by the same spec (as the original
        did): ``unregister`` first to replace one.
        """
        if not isinstance(workflow, WorkflowSpec):
            raise TypeError(f"expected a WorkflowSpec, got {type(workflow).__name__}")
        if workflow.workflow_id in self._workflows:
            raise ValueError(
                f"workflow {workflow.workflow_id!r} is already registered; "
                "unregister() it first to replace it"
            )
        self._workflows[workflow.workflow_id] = workflow
        return workflow

    def unregister(self, workflow_id: str) -> None:
        """Remove a workflow; ``KeyError`` when it is not registered."""
        if workflow_id not in self._workflows:
            raise KeyError(f"workflow {workflow_id!r} is not registered")
        del self._workflows[workflow_id]

    def get(self, workflow_id: str) -> WorkflowSpec | None:
        """The workflow, or None."""
        return self._workflows.get(workflow_id)

    def get_or_raise(self, workflow_id: str) -> WorkflowSpec:
        """The workflow; a ``KeyError`` naming the registered ones when unknown."""
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise KeyError(f"workflow {workflow_id!r} is not registered (registered: {known})")
        return workflow

    def list_ids(self) -> list[str]:
        """The registered ids, in registration order."""
        return list(self._workflows)

    def ids(self) -> list[str]:
        """The registered ids, sorted."""
        return sorted(self._workflows)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._workflows

    def __iter__(self) -> Iterator[WorkflowSpec]:
        return iter(list(self._workflows.values()))

    def __len__(self) -> int:
        return len(self._workflows)
