"""``abstractruntime serve --app MODULE:ATTR``: the web console and the HTTP API (uvicorn), and a
scheduler in the same process unless ``--no-scheduler``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from typing import Any

from ..app import load_app
from ..scheduler import create_scheduled_runtime
from ..storage.sql import SqlStore
from ..storage.sql.urls import mask_url
from .base import APP_HELP, EXIT_OK, CliError, Parser, Subparsers, positive_float

TOKEN_ENV = "ABSTRACTRUNTIME_TOKEN"
GRACEFUL_SHUTDOWN_S = 3


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth(host: str, token: str | None, no_auth: bool) -> str | None:
    """The token to serve with; ``CliError`` for a server nobody guards."""
    if no_auth:
        if token:
            raise CliError("--no-auth and a token (--token or $ABSTRACTRUNTIME_TOKEN) conflict")
        if not is_loopback(host):
            raise CliError(
                f"--no-auth serves only on a loopback address (127.0.0.1, ::1), not {host!r}: "
                "give --token (or $ABSTRACTRUNTIME_TOKEN) to serve on the network"
            )
        return None
    if not token:
        raise CliError(
            "serve needs a token: --token T or $ABSTRACTRUNTIME_TOKEN (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`), or --no-auth "
            "on a loopback address"
        )
    return token


async def serve(args: argparse.Namespace, store: SqlStore) -> int:
    token = check_auth(args.host, args.token or os.environ.get(TOKEN_ENV), args.no_auth)
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as exc:
        raise CliError(
            f"serve needs the web extra ({exc.name} is missing): pip install 'abstractruntime[web]'"
        ) from None
    app_spec = await load_app(args.app)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    await store.check()  # fail fast on an unreachable or outdated database
    sr = await create_scheduled_runtime(
        store=store,
        workflows=app_spec.workflows,
        poll_interval_s=args.poll_interval,
        lease_s=args.lease,
        auto_start=not args.no_scheduler,
        **app_spec.runtime_kwargs(),
    )
    try:
        web: Any = create_app(sr, token=token, no_auth=args.no_auth)
        if args.no_auth:
            # Unguarded on loopback: refuse other Host names, so that a site whose name
            # resolves to 127.0.0.1 (DNS rebinding) cannot drive the API from a browser.
            from starlette.middleware.trustedhost import TrustedHostMiddleware

            web = TrustedHostMiddleware(web, allowed_hosts=["127.0.0.1", "localhost", args.host])
        config = uvicorn.Config(
            web,
            host=args.host,
            port=args.port,
            log_level="info",
            lifespan="off",
            # Ledger streams of waiting runs never end by themselves: on SIGTERM they get
            # this long, then are cut (a browser's EventSource reconnects elsewhere).
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = uvicorn.Server(config)
        logging.getLogger("abstractruntime.web").info(
            "console on http://%s:%d/ (database %s; %s; %s)",
            f"[{args.host}]" if ":" in args.host else args.host,
            args.port,
            mask_url(args.database_url),
            "token required" if token else "NO AUTH (loopback only)",
            "no scheduler here" if args.no_scheduler else "scheduling runs here too",
        )
        await server.serve()
    finally:
        await sr.stop()
    return EXIT_OK


def configure_parser(subparsers: Subparsers, common: Parser) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the web console and the HTTP API (needs the [web] extra)",
        parents=[common],
    )
    parser.set_defaults(handler=serve)
    parser.add_argument("--app", required=True, metavar="MODULE:ATTR", help=APP_HELP)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--token", help=f"the bearer token that guards the API and the console (or ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="serve without a token (loopback addresses only)"
    )
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not drive runs here (a separate `abstractruntime worker` does)",
    )
    parser.add_argument("--poll-interval", type=positive_float, default=1.0, metavar="SECONDS")
    parser.add_argument("--lease", type=positive_float, default=30.0, metavar="SECONDS")
