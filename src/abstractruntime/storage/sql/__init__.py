"""SQL storage backend (SQLite via aiosqlite, Postgres via asyncpg)."""

from __future__ import annotations

from .store import SqlStore

__all__ = ["SqlStore"]
