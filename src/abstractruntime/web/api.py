"""The JSON API under ``/api/v1`` (the table of ``openapi.py``)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..core.ledger import verify_ledger_chain
from ..core.models import RunStatus, WaitReason
from . import operations as ops
from .context import WebContext
from .errors import HttpError, unprocessable
from .openapi import openapi_document
from .stream import follow


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


async def read_object(request: Request, ctx: WebContext) -> dict[str, Any]:
    """The request's body: a JSON object (an empty body is ``{}``), at most ``ctx.max_body``
    bytes (413 beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > ctx.max_body:
        raise HttpError(413, "SizeLimitError", f"the body is over {ctx.max_body} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > ctx.max_body:
            raise HttpError(413, "SizeLimitError", f"the body is over {ctx.max_body} bytes")
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise unprocessable(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise unprocessable(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise unprocessable(f"{name!r} must be a JSON object, got {type(value).__name__}")
    return value


def text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise unprocessable(f"{name!r} must be a string, got {type(value).__name__}")
    return value


def _unknown_fields(body: dict[str, Any], *allowed: str) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise unprocessable(
            f"unknown field(s) {', '.join(map(repr, extra))}; expected {', '.join(allowed)}"
        )


def api_routes(ctx: WebContext) -> list[Route]:
    rt = ctx.runtime

    async def workflows(request: Request) -> Response:
        registry = rt.workflow_registry
        return _json(
            {
                "workflows": [
                    {
                        "workflow_id": workflow_id,
                        "versions": registry.versions(workflow_id),
                        "entry_node": registry.get_or_raise(workflow_id).entry_node,
                    }
                    for workflow_id in sorted(registry.ids())
                ]
            }
        )

    async def start(request: Request) -> Response:
        body = await read_object(request, ctx)
        _unknown_fields(body, "vars")
        state, created = await ops.start_run(
            rt,
            request.path_params["workflow_id"],
            object_field(body, "vars"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        return _json(
            {"run_id": state.run_id, "status": state.status.value, "created": created},
            201 if created else 200,
        )

    async def runs(request: Request) -> Response:
        query = request.query_params
        page = await ops.list_runs(
            rt,
            status=ops.enum_arg(RunStatus, "status", query.get("status")),
            workflow_id=query.get("workflow_id"),
            wait_reason=ops.enum_arg(WaitReason, "wait_reason", query.get("wait_reason")),
            limit=ops.check_limit(query.get("limit"), 50),
            cursor=query.get("cursor") or None,
        )
        return _json(
            {"runs": [state.to_dict() for state in page.runs], "next_cursor": page.next_cursor}
        )

    async def run(request: Request) -> Response:
        return _json((await rt.get_state(request.path_params["run_id"])).to_dict())

    async def ledger(request: Request) -> Response:
        return _json({"records": await rt.store.get_ledger(request.path_params["run_id"])})

    async def verify(request: Request) -> Response:
        records = await rt.store.get_ledger(request.path_params["run_id"])
        return _json(verify_ledger_chain(records))

    async def respond(request: Request) -> Response:
        body = await read_object(request, ctx)
        _unknown_fields(body, "payload")
        state = await ops.respond(
            rt,
            request.path_params["run_id"],
            object_field(body, "payload"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        return _json(state.to_dict())

    async def resume(request: Request) -> Response:
        body = await read_object(request, ctx)
        _unknown_fields(body, "wait_key", "payload")
        state = await ops.resume(
            rt,
            request.path_params["run_id"],
            text_field(body, "wait_key"),
            object_field(body, "payload"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        return _json(state.to_dict())

    async def emit(request: Request) -> Response:
        body = await read_object(request, ctx)
        _unknown_fields(body, "payload")
        states = await rt.emit_event(
            request.path_params["key"],
            object_field(body, "payload"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        return _json({"resumed": [state.run_id for state in states]})

    async def cancel(request: Request) -> Response:
        body = await read_object(request, ctx)
        _unknown_fields(body, "reason")
        tree = request.query_params.get("tree", "") in ("1", "true", "yes")
        states = await ops.cancel(
            rt, request.path_params["run_id"], text_field(body, "reason"), tree=tree
        )
        return _json({**states[0].to_dict(), "cancelled": [s.run_id for s in states]})

    async def stream(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await rt.store.load_run(run_id)  # 404 before the stream starts
        last = request.headers.get("last-event-id", "")
        start = request.query_params.get("from", "0")
        if not start.isdigit():
            raise unprocessable(f"from must be a record index (0, 1, ...), got {start!r}")
        sent = int(last) + 1 if last.isdigit() else int(start)
        return StreamingResponse(
            follow(rt.store, ctx.wakeups, run_id, sent=sent, poll_s=ctx.stream_poll_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def inbox(request: Request) -> Response:
        limit = ops.check_limit(request.query_params.get("limit"), 50)
        return _json({"prompts": [ops.prompt_view(s) for s in await ops.inbox(rt, limit)]})

    async def openapi(request: Request) -> Response:
        # Inside the /api/v1 mount, root_path is the API's own prefix (a parent mount's too).
        return _json(openapi_document(request.scope.get("root_path", "")))

    return [
        Route("/workflows", workflows, methods=["GET"]),
        Route("/workflows/{workflow_id}/runs", start, methods=["POST"]),
        Route("/runs", runs, methods=["GET"]),
        Route("/runs/{run_id}", run, methods=["GET"]),
        Route("/runs/{run_id}/ledger", ledger, methods=["GET"]),
        Route("/runs/{run_id}/ledger/verify", verify, methods=["GET"]),
        Route("/runs/{run_id}/respond", respond, methods=["POST"]),
        Route("/runs/{run_id}/resume", resume, methods=["POST"]),
        Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/runs/{run_id}/stream", stream, methods=["GET"]),
        Route("/events/{key:path}", emit, methods=["POST"]),
        Route("/inbox", inbox, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
