"""Database URLs: accept the common spellings, pick the async driver, never print a password."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

#: The embedded default: a SQLite file in the current directory.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./abstractruntime.db"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def parse_url(url: str | URL) -> URL:
    """Parse ``url`` and switch it to our async driver; ``ValueError`` for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(
            f"{mask_url(str(url))!r} is not a database URL; expected e.g. "
            f"{DEFAULT_DATABASE_URL} or postgresql+asyncpg://user:pass@host/db"
        ) from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {parsed.drivername!r} in {mask_url(parsed)!r}: abstractruntime "
            "supports sqlite+aiosqlite:///path.db and postgresql+asyncpg://..."
        )
    return parsed.set(drivername=driver)


def normalize_url(url: str | URL) -> str:
    return parse_url(url).render_as_string(hide_password=False)


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (for logs, errors and CLI output)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
