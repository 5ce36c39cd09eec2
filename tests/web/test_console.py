"""The console over real HTTP without a browser: login, cookies, CSRF, escaping, headers; and
``serve`` refusing to run unguarded."""

from __future__ import annotations

import re

import httpx
import pytest

from abstractruntime.cli import main
from tests.web.app import XSS
from tests.web.conftest import AUTH, TOKEN, serve_process, served

pytestmark = pytest.mark.timeout(120)


async def _login(c: httpx.AsyncClient) -> None:
    response = await c.post("/login", data={"token": TOKEN, "next": "/inbox"})
    assert response.status_code == 303 and response.headers["location"] == "/inbox"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert TOKEN.lower() not in cookie  # the cookie is a signed session, not the token


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def _wait_for_prompt(c: httpx.AsyncClient, run_id: str) -> str:
    from tests.helpers.polling import eventually

    async def page() -> str | None:
        html = (await c.get("/inbox")).text
        return html if run_id in html else None

    return await eventually(page, "the prompt never reached the inbox")


async def test_login_csrf_and_answering_from_the_inbox(sqlite_url: str) -> None:
    async with served(sqlite_url) as web:
        c = web.client
        assert (await c.get("/inbox")).headers["location"] == "/login?next=/inbox"
        wrong = await c.post("/login", data={"token": "not-the-token", "next": "/inbox"})
        assert wrong.status_code == 401 and "That is not the token" in wrong.text
        assert (await c.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})).headers[
            "location"
        ] == "/inbox"
        await _login(c)
        started = await c.post("/api/v1/workflows/approval/runs", json={}, headers=AUTH)
        run_id = started.json()["run_id"]
        html = await _wait_for_prompt(c, run_id)
        assert "Approve?" in html and 'value="yes"' in html
        form = f"/inbox/{run_id}/respond"
        refused = await c.post(form, data={"choice": "yes"})
        assert refused.status_code == 403 and "expired" in refused.text
        forged = await c.post(form, data={"choice": "yes", "csrf_token": "0" * 64})
        assert forged.status_code == 403
        answered = await c.post(form, data={"choice": "yes", "csrf_token": _csrf(html)})
        assert answered.status_code == 303
        assert answered.headers["location"] == f"/runs/{run_id}?answered=1"
        page = (await c.get(answered.headers["location"])).text
        assert "Answer sent" in page and "completed" in page
        again = await c.post(form, data={"choice": "no", "csrf_token": _csrf(html)})
        assert again.status_code == 409 and "not waiting" in again.text
        # The cookie reads the API; a change through it needs the CSRF header too.
        assert (await c.get(f"/api/v1/runs/{run_id}")).status_code == 200
        cancel = await c.post(f"/api/v1/runs/{run_id}/cancel", json={})
        assert cancel.status_code == 403
        cancel = await c.post(
            f"/api/v1/runs/{run_id}/cancel", json={}, headers={"X-CSRF-Token": _csrf(html)}
        )
        assert cancel.status_code == 409  # through: it is finished already
        await c.post("/logout")
        assert (await c.get("/runs")).status_code == 303


async def test_everything_from_a_run_is_escaped(sqlite_url: str) -> None:
    async with served(sqlite_url) as web:
        c = web.client
        await _login(c)
        started = await c.post(
            "/api/v1/workflows/probe/runs", json={"vars": {"note": XSS}}, headers=AUTH
        )
        run_id = started.json()["run_id"]
        inbox = await _wait_for_prompt(c, run_id)
        run_page = (await c.get(f"/runs/{run_id}")).text
        for html in (inbox, run_page):
            assert "<script>window.__xss" not in html and "<img src=x" not in html
            assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
        assert run_page.count("&lt;img src=x onerror=") >= 2  # the prompt and the vars
        response = await c.get(f"/runs/{run_id}")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert "<svg" in run_page and "ask" in run_page  # the graph


