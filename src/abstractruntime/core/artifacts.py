"""Artifacts: large payloads kept outside ``RunState.vars``, referenced by content hash.

An artifact's id is the SHA-256 (64 lower-case hex digits) of its bytes, so storing the same
content twice stores it once, and the id proves the content. ``vars`` hold a small reference
instead of the payload: ``artifact_ref(id) == {"$artifact": id}``, which is plain JSON, travels
through snapshots and forks, and is hashed into the ledger like any other value.

    artifact_id = await store.artifacts.put(report_bytes, content_type="application/pdf")
    run.vars["report"] = artifact_ref(artifact_id)
    ...
    data = await resolve_artifact(run.vars["report"], store.artifacts)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

#: The key of a reference: ``{"$artifact": "<sha256>"}``, as in the original AbstractRuntime.
REF_KEY = "$artifact"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE_LENGTH = 255
_ID = re.compile(r"[0-9a-f]{64}")


class SupportsGetArtifact(Protocol):
    """What ``resolve_artifact`` needs: any artifact store (``store.artifacts``)."""

    async def get(self, artifact_id: str) -> bytes: ...


@dataclass(frozen=True)
class ArtifactInfo:
    """What a store knows about an artifact besides its bytes."""

    artifact_id: str
    content_type: str
    size: int
    created_at: datetime


def compute_artifact_id(data: bytes | bytearray | memoryview) -> str:
    """The id an artifact with this content has: the SHA-256 hex digest of the bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"artifact content must be bytes, got {type(data).__name__}")
    return hashlib.sha256(data).hexdigest()


def is_artifact_id(value: Any) -> bool:
    """Whether ``value`` has the form of an artifact id (64 lower-case hex digits)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_artifact_id(value: Any) -> str:
    """``value`` if it is an artifact id, else ``ValueError``."""
    if not is_artifact_id(value):
        raise ValueError(f"{value!r} is not an artifact id (a SHA-256: 64 lower-case hex digits)")
    return str(value)


def check_content_type(value: Any) -> str:
    """``value`` if it can be stored as a content type, else ``ValueError``."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CONTENT_TYPE_LENGTH:
        raise ValueError(
            f"content_type must be a string of 1 to {MAX_CONTENT_TYPE_LENGTH} characters, "
            f"got {value!r}"
        )
    return value


def artifact_ref(artifact_id: str) -> dict[str, str]:
    """The JSON value that stands for an artifact in ``vars``: ``{"$artifact": artifact_id}``."""
    return {REF_KEY: check_artifact_id(artifact_id)}


def is_artifact_ref(value: Any) -> bool:
    """Whether ``value`` is a reference made by ``artifact_ref``."""
    return isinstance(value, Mapping) and is_artifact_id(value.get(REF_KEY))


def get_artifact_id(ref: Any) -> str:
    """The artifact id inside a reference; ``ValueError`` for anything else."""
    if not is_artifact_ref(ref):
        raise ValueError(f"{ref!r} is not an artifact reference ({{{REF_KEY!r}: <sha256>}})")
    return str(ref[REF_KEY])


async def resolve_artifact(value: Any, store: SupportsGetArtifact) -> Any:
    """The artifact's bytes when ``value`` is a reference, else ``value`` unchanged.

    So ``await resolve_artifact(run.vars["x"], store.artifacts)`` works whether the payload was
    offloaded or kept inline. An unknown artifact raises ``ArtifactNotFoundError`` (a
    ``KeyError``).
    """
    if is_artifact_ref(value):
        return await store.get(get_artifact_id(value))
    return value
