"""Who may use the API and the console: a bearer token, a login cookie, CSRF tokens.

One secret, the token (``--token``, ``ABSTRACTRUNTIME_TOKEN``, ``create_app(token=...)``),
guards everything. The API takes it as ``Authorization: Bearer <token>``; the console's login
form takes it once and sets a cookie (HttpOnly, SameSite=Strict) holding not the token but a
signed, dated session (HMAC-SHA256 with a key derived from the token), so a cookie stops
working when the token changes or after ``SESSION_MAX_AGE_S``. Every form the console serves
carries a CSRF token derived from the session; a POST without it is refused. A cookie-carrying
API call that changes something must send the same token in ``X-CSRF-Token``.

Without a token (``no_auth=True``: a loopback-only server, or an app behind its own auth) every
request is let in, and the CSRF tokens come from a random per-process key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

COOKIE = "abstractruntime_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOKEN_ENV = "ABSTRACTRUNTIME_TOKEN"
#: How long a login lasts.
SESSION_MAX_AGE_S = 12 * 3600
#: The shortest token accepted: a guessable token is no guard.
MIN_TOKEN_LENGTH = 16


class Guard:
    """Checks credentials; knows nothing of HTTP beyond header and cookie values."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        secret = (
            hashlib.sha256(b"abstractruntime-web\x00" + token.encode()).digest()
            if token is not None
            else secrets.token_bytes(32)
        )
        self._key = secret

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        """Whether ``given`` is the token (in constant time)."""
        if self.token is None or given is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def bearer_ok(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def new_session(self, now: float | None = None) -> str:
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{self._sign('session:' + issued)}"

    def session_ok(self, cookie: str | None, now: float | None = None) -> bool:
        if not self.enabled:
            return True
        issued, _, signature = (cookie or "").partition(".")
        if not issued.isdigit() or not hmac.compare_digest(
            signature.encode(), self._sign("session:" + issued).encode()
        ):
            return False
        age = (time.time() if now is None else now) - int(issued)
        return 0 <= age <= SESSION_MAX_AGE_S

    def csrf_for(self, cookie: str | None) -> str:
        """The CSRF token of the session ``cookie`` (of the process, without auth)."""
        return self._sign("csrf:" + (cookie or "") if self.enabled else "csrf:")

    def csrf_ok(self, cookie: str | None, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode(), self.csrf_for(cookie).encode()
        )
