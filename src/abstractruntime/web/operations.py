"""What the API and the console do, over a ``Runtime``: one function per action, shared by
both, raising the project's exceptions (``errors.py`` maps them to statuses)."""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import idempotency, pages, subworkflows
from ..core.models import RunState, RunStatus, WaitReason
from ..core.runtime import Runtime
from ..core.serde import iso, to_utc
from ..errors import (
    RunExistsError,
    RunFinishedError,
)
from .errors import not_found, unprocessable

#: The largest page of ``GET /runs`` and of the inbox.
MAX_LIMIT = 500
#: How many waiting prompts the inbox reads at most to find the oldest ones.
INBOX_SCAN_MAX = 10_000


def check_limit(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise unprocessable(f"limit must be a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise unprocessable(f"limit must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def encode_cursor(state: RunState) -> str:
    """The opaque cursor of the page after ``state``: its keyset ``(updated_at, run_id)``."""
    updated_at, run_id = pages.key_of(state)
    raw = json.dumps([iso(updated_at), run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> pages.RunKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        updated_at, run_id = json.loads(raw)
        if not isinstance(run_id, str) or not isinstance(updated_at, str):
            raise ValueError(text)
        return (to_utc(updated_at), run_id)
    except (ValueError, TypeError, binascii.Error):
        raise unprocessable(
            f"cursor {text[:80]!r} is not a cursor this API returned (pass next_cursor as is)"
        ) from None


def enum_arg(cls: Any, name: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return cls(text)
    except ValueError:
        allowed = ", ".join(member.value for member in cls)
        raise unprocessable(f"{name} must be one of {allowed}; got {text!r}") from None


@dataclass
class RunPage:
    runs: list[RunState]
    next_cursor: str | None


async def list_runs(
    rt: Runtime,
    *,
    status: RunStatus | None = None,
    workflow_id: str | None = None,
    wait_reason: WaitReason | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> RunPage:
    """A page of runs, most recently updated first; ``next_cursor`` None on the last page."""
    after = decode_cursor(cursor) if cursor else None
    found = await rt.store.list_runs(
        status=status,
        workflow_id=workflow_id or None,
        wait_reason=wait_reason,
        limit=limit + 1,
        after=after,
    )
    more = len(found) > limit
    found = found[:limit]
    return RunPage(found, encode_cursor(found[-1]) if more and found else None)


async def start_run(
    rt: Runtime,
    workflow_id: str,
    vars: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> tuple[RunState, bool]:
    """Start a run of the newest version of ``workflow_id``; returns its state and whether it
    was created (False: the idempotency key's run existed already)."""
    workflow = rt.workflow_registry.get(workflow_id)
    if workflow is None:
        raise not_found(f"unknown workflow {workflow_id!r} (GET /workflows lists them)")
    run_id = None
    key = idempotency.check_key(idempotency_key)  # InvalidArgumentError: 422
    if key is not None:
        # The run id start(idempotency_key=) derives: the same key, the same run, from the
        # API or from Python, in any process.
        run_id = idempotency.run_id_for(workflow.workflow_id, key)
    try:
        run_id = await rt.start(workflow=workflow, vars=vars, run_id=run_id)
    except RunExistsError:
        if run_id is None:
            raise
        return await rt.get_state(run_id), False
    return await rt.get_state(run_id), True


async def respond(
    rt: Runtime,
    run_id: str,
    payload: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> RunState:
    """Answer the run's wait for a person or an event (whatever its key), driving it with its
    own workflow version; a timer or a child's wait is ``NotAnswerableError`` (409)."""
    return await rt._respond(run_id, dict(payload), idempotency_key=idempotency_key)


async def resume(
    rt: Runtime,
    run_id: str,
    wait_key: str | None,
    payload: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> RunState:
    state = await rt.get_state(run_id)
    return await rt.resume(
        workflow=rt.workflow_registry.get_or_raise(state.workflow_id, state.workflow_version),
        run_id=run_id,
        wait_key=wait_key,
        payload=dict(payload),
        idempotency_key=idempotency_key,
    )


async def cancel(
    rt: Runtime, run_id: str, reason: str | None, *, tree: bool = False
) -> list[RunState]:
    """Cancel the run (and, with ``tree``, every unfinished run below it); the states this
    call cancelled, the run first. A finished run is a ``RunFinishedError`` (409)."""
    state = await rt.get_state(run_id)
    if state.status.is_terminal:
        raise RunFinishedError(f"run {run_id!r} is already {state.status.value}; nothing to cancel")
    if tree:
        return await subworkflows.cancel_tree(rt, run_id, reason=reason)
    return [await rt.cancel_run(run_id, reason)]


async def inbox(rt: Runtime, limit: int) -> list[RunState]:
    """The runs waiting on a person (``ask_user``), the longest-waiting first.

    The store pages newest first, so the oldest ``limit`` are found by reading pages and
    keeping the last ``limit`` seen (bounded memory; at most ``INBOX_SCAN_MAX`` runs read).
    """
    kept: deque[RunState] = deque(maxlen=limit)
    after = None
    read = 0
    while read < INBOX_SCAN_MAX:
        page = await rt.store.list_runs(
            status=RunStatus.WAITING, wait_reason=WaitReason.USER, limit=MAX_LIMIT, after=after
        )
        kept.extend(page)
        read += len(page)
        if len(page) < MAX_LIMIT:
            break
        after = pages.key_of(page[-1])
    return list(reversed(kept))


def prompt_view(state: RunState) -> dict[str, Any]:
    """A waiting prompt as the inbox shows it."""
    waiting = state.waiting
    assert waiting is not None
    return {
        "run_id": state.run_id,
        "workflow_id": state.workflow_id,
        "workflow_version": state.workflow_version,
        "node": state.current_node,
        "prompt": waiting.prompt,
        "choices": list(waiting.choices or []),
        "allow_free_text": waiting.allow_free_text,
        "wait_key": waiting.wait_key,
        "since": iso(waiting.waiting_since or state.updated_at),
        "deadline": iso(waiting.timeout_at) if waiting.timeout_at is not None else None,
    }
