"""Database URLs: accept the common spellings, pick the async driver, never print a password,
and take the pool's size out of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
    """The URL as the drivers take it: our async driver, no pool options (the plain ``alembic``
    command line makes an engine of its own from it)."""
    parsed, _pool = pool_options(parse_url(url), {})
    return parsed.render_as_string(hide_password=False)


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


#: Connections a store's pool keeps open (the hot path and the cold paths share them).
DEFAULT_POOL_SIZE = 10
#: More connections it may open under load, closed again when returned.
DEFAULT_MAX_OVERFLOW = 0


@dataclass(frozen=True)
class PoolOptions:
    """The size of each of a store's connection pools."""

    pool_size: int = DEFAULT_POOL_SIZE
    max_overflow: int = DEFAULT_MAX_OVERFLOW
    #: Whether the caller chose them (in the URL or as keyword arguments).
    given: bool = False


#: The least value of each option: a pool of no connection is SQLAlchemy's "no limit".
_POOL_MINIMUM = {"pool_size": 1, "max_overflow": 0}


def pool_options(url: URL, engine_kwargs: dict[str, Any]) -> tuple[URL, PoolOptions]:
    """Take ``pool_size`` and ``max_overflow`` out of the URL's query (so that no driver sees
    them) and out of ``engine_kwargs`` (which win over the URL); ``InvalidArgumentError``
    naming the option for a value that is not a whole number in range."""
    found: dict[str, int] = {}
    for name, least in _POOL_MINIMUM.items():
        if name in url.query:
            found[name] = _whole(name, url.query[name], least, "in the database URL")
        if name in engine_kwargs:
            found[name] = _whole(name, engine_kwargs.pop(name), least, "")
    url = url.difference_update_query(_POOL_MINIMUM)
    return url, PoolOptions(**found, given=bool(found))


def _whole(name: str, value: Any, least: int, where: str) -> int:
    text = value if isinstance(value, str) else None
    if text is not None and re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and value >= least:
        return value
    where = f" {where}" if where else ""
    raise InvalidArgumentError(
        f"{name}{where} must be a whole number of at least {least}, got {value!r}"
    )
