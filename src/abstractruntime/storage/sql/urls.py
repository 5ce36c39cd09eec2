"""Database URLs: accept the common spellings, pick the async driver, never print a password."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ...errors import InvalidArgumentError

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
    """Parse ``url`` and switch it to our async driver.

    Raises:
        InvalidArgumentError: (a ``ValueError``) not a URL, or not a database we support.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise InvalidArgumentError(
            f"{mask_url(str(url))!r} is not a database URL; expected e.g. "
            f"{DEFAULT_DATABASE_URL} or postgresql+asyncpg://user:pass@host/db"
        ) from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise InvalidArgumentError(
            f"unsupported database {parsed.drivername!r} in {mask_url(parsed)!r}: abstractruntime "
            "supports sqlite+aiosqlite:///path.db and postgresql+asyncpg://..."
        )
    return parsed.set(drivername=driver)


def normalize_url(url: str | URL) -> str:
    return parse_url(url).render_as_string(hide_password=False)


#: Query parameters that carry a secret (asyncpg and libpq accept the password there too).
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
#: The authority of a URL: what lies between ``scheme://`` and the path, query or fragment.
_AUTHORITY = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<authority>[^/?#]*)(?P<rest>.*)$", re.DOTALL)


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (for logs, errors and CLI output).

    Also masked: a ``password``/``sslpassword`` query parameter, and a password holding an
    unescaped ``@`` (everything between ``user:`` and the authority's last ``@``), which a URL
    parser would otherwise read partly as the host.
    """
    if isinstance(url, str):
        found = _AUTHORITY.match(url)
        if found and found["authority"].count("@") > 1:
            userinfo, _, hostport = found["authority"].rpartition("@")
            user, colon, _password = userinfo.partition(":")
            url = f"{found['scheme']}{user}{':***' if colon else ''}@{hostport}{found['rest']}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"
    if any(key.lower() in _SECRET_PARAMS for key in parsed.query):
        parsed = parsed.set(
            query={
                key: "***" if key.lower() in _SECRET_PARAMS else value
                for key, value in parsed.query.items()
            }
        )
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
