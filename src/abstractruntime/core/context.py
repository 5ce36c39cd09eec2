"""The ``ctx`` a node handler receives next to the run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .serde import iso


@dataclass
class StepContext:
    """The ``ctx`` a node handler receives next to the run."""

    run_id: str
    node_id: str
    step_id: str
    workflow_id: str
    #: Whatever was passed as ``Runtime(context=...)``.
    context: Any
    _clock: Any

    def now(self) -> datetime:
        return self._clock()  # type: ignore[no-any-return]

    def now_iso(self) -> str:
        return iso(self._clock())

    def __getattr__(self, name: str) -> Any:
        # The original handed ``Runtime(context=...)`` itself to node handlers: its attributes
        # stay reachable as ``ctx.<name>``.
        if name.startswith("__") or name == "context":
            raise AttributeError(name)
        return getattr(self.context, name)
