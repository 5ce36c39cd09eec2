"""The original AbstractRuntime 0.2's ``abstractruntime.storage.artifacts`` module path.

The names live in ``core.artifacts`` (values, ids, references), ``core.ports`` (the
``ArtifactStore`` port), ``core.memory`` and ``storage.artifact_files`` (the stores); the SQL
store's artifacts are ``SqlStore(...).artifacts``.
"""

from __future__ import annotations

from ..core.artifacts import (
    Artifact,
    ArtifactMetadata,
    artifact_ref,
    compute_artifact_id,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
    utc_now_iso,
    validate_artifact_id,
)
from ..core.memory import InMemoryArtifactStore
from ..core.ports import ArtifactStore
from .artifact_files import FileArtifactStore

__all__ = [
    "Artifact",
    "ArtifactMetadata",
    "ArtifactStore",
    "FileArtifactStore",
    "InMemoryArtifactStore",
    "artifact_ref",
    "compute_artifact_id",
    "get_artifact_id",
    "is_artifact_ref",
    "resolve_artifact",
    "utc_now_iso",
    "validate_artifact_id",
]
