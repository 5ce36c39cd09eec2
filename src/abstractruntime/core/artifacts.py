"""Artifacts: large payloads kept outside ``RunState.vars``, referenced by id.

``vars`` hold a small reference instead of the payload: ``artifact_ref(id) == {"$artifact": id}``,
plain JSON that travels through snapshots and forks and is hashed into the ledger like any other
value. Every artifact store (``store.artifacts`` of a ``SqlStore`` or a ``MemoryStore``,
``InMemoryArtifactStore``, ``FileArtifactStore``) implements ``core.ports.ArtifactStore``: the
original AbstractRuntime 0.2 API made async, and our ``put`` / ``get`` / ``info`` beside it.

Two ways to store, two id schemes, one id space:

- ``await artifacts.store(content, content_type=, run_id=, tags=, artifact_id=None)`` (the
  original's): the id is ``compute_artifact_id(content)``, the first 32 hex digits of the
  content's SHA-256 exactly as the original computed it, or the id the caller chose. Storing
  again under an id replaces the artifact and its metadata (run, tags, content type, creation
  time), as in the original.
- ``await artifacts.put(data, content_type=)`` (ours): the id is the whole SHA-256 (64 hex
  digits), and a put is an insert-if-absent: the first content type wins, concurrent puts of the
  same bytes keep one copy, and the id proves the content.

Any id works with every reader (``load``, ``get``, ``get_metadata``, ``info``, ``exists``,
``delete``, ``artifact_ref``). An id is 1 to ``MAX_ARTIFACT_ID_LENGTH`` ASCII letters, digits,
``-`` or ``_``: no ``.``, ``/`` or ``\\``, so an id is always a plain file name.

    meta = await artifacts.store_json(big_result, run_id=run.run_id, tags={"kind": "search"})
    run.vars["result"] = artifact_ref(meta.artifact_id)
    ...
    artifact = await resolve_artifact(run.vars["result"], artifacts)   # an Artifact, or None
    data = artifact.as_json()
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ..errors import InvalidArgumentError, InvalidTypeError
from .kernel import COLUMN_LIMITS
from .serde import to_utc, utc_now

#: The key of a reference: ``{"$artifact": "<id>"}``, as in the original AbstractRuntime.
REF_KEY = "$artifact"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE_LENGTH = 255
#: So that ``{id}.meta`` fits the 255 bytes a file name may have (``FileArtifactStore``).
MAX_ARTIFACT_ID_LENGTH = 250
#: Tag keys and values: what an index entry of ``(key, value)`` can hold on every database.
MAX_TAG_LENGTH = 255
#: As the column that holds a run id.
MAX_RUN_ID_LENGTH = {name: limit for name, limit, _ in COLUMN_LIMITS}["run_id"]
#: Hex digits of the SHA-256 that the original's ids keep.
ORIGINAL_ID_LENGTH = 32

_ID = re.compile(r"[A-Za-z0-9_-]+")


def utc_now_iso() -> str:
    """Now, as the ISO-8601 text ``ArtifactMetadata.created_at`` holds."""
    return utc_now().isoformat()


@dataclass
class ArtifactMetadata:
    """What a store knows about an artifact besides its content (the original's fields)."""

    artifact_id: str
    #: MIME type or semantic type.
    content_type: str
    size_bytes: int
    #: ISO-8601 text, UTC (``datetime.now(timezone.utc).isoformat()``).
    created_at: str
    #: The run the artifact belongs to, if any.
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactMetadata:
        return cls(
            artifact_id=data["artifact_id"],
            content_type=data["content_type"],
            size_bytes=data["size_bytes"],
            created_at=data["created_at"],
            run_id=data.get("run_id"),
            tags=dict(data.get("tags") or {}),
        )

    def copy(self) -> ArtifactMetadata:
        """A copy whose tags can be changed without changing these."""
        return ArtifactMetadata(
            self.artifact_id,
            self.content_type,
            self.size_bytes,
            self.created_at,
            self.run_id,
            dict(self.tags),
        )

    def info(self) -> ArtifactInfo:
        """The same, as ``put`` / ``info`` describe an artifact."""
        return ArtifactInfo(self.artifact_id, self.content_type, self.size_bytes, created(self))


@dataclass
class Artifact:
    """An artifact: its content and its metadata."""

    metadata: ArtifactMetadata
    content: bytes

    @property
    def artifact_id(self) -> str:
        return self.metadata.artifact_id

    @property
    def content_type(self) -> str:
        return self.metadata.content_type

    def as_text(self, encoding: str = "utf-8") -> str:
        """The content decoded as text."""
        return self.content.decode(encoding)

    def as_json(self) -> Any:
        """The content parsed as JSON (UTF-8)."""
        return json.loads(self.content.decode("utf-8"))


@dataclass(frozen=True)
class ArtifactInfo:
    """What ``info`` tells about an artifact (our API; ``get_metadata`` is the original's)."""

    artifact_id: str
    content_type: str
    size: int
    created_at: datetime


class SupportsLoadArtifact(Protocol):
    """What ``resolve_artifact`` needs: any artifact store."""

    async def load(self, artifact_id: str) -> Artifact | None: ...


# -- ids and values ----------------------------------------------------------------------------


def check_content(content: Any) -> bytes:
    """``content`` as ``bytes``; ``TypeError`` for anything but bytes-like values."""
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise InvalidTypeError(f"artifact content must be bytes, got {type(content).__name__}")
    return bytes(content)


def compute_artifact_id(content: bytes | bytearray | memoryview) -> str:
    """The id ``store`` gives this content: the first 32 hex digits of its SHA-256, as in the
    original AbstractRuntime (so ``exists(compute_artifact_id(b))`` tells before storing)."""
    return content_sha256(content)[:ORIGINAL_ID_LENGTH]


def content_sha256(content: bytes | bytearray | memoryview) -> str:
    """The whole SHA-256 of the content (64 hex digits): the id ``put`` gives it."""
    if not isinstance(content, (bytes, bytearray, memoryview)):
        check_content(content)
    return hashlib.sha256(content).hexdigest()


def is_artifact_id(value: Any) -> bool:
    """Whether ``value`` can be an artifact id (see the module's docstring)."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_ARTIFACT_ID_LENGTH
        and _ID.fullmatch(value) is not None
    )


def validate_artifact_id(artifact_id: Any) -> None:
    """``InvalidArgumentError`` (a ``ValueError``) unless ``artifact_id`` can be an id."""
    if artifact_id == "":
        raise InvalidArgumentError("artifact_id cannot be empty")
    if not is_artifact_id(artifact_id):
        raise InvalidArgumentError(
            f"Invalid artifact_id {artifact_id!r}: an artifact id is 1 to "
            f"{MAX_ARTIFACT_ID_LENGTH} ASCII letters, digits, '-' or '_' (no '.', '/', spaces "
            "or other characters)"
        )


def check_artifact_id(artifact_id: Any) -> str:
    """``artifact_id`` if it can be an id, else ``InvalidArgumentError``."""
    validate_artifact_id(artifact_id)
    return str(artifact_id)


def _check_text(what: str, value: Any, limit: int, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} {value!r} holds a NUL character, which no store keeps")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{what} {value!r} is not valid unicode (a lone surrogate), which no store keeps"
        ) from exc
    if len(value) > limit or (not empty and not value):
        raise InvalidArgumentError(
            f"{what} must have {0 if empty else 1} to {limit} characters, got {len(value)}"
        )
    return value


def check_content_type(value: Any) -> str:
    """``value`` if it can be stored as a content type, else ``InvalidArgumentError``."""
    return _check_text("content_type", value, MAX_CONTENT_TYPE_LENGTH, empty=False)


def check_run_id(value: Any) -> str | None:
    """``value`` if it can be stored as an artifact's run id (or is None)."""
    if value is None:
        return None
    return _check_text("run_id", value, MAX_RUN_ID_LENGTH, empty=False)


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of ``tags`` if every key and value is a string a store can index."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidArgumentError(f"tags must be a dict of strings, got {type(tags).__name__}")
    return {
        _check_text("a tag key", key, MAX_TAG_LENGTH): _check_text(
            f"the value of tag {key!r}", value, MAX_TAG_LENGTH
        )
        for key, value in tags.items()
    }


def new_metadata(
    artifact_id: str,
    content: bytes | bytearray | memoryview,
    content_type: str,
    run_id: str | None,
    tags: dict[str, str],
    at: datetime | None = None,
) -> ArtifactMetadata:
    """The metadata of an artifact stored now (arguments already checked)."""
    return ArtifactMetadata(
        artifact_id=artifact_id,
        content_type=content_type,
        size_bytes=len(content),
        created_at=(at or utc_now()).isoformat(),
        run_id=run_id,
        tags=dict(tags),
    )


# -- listing (the stores that filter in Python: memory and files) -------------------------------


def created(meta: ArtifactMetadata) -> datetime:
    """``created_at`` as a datetime (the epoch for text that is no timestamp, so it sorts last)."""
    try:
        return to_utc(meta.created_at)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(0, timezone.utc)


def matches(
    meta: ArtifactMetadata,
    *,
    run_id: str | None = None,
    content_type: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``meta`` passes every given filter: tags must all be there with equal values."""
    if run_id is not None and meta.run_id != run_id:
        return False
    if content_type is not None and meta.content_type != content_type:
        return False
    return all(meta.tags.get(key) == value for key, value in (tags or {}).items())


def oldest_first(metas: Iterable[ArtifactMetadata]) -> list[ArtifactMetadata]:
    """``list_by_run``'s order: by creation time, then id (the SQL stores' order too)."""
    return sorted(metas, key=lambda meta: (created(meta), meta.artifact_id))


def newest_first(metas: Iterable[ArtifactMetadata], limit: int | None) -> list[ArtifactMetadata]:
    """``list_all`` / ``search``'s order: newest first, then id descending; ``limit`` of them."""
    ordered = sorted(metas, key=lambda meta: (created(meta), meta.artifact_id), reverse=True)
    return ordered if limit is None else ordered[: max(limit, 0)]


# -- references --------------------------------------------------------------------------------


def artifact_ref(artifact_id: str) -> dict[str, str]:
    """The JSON value that stands for an artifact in ``vars``: ``{"$artifact": artifact_id}``."""
    return {REF_KEY: check_artifact_id(artifact_id)}


def is_artifact_ref(value: Any) -> bool:
    """Whether ``value`` is a reference: a mapping whose ``"$artifact"`` is a valid id."""
    return isinstance(value, Mapping) and is_artifact_id(value.get(REF_KEY))


def get_artifact_id(ref: Any) -> str:
    """The artifact id inside a reference; ``InvalidArgumentError`` for anything else."""
    if not is_artifact_ref(ref):
        raise InvalidArgumentError(
            f"{ref!r} is not an artifact reference ({{{REF_KEY!r}: <artifact id>}})"
        )
    return str(ref[REF_KEY])


async def resolve_artifact(ref: Any, store: SupportsLoadArtifact) -> Artifact | None:
    """The artifact a reference names, as in the original: None when ``ref`` is no reference or
    the store has no such artifact.

    ``(await resolve_artifact(run.vars["x"], store.artifacts)).as_json()``; for the bytes or an
    error when it is missing, ``await store.artifacts.get(get_artifact_id(ref))``.
    """
    if not is_artifact_ref(ref):
        return None
    return await store.load(get_artifact_id(ref))
