"""Wait keys the runtime makes itself: the one place that builds and reads them.

A wait key names what a waiting run waits for. Users choose their own for ``wait_event``; the
runtime makes these, each ``<kind>:<run id>:<node>`` or ``<kind>:<run id>``:

- ``user:<run_id>:<node>``: the default of ``ask_user``;
- ``retry:<run_id>:<node>``: the backoff before an effect's next attempt;
- ``subworkflow:<child_run_id>``: a parent waiting for its child.
"""

from __future__ import annotations

USER = "user"
RETRY = "retry"
SUBWORKFLOW = "subworkflow"

#: Kinds whose key names the run that waits (a fork renames them to the new run).
_NAMING_THEIR_RUN = (USER, RETRY)


def user_key(run_id: str, node_id: str | None) -> str:
    """The default key of an ``ask_user`` wait of ``run_id`` at ``node_id``."""
    return f"{USER}:{run_id}:{node_id}"


def retry_key(run_id: str, node_id: str) -> str:
    """The key of the backoff wait before the next attempt of ``node_id``'s effect."""
    return f"{RETRY}:{run_id}:{node_id}"


def subworkflow_key(child_run_id: str) -> str:
    """The key of a parent's wait for its child run."""
    return f"{SUBWORKFLOW}:{child_run_id}"


def renamed_for(wait_key: str, old_run_id: str, new_run_id: str) -> str:
    """``wait_key`` for a fork of ``old_run_id``: a key the runtime made for the old run names
    the new one instead, so that answering one run does not answer both; others are kept."""
    for kind in _NAMING_THEIR_RUN:
        prefix = f"{kind}:{old_run_id}:"
        if wait_key.startswith(prefix):
            return f"{kind}:{new_run_id}:{wait_key[len(prefix) :]}"
    return wait_key
