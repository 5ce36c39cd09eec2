"""Actor identity: a stable, content-derived id for whoever drives runs (a human, an agent, a
service), to pass as ``actor_id`` so that the ledger says who did what."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError
from .serde import encode

#: What an actor may be; free text is accepted too, these are the customary values.
ACTOR_KINDS = ("human", "agent", "service")


@dataclass(frozen=True)
class ActorFingerprint:
    """Who drives a run: ``actor_id`` (what ``Runtime.start(actor_id=...)`` records in the state
    and in every ledger record), what kind of actor it is, and how to show it.

    ``from_metadata`` derives the id from the rest, so the same actor gets the same id in every
    process, without a registry: ``"ar_"`` and 24 hex characters of the SHA-256 of the canonical
    JSON of ``kind``, ``display_name`` and ``metadata``.
    """

    actor_id: str
    kind: str
    display_name: str | None = None
    metadata: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.actor_id, str) or not self.actor_id:
            raise InvalidArgumentError("an ActorFingerprint needs a non-empty actor_id")
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidArgumentError("an ActorFingerprint needs a non-empty kind (e.g. 'agent')")
        if self.metadata is not None and not isinstance(self.metadata, Mapping):
            raise InvalidTypeError("ActorFingerprint.metadata must be a dict")
        object.__setattr__(self, "metadata", dict(self.metadata or {}))

    @classmethod
    def from_metadata(
        cls,
        *,
        kind: str,
        display_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ActorFingerprint:
        """The fingerprint of an actor described by ``kind``, ``display_name`` and ``metadata``
        (JSON values; a ``SerializationError`` names one that is not)."""
        body = {"kind": kind, "display_name": display_name, "metadata": dict(metadata or {})}
        digest = sha256_hex(encode(body, root="actor"))
        return cls(f"ar_{digest[:24]}", kind, display_name, dict(metadata or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor_id": self.actor_id,
            "kind": self.kind,
            "display_name": self.display_name,
            "metadata": dict(self.metadata or {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActorFingerprint:
        return cls(
            actor_id=data["actor_id"],
            kind=data["kind"],
            display_name=data.get("display_name"),
            metadata=dict(data.get("metadata") or {}),
        )


def sha256_hex(text: str) -> str:
    """The SHA-256 of ``text`` (UTF-8), in hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
