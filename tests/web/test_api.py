"""The HTTP API over real HTTP (uvicorn on 127.0.0.1, httpx) on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from abstractruntime import RunStatus, Runtime, RuntimeConfig
from abstractruntime.storage import SqlStore
from abstractruntime.web import create_app
from abstractruntime.web.openapi import openapi_document
from tests.helpers.polling import eventually
from tests.web.app import registry
from tests.web.conftest import AUTH, TOKEN, serve_process, served

pytestmark = pytest.mark.timeout(120)


async def _start(
    client: httpx.AsyncClient, workflow: str, vars: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/workflows/{workflow}/runs", json={"vars": vars or {}}, headers={**AUTH, **headers}
    )


async def _waiting(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        state = (await client.get(f"/api/v1/runs/{run_id}", headers=AUTH)).json()
        return state if state["status"] == "waiting" else None

    return await eventually(check, f"run {run_id} never waited")


def _error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["type"] == kind, body
    return str(body["error"]["message"])


async def test_start_respond_and_read_a_run(db_url: str) -> None:
    async with served(db_url) as web:
        c = web.client
        workflows = (await c.get("/api/v1/workflows", headers=AUTH)).json()["workflows"]
        assert {"workflow_id": "approval", "versions": ["1"], "entry_node": "ask"} in workflows
        started = await _start(c, "approval")
        assert started.status_code == 201 and started.json()["created"] is True
        run_id = started.json()["run_id"]
        state = await _waiting(c, run_id)
        assert state["waiting"]["prompt"] == "Approve?"
        inbox = (await c.get("/api/v1/inbox", headers=AUTH)).json()["prompts"]
        assert [p["run_id"] for p in inbox] == [run_id]
        assert inbox[0]["choices"] == ["yes", "no"] and inbox[0]["since"]
        answered = await c.post(
            f"/api/v1/runs/{run_id}/respond", json={"payload": {"text": "yes"}}, headers=AUTH
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["status"] == "completed"
        assert answered.json()["output"] == {"answer": {"text": "yes"}}
        records = (await c.get(f"/api/v1/runs/{run_id}/ledger", headers=AUTH)).json()["records"]
        assert [r["node_id"] for r in records][-1] == "done"
        verified = (await c.get(f"/api/v1/runs/{run_id}/ledger/verify", headers=AUTH)).json()
        assert verified["ok"] is True and verified["count"] == len(records)
        assert (await c.get("/api/v1/inbox", headers=AUTH)).json()["prompts"] == []


async def test_every_user_error_has_its_status(db_url: str) -> None:
    config = RuntimeConfig(max_payload_bytes=2048)
    async with served(db_url, config=config) as web:
        c = web.client
        assert "token" in _error(await c.get("/api/v1/runs"), 401, "Unauthorized")
        bad = {"Authorization": "Bearer wrong-token-0123456789"}
        _error(await c.get("/api/v1/runs", headers=bad), 401, "Unauthorized")
        for path in (
            "/runs/nope",
            "/runs/nope/ledger",
            "/runs/nope/ledger/verify",
            "/runs/nope/stream",
        ):
            _error(await c.get(f"/api/v1{path}", headers=AUTH), 404, "RunNotFoundError")
        for path in ("/runs/nope/respond", "/runs/nope/resume", "/runs/nope/cancel"):
            _error(await c.post(f"/api/v1{path}", json={}, headers=AUTH), 404, "RunNotFoundError")
        _error(await _start(c, "no_such_workflow"), 404, "NotFound")
        _error(await c.get("/api/v1/no/such/endpoint", headers=AUTH), 404, "NotFound")

        run_id = (await _start(c, "approval")).json()["run_id"]
        state = await _waiting(c, run_id)
        wrong = await c.post(
            f"/api/v1/runs/{run_id}/resume",
            headers=AUTH,
            json={"wait_key": "user:other", "payload": {}},
        )
        _error(wrong, 409, "WaitKeyMismatchError")
        big = {"payload": {"text": "x" * 4096}}
        _error(
            await c.post(f"/api/v1/runs/{run_id}/respond", json=big, headers=AUTH),
            413,
            "SizeLimitError",
        )
        huge = b'{"payload": "' + b"x" * (config.max_state_bytes + 70_000) + b'"}'
        _error(
            await c.post(f"/api/v1/runs/{run_id}/respond", content=huge, headers=AUTH),
            413,
            "SizeLimitError",
        )
        for body, needle in (
            (b"{not json", "not valid JSON"),
            (b"[1, 2]", "JSON object"),
            (b'{"payload": "yes"}', "'payload' must be a JSON object"),
            (b'{"answer": {}}', "unknown field"),
        ):
            message = _error(
                await c.post(f"/api/v1/runs/{run_id}/respond", content=body, headers=AUTH),
                422,
                "InvalidArgumentError",
            )
            assert needle in message
        for query in ("status=nope", "limit=0", "limit=x", "wait_reason=nap", "cursor=%%%"):
            _error(await c.get(f"/api/v1/runs?{query}", headers=AUTH), 422, "InvalidArgumentError")
        _error(await c.get("/api/v1/inbox?limit=501", headers=AUTH), 422, "InvalidArgumentError")
        # Still waiting, untouched by all of that; then answered, and answering again is a 409.
        assert (await c.get(f"/api/v1/runs/{run_id}", headers=AUTH)).json() == state
        ok = await c.post(
            f"/api/v1/runs/{run_id}/resume",
            headers=AUTH,
            json={"wait_key": state["waiting"]["wait_key"], "payload": {"a": 1}},
        )
        assert ok.status_code == 200 and ok.json()["status"] == "completed"
        again = await c.post(f"/api/v1/runs/{run_id}/respond", json={}, headers=AUTH)
        assert "not waiting" in _error(again, 409, "RunNotWaitingError")
        _error(
            await c.post(f"/api/v1/runs/{run_id}/cancel", json={}, headers=AUTH),
            409,
            "RunFinishedError",
        )


async def test_idempotency_key_returns_the_same_run_from_another_app(db_url: str) -> None:
    async with served(db_url) as one, served(db_url) as two:
        first = await _start(one.client, "approval", {"n": 1}, **{"Idempotency-Key": "order-7"})
        again = await _start(two.client, "approval", {"n": 1}, **{"Idempotency-Key": "order-7"})
        other = await _start(two.client, "approval", {"n": 1}, **{"Idempotency-Key": "order-8"})
        assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
        assert first.json()["run_id"] == again.json()["run_id"] != other.json()["run_id"]
        listed = (await one.client.get("/api/v1/runs?workflow_id=approval", headers=AUTH)).json()
        assert len(listed["runs"]) == 2


async def test_an_answer_with_a_key_is_applied_once_and_a_wait_for_a_child_is_no_prompt(
    db_url: str,
) -> None:
    async with served(db_url) as one, served(db_url) as two:
        run_id = (await _start(one.client, "approval")).json()["run_id"]
        await _waiting(one.client, run_id)
        key = {**AUTH, "Idempotency-Key": "click-41"}
        body = {"payload": {"text": "yes"}}
        first = await one.client.post(f"/api/v1/runs/{run_id}/respond", json=body, headers=key)
        # The client did not see the answer (a timeout) and retries on another server.
        again = await two.client.post(f"/api/v1/runs/{run_id}/respond", json=body, headers=key)
        assert (first.status_code, again.status_code) == (200, 200), again.text
        assert first.json() == again.json() and first.json()["status"] == "completed"
        records = (await one.client.get(f"/api/v1/runs/{run_id}/ledger", headers=AUTH)).json()
        assert sum(r["idempotency_key"] == "answer:click-41" for r in records["records"]) == 1
        late = await two.client.post(f"/api/v1/runs/{run_id}/respond", json=body, headers=AUTH)
        assert "not waiting" in _error(late, 409, "RunNotWaitingError")
        parent = (await _start(one.client, "parent")).json()["run_id"]

        async def waits_for_its_child() -> bool:
            state = (await one.client.get(f"/api/v1/runs/{parent}", headers=AUTH)).json()
            return state["status"] == "waiting" and state["waiting"]["reason"] == "subworkflow"

        await eventually(waits_for_its_child, "the parent never waited for its child")
        refused = await one.client.post(f"/api/v1/runs/{parent}/respond", json={}, headers=AUTH)
        assert "for its child run" in _error(refused, 409, "NotAnswerableError")


async def test_runs_pages_with_a_cursor_and_filters(db_url: str) -> None:
    async with served(db_url, scheduler=False) as web:
        c = web.client
        ids = [(await _start(c, "counter")).json()["run_id"] for _ in range(5)]
        await _start(c, "approval")
        seen: list[str] = []
        cursor = None
        while True:
            query = "workflow_id=counter&limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await c.get(f"/api/v1/runs?{query}", headers=AUTH)).json()
            seen += [run["run_id"] for run in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        running = (await c.get("/api/v1/runs?status=running&limit=500", headers=AUTH)).json()
        assert len(running["runs"]) == 6 and running["next_cursor"] is None
        assert (await c.get("/api/v1/runs?wait_reason=user", headers=AUTH)).json()["runs"] == []


async def test_events_cancel_tree_and_the_stream(db_url: str) -> None:
    async with served(db_url) as web:
        c = web.client
        waiter_id = (await _start(c, "waiter")).json()["run_id"]
        await _waiting(c, waiter_id)
        emitted = await c.post("/api/v1/events/evt:go", json={"payload": {"v": 1}}, headers=AUTH)
        assert emitted.status_code == 200 and emitted.json() == {"resumed": [waiter_id]}
        assert (await c.post("/api/v1/events/evt:go", json={}, headers=AUTH)).json() == {
            "resumed": []
        }

        parent_id = (await _start(c, "tree")).json()["run_id"]
        await _waiting(c, parent_id)
        cancelled = await c.post(
            f"/api/v1/runs/{parent_id}/cancel?tree=1", json={"reason": "test"}, headers=AUTH
        )
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["status"] == "cancelled" and len(body["cancelled"]) == 2
        child = (await c.get(f"/api/v1/runs/{body['cancelled'][1]}", headers=AUTH)).json()
        assert child["status"] == "cancelled" and child["parent_run_id"] == parent_id

        # The stream: the records so far, then those another runtime commits, then the end.
        run_id = (await _start(c, "two_asks", {"who": "ann"})).json()["run_id"]
        await _waiting(c, run_id)
        events: list[tuple[str, dict[str, Any]]] = []

        async def read() -> None:
            async with c.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=AUTH) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                kind = None
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind:
                        events.append((kind, json.loads(line[6:])))

        reader = asyncio.create_task(read())
        await eventually(lambda: any(k == "record" for k, _ in events), "no record streamed")
        other = SqlStore(db_url)
        try:
            rt = Runtime(store=other, workflow_registry=registry())
            for _ in range(2):
                state = await rt.get_state(run_id)
                assert state.waiting is not None
                await rt.resume(
                    workflow=rt.workflow_registry.get_or_raise("two_asks"),
                    run_id=run_id,
                    wait_key=state.waiting.wait_key,
                    payload={"a": 1},
                )
            await asyncio.wait_for(reader, 20)
        finally:
            await other.close()
        records = [data for kind, data in events if kind == "record"]
        ledger = (await c.get(f"/api/v1/runs/{run_id}/ledger", headers=AUTH)).json()["records"]
        assert records == ledger  # each once, in order
        assert events[-1] == ("end", {"run_id": run_id, "status": "completed"})
        # Last-Event-ID: only what a reconnecting client missed.
        resumed = await c.get(
            f"/api/v1/runs/{run_id}/stream", headers={**AUTH, "Last-Event-ID": str(len(ledger) - 2)}
        )
        assert resumed.text.count("event: record") == 1 and "event: end" in resumed.text


async def test_two_processes_answer_the_same_prompt_once(db_url: str) -> None:
    # The client outlives the servers: its streams are still open when they are told to stop.
    async with httpx.AsyncClient(timeout=30) as c:
        with serve_process(db_url) as one, serve_process(db_url, "--no-scheduler") as two:
            for _ in range(3):
                started = await c.post(
                    f"{one}/api/v1/workflows/approval/runs", json={}, headers=AUTH
                )
                run_id = started.json()["run_id"]

                async def check(run_id: str = run_id) -> bool:
                    got = await c.get(f"{one}/api/v1/runs/{run_id}", headers=AUTH)
                    return bool(got.json()["status"] == "waiting")

                await eventually(check, "the run never waited", timeout=20)
                answers = await asyncio.gather(
                    *(
                        c.post(
                            f"{url}/api/v1/runs/{run_id}/respond",
                            headers=AUTH,
                            json={"payload": {"by": url}},
                        )
                        for url in (one, two)
                    )
                )
                assert sorted(a.status_code for a in answers) == [200, 409], [
                    a.text for a in answers
                ]
                final = (await c.get(f"{two}/api/v1/runs/{run_id}", headers=AUTH)).json()
                assert final["status"] == RunStatus.COMPLETED.value
                records = (await c.get(f"{two}/api/v1/runs/{run_id}/ledger", headers=AUTH)).json()[
                    "records"
                ]
                assert sum(r["node_id"] == "done" for r in records) == 1  # applied once
            # A stream left open on a waiting run does not keep a server from stopping (the
            # context managers' exit checks that both stop within 15s of SIGTERM).
            waiting = await c.post(f"{one}/api/v1/workflows/waiter/runs", json={}, headers=AUTH)
            streams = [
                c.stream(
                    "GET", f"{url}/api/v1/runs/{waiting.json()['run_id']}/stream", headers=AUTH
                )
                for url in (one, two)
            ]
            for stream in streams:
                response = await stream.__aenter__()
                assert response.status_code == 200


def test_openapi_lists_every_route() -> None:
    app = create_app(Runtime(workflow_registry=registry()), token=TOKEN)
    api = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1")
    documented = openapi_document("/api/v1")["paths"]
    for route in api.routes:
        assert isinstance(route, Route)
        path = route.path.replace("{key:path}", "{key}")
        assert path in documented, path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in documented[path], (method, path)
    assert len(documented) == len(api.routes)


async def test_mounted_in_a_service_under_a_prefix(sqlite_url: str) -> None:
    async with served(sqlite_url) as web:
        doc = (await web.client.get("/api/v1/openapi.json", headers=AUTH)).json()
        assert doc["openapi"].startswith("3.") and doc["servers"] == [{"url": "/api/v1"}]
    async with served(sqlite_url, mount="/runtime") as web:
        c = web.client
        doc = (await c.get("/runtime/api/v1/openapi.json", headers=AUTH)).json()
        assert doc["servers"] == [{"url": "/runtime/api/v1"}]
        started = await _start(c, "approval")  # relative to the service: not under /runtime
        assert started.status_code == 404
        ok = await c.post("/runtime/api/v1/workflows/approval/runs", json={}, headers=AUTH)
        assert ok.status_code == 201
        page = await c.get("/runtime/runs")
        assert page.status_code == 303
        assert page.headers["location"] == "/runtime/login?next=/runs"
        login = await c.post("/runtime/login", data={"token": TOKEN, "next": "/runs"})
        assert login.status_code == 303 and login.headers["location"] == "/runtime/runs"
        assert "Path=/runtime" in login.headers["set-cookie"]
        _error(await c.get("/runtime/api/v1/nothing", headers=AUTH), 404, "NotFound")


def test_an_app_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from abstractruntime.errors import InvalidArgumentError

    monkeypatch.delenv("ABSTRACTRUNTIME_TOKEN", raising=False)
    rt = Runtime()
    with pytest.raises(InvalidArgumentError, match="needs a token"):
        create_app(rt)
    with pytest.raises(InvalidArgumentError, match="at least 16"):
        create_app(rt, token="short")
    monkeypatch.setenv("ABSTRACTRUNTIME_TOKEN", TOKEN)
    assert create_app(rt).state.web.guard.enabled
    assert not create_app(rt, no_auth=True, token=None).state.web.guard.enabled
