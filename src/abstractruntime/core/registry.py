"""``WorkflowRegistry``: the workflows a runtime or a worker can drive, by id and version."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..errors import (
    InvalidArgumentError,
    InvalidTypeError,
    WorkflowNotFoundError,
    WorkflowVersionNotFoundError,
)
from .models import RunState
from .spec import WorkflowSpec


def version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders versions as people number them: ``"2" < "10"``,
    ``"1.9" < "1.10"``, ``"2024-01-05" < "2024-02-01"`` (digit runs compare as numbers, the
    rest as text)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", version)
    )


class WorkflowRegistry:
    """Workflows by ``workflow_id``, each in one or more versions (``WorkflowSpec.version``).

    A run is driven by the spec of its own version (``for_run``); new runs start on the newest
    one (``get``), the greatest by ``version_order``. Subworkflows and the scheduler look
    workflows up here, and a scheduler claims only the runs of the versions registered here
    (``served``).
    """

    def __init__(self, workflows: Iterable[WorkflowSpec] = ()) -> None:
        # workflow id -> version -> spec, versions kept in ``version_order``
        self._workflows: dict[str, dict[str, WorkflowSpec]] = {}
        for workflow in workflows:
            self.register(workflow)

    def register(self, workflow: WorkflowSpec) -> WorkflowSpec:
        """Add ``workflow``; returns it.

        Raises ``ValueError`` when its id and version are taken, even by the same spec (as the
        original did for ids): ``unregister`` first to replace one. Another version of a
        registered workflow is added next to it.
        """
        if not isinstance(workflow, WorkflowSpec):
            raise InvalidTypeError(f"expected a WorkflowSpec, got {type(workflow).__name__}")
        versions = self._workflows.get(workflow.workflow_id, {})
        if workflow.version in versions:
            raise InvalidArgumentError(
                f"workflow {workflow.workflow_id!r} version {workflow.version!r} is already "
                "registered; unregister() it first to replace it"
            )
        versions[workflow.version] = workflow
        self._workflows[workflow.workflow_id] = dict(
            sorted(versions.items(), key=lambda item: version_order(item[0]))
        )
        return workflow

    def unregister(self, workflow_id: str, version: str | None = None) -> None:
        """Remove a workflow's ``version``, or all its versions (None); ``KeyError`` when it
        is not registered."""
        versions = self._workflows.get(workflow_id)
        if versions is None or (version is not None and version not in versions):
            what = repr(workflow_id) if version is None else f"{workflow_id!r} version {version!r}"
            raise WorkflowNotFoundError(f"workflow {what} is not registered")
        if version is None or len(versions) == 1:
            del self._workflows[workflow_id]
        else:
            del versions[version]

    def get(self, workflow_id: str, version: str | None = None) -> WorkflowSpec | None:
        """The workflow at ``version`` (None: its newest version), or None."""
        versions = self._workflows.get(workflow_id)
        if not versions:
            return None
        if version is None:
            return next(reversed(versions.values()))
        return versions.get(version)

    def get_or_raise(self, workflow_id: str, version: str | None = None) -> WorkflowSpec:
        """The workflow (see ``get``); a ``KeyError`` naming what is registered when unknown
        (``WorkflowVersionNotFoundError`` when only the version is missing)."""
        workflow = self.get(workflow_id, version)
        if workflow is not None:
            return workflow
        if workflow_id in self._workflows:
            raise WorkflowVersionNotFoundError(workflow_id, version, self.versions(workflow_id))
        known = ", ".join(sorted(self._workflows)) or "none"
        raise WorkflowNotFoundError(
            f"workflow {workflow_id!r} is not registered (registered: {known})"
        )

    def for_run(self, state: RunState) -> WorkflowSpec | None:
        """The spec that drives ``state``: its workflow at the version it started on."""
        return self.get(state.workflow_id, state.workflow_version)

    def versions(self, workflow_id: str) -> list[str]:
        """The registered versions of a workflow, oldest first (empty when unknown)."""
        return list(self._workflows.get(workflow_id, ()))

    def served(self) -> list[tuple[str, str]]:
        """Every registered ``(workflow_id, version)``: the runs a worker with this registry
        claims."""
        return [(wid, version) for wid, versions in self._workflows.items() for version in versions]

    def list_ids(self) -> list[str]:
        """The registered ids, in registration order."""
        return list(self._workflows)

    def ids(self) -> list[str]:
        """The registered ids, sorted."""
        return sorted(self._workflows)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._workflows

    def __iter__(self) -> Iterator[WorkflowSpec]:
        """The newest version of each workflow (``all_versions`` for every spec)."""
        return iter([next(reversed(v.values())) for v in self._workflows.values()])

    def all_versions(self) -> list[WorkflowSpec]:
        """Every registered spec, by workflow then version (oldest first)."""
        return [spec for versions in self._workflows.values() for spec in versions.values()]

    def __len__(self) -> int:
        return len(self._workflows)