async def test_console_reads_with_filters_and_snapshots_and_forks(sqlite_url: str) -> None:
    async with served(sqlite_url) as web:
        c = web.client
        await _login(c)
        run_id = (await c.post("/api/v1/workflows/approval/runs", json={}, headers=AUTH)).json()[
            "run_id"
        ]
        await _wait_for_prompt(c, run_id)
        listed = (await c.get("/runs?status=waiting&workflow_id=approval")).text
        assert run_id in listed
        assert run_id not in (await c.get("/runs?status=completed")).text
        assert "must be one of" in (await c.get("/runs?status=bogus")).text
        page = (await c.get(f"/runs/{run_id}")).text
        snap = await c.post(
            f"/runs/{run_id}/snapshot", data={"name": "before <b>", "csrf_token": _csrf(page)}
        )
        assert snap.status_code == 303
        page = (await c.get(f"/runs/{run_id}")).text
        assert "before &lt;b&gt;" in page
        fork_action = re.search(r'action="(/snapshots/[0-9a-f]+/fork)"', page)
        assert fork_action
        forked = await c.post(fork_action.group(1), data={"csrf_token": _csrf(page)})
        assert forked.status_code == 303
        new_id = forked.headers["location"].rsplit("/", 1)[1]
        assert new_id != run_id
        state = (await c.get(f"/api/v1/runs/{new_id}", headers=AUTH)).json()
        assert state["status"] == "waiting" and state["current_node"] == "ask"
        cancelled = await c.post(f"/runs/{new_id}/cancel", data={"csrf_token": _csrf(page)})
        assert cancelled.status_code == 303
        assert (await c.get(f"/api/v1/runs/{new_id}", headers=AUTH)).json()["status"] == (
            "cancelled"
        )
        missing = await c.get("/runs/no-such-run")
        assert missing.status_code == 404 and "unknown run" in missing.text


async def test_a_prompt_without_free_text_takes_only_its_choices(sqlite_url: str) -> None:
    async with served(sqlite_url) as web:
        c = web.client
        await _login(c)
        run_id = (await c.post("/api/v1/workflows/strict/runs", json={}, headers=AUTH)).json()[
            "run_id"
        ]
        html = await _wait_for_prompt(c, run_id)
        assert 'name="text"' not in html.split(f'id="prompt-{run_id}"')[1].split("</li>")[0]
        form = f"/inbox/{run_id}/respond"
        refused = await c.post(form, data={"text": "maybe", "csrf_token": _csrf(html)})
        assert refused.status_code == 422 and "answer one of yes, no" in refused.text
        assert (await c.get(f"/api/v1/runs/{run_id}", headers=AUTH)).json()["status"] == "waiting"
        ok = await c.post(form, data={"choice": "no", "csrf_token": _csrf(html)})
        assert ok.status_code == 303
        state = (await c.get(f"/api/v1/runs/{run_id}", headers=AUTH)).json()
        assert state["output"] == {"answer": "no"}


def test_serve_refuses_to_run_unguarded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.delenv("ABSTRACTRUNTIME_TOKEN", raising=False)
    base = ["--database-url", sqlite_url, "serve", "--app", "tests.web.app:registry"]
    assert main(base) == 2
    assert "serve needs a token" in capsys.readouterr().err
    assert main([*base, "--no-auth", "--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main([*base, "--no-auth", "--token", TOKEN]) == 2
    assert "conflict" in capsys.readouterr().err


async def test_without_a_token_changes_must_be_json(sqlite_url: str) -> None:
    async with served(sqlite_url, token=None, no_auth=True) as web:
        c = web.client
        assert (await c.get("/inbox")).status_code == 200  # no login page
        assert (await c.get("/login")).headers["location"] == "/inbox"
        started = await c.post("/api/v1/workflows/approval/runs", json={})
        assert started.status_code == 201
        run_id = started.json()["run_id"]
        # What a page of another site can send to a loopback server: a form, or text.
        for headers in ({"content-type": "text/plain"}, {}):
            forged = await c.post(f"/api/v1/runs/{run_id}/cancel", content=b"", headers=headers)
            assert forged.status_code == 415, forged.text
            assert forged.json()["error"]["type"] == "UnsupportedMediaType"
        assert (await c.get(f"/api/v1/runs/{run_id}")).json()["status"] != "cancelled"
        ok = await c.post(f"/api/v1/runs/{run_id}/cancel", json={})
        assert ok.status_code == 200 and ok.json()["status"] == "cancelled"
        # The console's forms still need their CSRF token.
        html = (await c.get(f"/runs/{run_id}")).text
        assert (await c.post(f"/runs/{run_id}/snapshot", data={"name": "x"})).status_code == 403
        done = await c.post(
            f"/runs/{run_id}/snapshot", data={"name": "x", "csrf_token": _csrf(html)}
        )
        assert done.status_code == 303


def test_serve_without_a_token_answers_only_loopback_names(sqlite_url: str) -> None:
    with serve_process(sqlite_url, "--no-auth", token=None) as url:
        assert httpx.get(f"{url}/api/v1/workflows").status_code == 200
        rebound = httpx.get(f"{url}/api/v1/workflows", headers={"host": "evil.example"})
        assert rebound.status_code == 400
