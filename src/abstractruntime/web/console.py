"""The console: server-rendered pages (Jinja2, autoescaped), plain forms, a little JavaScript.

Reading works with JavaScript off; the run page's timeline grows live through the API's
ledger stream (``static/console.js``, which builds every node with ``textContent``); htmx
(vendored) makes the runs filter update the table in place. Every form posts a CSRF token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..app import snapshot_run
from ..core.ledger import verify_ledger_chain
from ..core.models import RunStatus, WaitReason
from . import operations as ops
from .context import WebContext
from .errors import unprocessable
from .graph import run_graph_svg
from .security import COOKIE, CSRF_FIELD

HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["pretty"] = lambda value: json.dumps(
    value, indent=2, sort_keys=True, ensure_ascii=False, default=str
)
TEMPLATES.filters["when"] = lambda value: (
    value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "—"
)
#: How the console's answers reach the run (at the effect's ``result_key``).
ANSWER_KEY = "answer"


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def render(
    request: Request, ctx: WebContext, template: str, status: int = 200, **values: Any
) -> HTMLResponse:
    page = TEMPLATES.get_template(template).render(
        root=root_of(request),
        csrf=ctx.guard.csrf_for(request.cookies.get(COOKIE)),
        csrf_field=CSRF_FIELD,
        auth=ctx.guard.enabled,
        path=request.url.path,
        **values,
    )
    return HTMLResponse(page, status_code=status)


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(root_of(request) + path, status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def console_routes(ctx: WebContext) -> list[Route]:
    rt = ctx.runtime

    async def home(request: Request) -> Response:
        return redirect(request, "/inbox")

    async def inbox(request: Request) -> Response:
        prompts = [ops.prompt_view(state) for state in await ops.inbox(rt, 100)]
        return render(request, ctx, "inbox.html", prompts=prompts, nav="inbox")

    async def answer(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await form_of(request)
        value = form.get("choice") or form.get("text", "").strip()
        if not value:
            raise unprocessable("pick a choice or write an answer")
        waiting = (await rt.get_state(run_id)).waiting
        if (
            waiting is not None
            and waiting.choices
            and not waiting.allow_free_text
            and value not in waiting.choices
        ):
            raise unprocessable(f"answer one of {', '.join(waiting.choices)}; got {value!r}")
        await ops.respond(rt, run_id, {ANSWER_KEY: value})
        return redirect(request, f"/runs/{run_id}?answered=1")

    async def runs(request: Request) -> Response:
        query = request.query_params
        filters = {
            "status": query.get("status", ""),
            "workflow_id": query.get("workflow_id", ""),
            "wait_reason": query.get("wait_reason", ""),
        }
        page = await ops.list_runs(
            rt,
            status=ops.enum_arg(RunStatus, "status", filters["status"]),
            workflow_id=filters["workflow_id"] or None,
            wait_reason=ops.enum_arg(WaitReason, "wait_reason", filters["wait_reason"]),
            limit=ops.check_limit(query.get("limit"), 50),
            cursor=query.get("cursor") or None,
        )
        kept = {key: value for key, value in filters.items() if value}
        next_href = (
            f"?{urlencode({**kept, 'cursor': page.next_cursor})}" if page.next_cursor else None
        )
        template = "runs_table.html" if request.headers.get("hx-request") else "runs.html"
        return render(
            request,
            ctx,
            template,
            runs=page.runs,
            filters=filters,
            next_href=next_href,
            statuses=[s.value for s in RunStatus],
            reasons=[r.value for r in WaitReason],
            workflows=sorted(rt.workflow_registry.ids()),
            nav="runs",
        )

    async def run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        state = await rt.get_state(run_id)
        records = await rt.store.get_ledger(run_id)
        spec = rt.workflow_registry.for_run(state)
        children = await rt.store.list_runs(parent_run_id=run_id, limit=100)
        snapshots = await rt.store.snapshots.list(run_id=run_id, limit=50)
        return render(
            request,
            ctx,
            "run.html",
            state=state,
            records=records,
            verify=verify_ledger_chain(records),
            graph=run_graph_svg(state, records, list(spec.nodes) if spec else None),
            served=spec is not None,
            children=children,
            snapshots=snapshots,
            answered=request.query_params.get("answered") == "1",
            nav="runs",
        )

    async def cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await form_of(request)
        await ops.cancel(rt, run_id, form.get("reason") or "cancelled from the console")
        return redirect(request, f"/runs/{run_id}")

    async def snapshot(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await form_of(request)
        name = form.get("name", "").strip() or "from the console"
        snap = await snapshot_run(rt.store, run_id, name=name)
        await rt.store.snapshots.save(snap)
        return redirect(request, f"/runs/{run_id}")

    async def fork(request: Request) -> Response:
        new_run_id = await rt.fork_snapshot(request.path_params["snapshot_id"])
        return redirect(request, f"/runs/{new_run_id}")

    return [
        Route("/", home, methods=["GET"]),
        Route("/inbox", inbox, methods=["GET"]),
        Route("/inbox/{run_id}/respond", answer, methods=["POST"]),
        Route("/runs", runs, methods=["GET"]),
        Route("/runs/{run_id}", run, methods=["GET"]),
        Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/runs/{run_id}/snapshot", snapshot, methods=["POST"]),
        Route("/snapshots/{snapshot_id}/fork", fork, methods=["POST"]),
    ]
