"""Snapshots: named, tagged, searchable copies of a run's state (pure data, no I/O).

A snapshot keeps the run's state as its dict (``RunState.to_dict()``), so later changes to the
run never leak into it. ``Runtime.restore_snapshot`` writes it back as the run's current state;
``Runtime.fork_snapshot`` starts a new run from it. Stores (``store.snapshots``) save, load,
delete and search them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError
from .models import RunState
from .serde import iso, to_utc, utc_now

#: Column sizes of the SQL schema, checked here so that every store refuses the same values.
MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 255
MAX_TAG_LENGTH = 255


@dataclass
class Snapshot:
    """A copy of a run's state under a name, to restore the run to it or fork a new run from it.

    Attributes:
        snapshot_id: Unique id (``from_run`` makes a random one).
        run_id: The run it copies; a restore always targets this run.
        step_id: The id of the run's last ledger step when it was taken, if known.
        name: Required, at most 255 characters.
        description: Free text; searched by ``list(query=...)`` like the name.
        tags: Labels; matched case-insensitively, kept as spelled (duplicates ignoring case are
            dropped).
        created_at: When it was first saved.
        updated_at: When it was last saved (stores set it).
        run_state: ``RunState.to_dict()`` of the run at that moment.
    """

    snapshot_id: str
    run_id: str
    step_id: str | None = None
    # A default only so the fields can keep the contract's order; an empty name is refused.
    name: str = ""
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    run_state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id("snapshot_id", self.snapshot_id)
        _check_id("run_id", self.run_id)
        if self.step_id is not None:
            _check_id("step_id", self.step_id)
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidArgumentError("a snapshot needs a non-empty name")
        if len(self.name) > MAX_NAME_LENGTH:
            raise InvalidArgumentError(f"a snapshot name has at most {MAX_NAME_LENGTH} characters")
        if self.description is not None and not isinstance(self.description, str):
            raise InvalidTypeError("a snapshot description must be a string")
        for what, text in (("name", self.name), ("description", self.description)):
            if text is not None and "\x00" in text:
                raise InvalidArgumentError(f"a snapshot {what} cannot hold a NUL character (\\x00)")
        self.tags = _clean_tags(self.tags)
        self.created_at = to_utc(self.created_at)
        self.updated_at = to_utc(self.updated_at)
        if not isinstance(self.run_state, Mapping) or not self.run_state:
            raise InvalidArgumentError("a snapshot needs run_state, the dict of a RunState")
        try:
            state = RunState.from_dict(self.run_state)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"run_state is not the dict of a RunState: {exc!r}") from exc
        if state.run_id != self.run_id:
            raise InvalidArgumentError(
                f"run_state belongs to run {state.run_id!r}, not to the snapshot's run "
                f"{self.run_id!r}"
            )
        self.run_state = state.to_dict()

    @classmethod
    def from_run(
        cls,
        *,
        run: RunState,
        name: str,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        step_id: str | None = None,
    ) -> Snapshot:
        """Snapshot ``run`` as it is now, under a new random id."""
        now = utc_now()
        return cls(
            snapshot_id=uuid.uuid4().hex,
            run_id=run.run_id,
            step_id=step_id,
            name=name,
            description=description,
            tags=[tags] if isinstance(tags, str) else list(tags or []),
            created_at=now,
            updated_at=now,
            run_state=run.to_dict(),
        )

    @property
    def state(self) -> RunState:
        """The snapshotted ``RunState`` (a new copy at every access)."""
        return RunState.from_dict(self.run_state)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as ISO-8601 strings)."""
        return {
            "snapshot_id": self.snapshot_id,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "run_state": self.run_state,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """The inverse of ``to_dict``."""
        return cls(
            snapshot_id=data["snapshot_id"],
            run_id=data["run_id"],
            step_id=data.get("step_id"),
            name=data["name"],
            description=data.get("description"),
            tags=list(data.get("tags") or []),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            run_state=dict(data["run_state"]),
        )

    def matches(
        self, *, run_id: str | None = None, tag: str | None = None, query: str | None = None
    ) -> bool:
        """Whether it passes the filters of ``list``: the tag case-insensitively, the query as a
        case-insensitive substring of the name or the description, taken literally."""
        if run_id is not None and self.run_id != run_id:
            return False
        if tag is not None and fold(tag.strip()) not in {fold(t) for t in self.tags}:
            return False
        if query is not None:
            needle = fold(query)
            if needle not in fold(self.name) and needle not in fold(self.description or ""):
                return False
        return True


def fold(text: str) -> str:
    """The case-insensitive form used by tags and search, the same in every store (Python's,
    not the database's ``lower()``: SQLite's only folds ASCII)."""
    return text.lower()


def _check_id(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"a snapshot's {what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"a snapshot's {what} has at most {MAX_ID_LENGTH} characters")


def _clean_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):  # tags="prod" would otherwise become ["p", "r", "o", "d"]
        tags = [tags]
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidTypeError(f"snapshot tags must be strings, got {type(tag).__name__}")
        text = tag.strip()
        if "\x00" in text:
            raise InvalidArgumentError("a snapshot tag cannot hold a NUL character (\\x00)")
        if max(len(text), len(fold(text))) > MAX_TAG_LENGTH:
            raise InvalidArgumentError(f"a snapshot tag has at most {MAX_TAG_LENGTH} characters")
        if text and fold(text) not in seen:
            seen.add(fold(text))
            out.append(text)
    return out
