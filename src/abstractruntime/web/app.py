"""``create_app(runtime)``: the API and the console as one ASGI app (Starlette)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core import telemetry
from ..core.runtime import Runtime
from ..errors import InvalidArgumentError
from ..scheduler.scheduled import ScheduledRuntime
from .api import api_routes
from .console import console_routes, render, root_of
from .context import WebContext
from .errors import HttpError, error_body, status_of, unauthorized
from .security import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    MIN_TOKEN_LENGTH,
    SESSION_MAX_AGE_S,
    TOKEN_ENV,
    Guard,
)
from .stream import Wakeups

Endpoint = Callable[[Request], Awaitable[Response]]
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Sent with every response: no inline script runs, no page frames ours.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def resolve_token(token: str | None, no_auth: bool) -> str | None:
    """The token to guard with: ``token``, else ``$ABSTRACTRUNTIME_TOKEN``; None only with
    ``no_auth``."""
    if no_auth:
        if token:
            raise InvalidArgumentError("give a token or no_auth=True, not both")
        return None
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None:
        raise InvalidArgumentError(
            f"the web app needs a token: pass token=... (or set ${TOKEN_ENV}); "
            "no_auth=True only behind your own authentication or on a loopback address"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidArgumentError(
            f"the token has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
        )
    return token


def create_app(
    runtime: Runtime | ScheduledRuntime,
    *,
    token: str | None = None,
    no_auth: bool = False,
    stream_poll_s: float = 0.5,
) -> Starlette:
    """The HTTP API (``/api/v1``) and the console (``/``) over ``runtime``, as an ASGI app.

    Mount it in a service (``app.mount("/runtime", create_app(sr, token=...))``) or serve it
    (``abstractruntime serve``). It drives runs with ``runtime``'s workflow registry (each run
    with its own workflow version); a ``ScheduledRuntime``'s scheduler, or a worker, drives
    the runs it starts.

    Args:
        runtime: a ``Runtime`` or a ``ScheduledRuntime``.
        token: the bearer token that guards the API and the console's login (default:
            ``$ABSTRACTRUNTIME_TOKEN``); at least 16 characters.
        no_auth: serve without a token (behind your own authentication only).
        stream_poll_s: how often a ledger stream looks for records committed elsewhere.

    Raises:
        InvalidArgumentError: no token and not ``no_auth``; a token too short.
    """
    rt = runtime.runtime if isinstance(runtime, ScheduledRuntime) else runtime
    if not stream_poll_s > 0:
        raise InvalidArgumentError(f"stream_poll_s must be > 0, got {stream_poll_s!r}")
    guard = Guard(resolve_token(token, no_auth))
    ctx = WebContext(
        runtime=rt,
        guard=guard,
        wakeups=Wakeups(rt.store),
        max_body=rt.config.max_state_bytes + 65_536,
        stream_poll_s=stream_poll_s,
    )

    def api_guarded(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                if not guard.enabled and request.method in _UNSAFE:
                    _check_json_request(request)
                if guard.enabled and not guard.bearer_ok(request.headers.get("authorization")):
                    cookie = request.cookies.get(COOKIE)
                    if not guard.session_ok(cookie):
                        raise unauthorized(
                            "send the server's token as `Authorization: Bearer <token>`"
                        )
                    if request.method in _UNSAFE and not guard.csrf_ok(
                        cookie, request.headers.get(CSRF_HEADER)
                    ):
                        raise HttpError(
                            403, "Forbidden", f"a cookie-authenticated change needs {CSRF_HEADER}"
                        )
                # A caller's traceparent: the run it starts or answers joins its trace.
                with telemetry.current().extract(request.headers):
                    return await endpoint(request)
            except Exception as exc:  # the one error boundary of the API
                status, body = error_body(exc)
                response = JSONResponse(body, status_code=status)
                if status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="abstractruntime"'
                return response

        return guarded

    def console_guarded(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                cookie = request.cookies.get(COOKIE)
                if not guard.session_ok(cookie):
                    if request.method in _UNSAFE:
                        raise HttpError(401, "Unauthorized", "log in first")
                    path, root = request.url.path, root_of(request)
                    query = f"?{request.url.query}" if request.url.query else ""
                    target = quote((path[len(root) :] if path.startswith(root) else path) + query)
                    return RedirectResponse(f"{root_of(request)}/login?next={target}", 303)
                if request.method in _UNSAFE:
                    form = await request.form()
                    given = form.get(CSRF_FIELD)
                    if not guard.csrf_ok(cookie, given if isinstance(given, str) else None):
                        raise HttpError(
                            403, "Forbidden", "the form has expired: reload the page and retry"
                        )
                return await endpoint(request)
            except Exception as exc:
                status, body = error_body(exc)
                return render(
                    request, ctx, "error.html", status=status, error=body["error"], code=status
                )

        return guarded

    def wrapped(routes: list[Route], wrap: Callable[[Endpoint], Endpoint]) -> list[BaseRoute]:
        return [Route(r.path, wrap(r.endpoint), methods=list(r.methods or ())) for r in routes]

    async def login_page(request: Request) -> Response:
        if not guard.enabled:
            return RedirectResponse(f"{root_of(request)}/inbox", 303)
        return render(request, ctx, "login.html", next=_safe_next(request), failed=False)

    async def login(request: Request) -> Response:
        if not guard.enabled:
            return RedirectResponse(f"{root_of(request)}/inbox", 303)
        form = await request.form()
        given = form.get("token")
        target = _safe_next(request, form.get("next"))
        if not guard.token_ok(given if isinstance(given, str) else None):
            return render(request, ctx, "login.html", status=401, next=target, failed=True)
        response = RedirectResponse(f"{root_of(request)}{target}", 303)
        response.set_cookie(
            COOKIE,
            guard.new_session(),
            max_age=SESSION_MAX_AGE_S,
            path=root_of(request) or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(f"{root_of(request)}/login", 303)
        response.delete_cookie(COOKIE, path=root_of(request) or "/")
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "no such endpoint" if status == 404 else str(getattr(exc, "detail", exc))
        root = root_of(request)
        if root.endswith("/api/v1") or request.url.path.startswith(f"{root}/api/"):
            kind = "NotFound" if status == 404 else "MethodNotAllowed"
            return JSONResponse({"error": {"type": kind, "message": message}}, status)
        return render(
            request,
            ctx,
            "error.html",
            status=status,
            error={"type": "NotFound", "message": message},
            code=status,
        )

    routes: list[BaseRoute] = [
        Mount("/api/v1", routes=wrapped(api_routes(ctx), api_guarded)),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *wrapped(console_routes(ctx), console_guarded),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(_SecurityHeaders)
    app.state.web = ctx
    return app


def _check_json_request(request: Request) -> None:
    """Without a token, a change must come as ``application/json``: a page of another site can
    post a form or text to a loopback server, but not JSON without a CORS preflight, which
    this app never grants."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HttpError(
            415,
            "UnsupportedMediaType",
            "without a token, changes must be sent with Content-Type: application/json",
        )


def _safe_next(request: Request, given: Any = None) -> str:
    """Where to go after logging in: a path of this app only (never another site)."""
    target = given if isinstance(given, str) else request.query_params.get("next", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/inbox"
    return target


class _SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (a pure ASGI middleware: streams pass)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["create_app", "status_of"]
