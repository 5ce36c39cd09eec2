"""Identity and provenance primitives (the original's module path)."""

from __future__ import annotations

from .fingerprint import ActorFingerprint

__all__ = ["ActorFingerprint"]
