"""``ActorFingerprint`` at the original's path (``abstractruntime.identity.fingerprint``)."""

from __future__ import annotations

from ..core.identity import ActorFingerprint, sha256_hex

__all__ = ["ActorFingerprint", "sha256_hex"]
