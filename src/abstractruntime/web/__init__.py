"""The web console and the HTTP API (the ``[web]`` extra: Starlette, Jinja2, uvicorn).

    from abstractruntime.web import create_app
    service.mount("/runtime", create_app(scheduled_runtime, token=...))

``abstractruntime serve --app module:attr`` serves it with a scheduler. The core never imports
this package (an import-linter contract says so).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
