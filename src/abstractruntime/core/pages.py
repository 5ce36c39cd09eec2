"""Keyset pages of ``Store.list_runs`` (no I/O).

A page of runs, most recently updated first, ends with a run whose ``(updated_at, run_id)`` is
the *key* of the next page: ``list_runs(after=key)`` returns the runs strictly after it in the
order ``updated_at`` descending, then ``run_id`` ascending (the tie-break that makes the order
total, so a page boundary between two runs updated in the same microsecond loses neither).
A run updated between two page reads moves to the front: it is not read twice on later pages,
and the pages already read do not change; that is the usual promise of a keyset cursor.
"""

from __future__ import annotations

from datetime import datetime

from ..errors import InvalidArgumentError
from .models import RunState
from .serde import to_utc

#: The key of a run in the default order of ``list_runs``: ``(updated_at, run_id)``.
RunKey = tuple[datetime, str]


def key_of(state: RunState) -> RunKey:
    """The key of ``state``: pass it as ``after=`` to read the runs that follow it."""
    return (state.updated_at, state.run_id)


def check_after(
    after: RunKey | None, *, order: str, due_by: datetime | None, deadline_before: datetime | None
) -> RunKey | None:
    """``after`` normalised (aware UTC), or ``InvalidArgumentError`` when it is malformed or
    given with an order other than the default (most recently updated first)."""
    if after is None:
        return None
    if order != "updated" or due_by is not None or deadline_before is not None:
        raise InvalidArgumentError(
            "after= pages the default order (most recently updated first); it cannot be "
            "combined with order='deadline', due_by= or deadline_before="
        )
    if (
        not isinstance(after, tuple)
        or len(after) != 2
        or not isinstance(after[0], datetime)
        or not isinstance(after[1], str)
        or "\x00" in after[1]
    ):
        raise InvalidArgumentError(
            f"after must be a (updated_at: datetime, run_id: str) pair without a NUL character, "
            f"got {after!r}"
        )
    return (to_utc(after[0]), after[1])


def follows(state: RunState, after: RunKey) -> bool:
    """Whether ``state`` comes after the key ``after`` in the default order."""
    updated_at, run_id = after
    return state.updated_at < updated_at or (
        state.updated_at == updated_at and state.run_id > run_id
    )
