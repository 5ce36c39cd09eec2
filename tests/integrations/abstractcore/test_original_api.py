"""The original 0.2's integration API: request senders, the file runtimes, the pair of stores."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from abstractruntime import (
    Effect,
    EffectType,
    InMemoryLedgerStore,
    InMemoryRunStore,
    JsonFileRunStore,
    RunState,
    RunStatus,
    StepPlan,
    WorkflowSpec,
    verify_ledger_chain,
)
from abstractruntime.integrations.abstractcore import (
    HttpResponse,
    HttpxRequestSender,
    LLMHTTPError,
    RemoteAbstractCoreLLMClient,
    create_remote_file_runtime,
    create_remote_runtime,
)
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer, ScriptedReply


def ask_llm() -> WorkflowSpec:
    def ask(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="ask",
            effect=Effect(EffectType.LLM_CALL, {"prompt": ctx.question}, result_key="llm"),
            next_node="done",
        )

    def done(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"answer": run.vars["llm"]["content"]})

    return WorkflowSpec("ask_llm", "ask", {"ask": ask, "done": done})


class Host:
    question = "2+2?"


class SyncSender:
    """The original's kind of sender: a blocking ``post`` (run in a worker thread here)."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def post(
        self, url: str, *, headers: dict[str, str], json: dict[str, Any], timeout: float
    ) -> HttpResponse:
        self.threads.append(threading.current_thread().name)
        response = httpx.post(url, headers=headers, json=json, timeout=timeout)
        response.raise_for_status()
        return HttpResponse(body=response.json(), headers=dict(response.headers))


async def test_a_blocking_request_sender_runs_off_the_event_loop(
    server: ScriptedChatServer,
) -> None:
    server.add(ScriptedReply.text("4"))
    sender = SyncSender()
    client = RemoteAbstractCoreLLMClient(
        server_base_url=server.url, model="m", request_sender=sender, headers={"X-Key": "k"}
    )
    answer = await client.generate(prompt="2+2?")
    assert answer["content"] == "4"
    assert sender.threads and sender.threads[0] != threading.main_thread().name
    [request] = server.chat_requests
    assert request.headers["x-key"] == "k" and request.json["messages"][-1]["content"] == "2+2?"
    await client.aclose()  # nothing of ours to close: the sender is the caller's


async def test_an_async_sender_may_answer_the_bare_body(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.text("hello"))
    async with httpx.AsyncClient() as http:

        class BodyOnly:
            async def post(
                self, url: str, *, headers: dict[str, str], json: dict[str, Any], timeout: float
            ) -> dict[str, Any]:
                response = await http.post(url, headers=headers, json=json, timeout=timeout)
                return dict(response.json())

        client = RemoteAbstractCoreLLMClient(
            server_base_url=server.url, model="m", request_sender=BodyOnly()
        )
        assert (await client.generate(prompt="hi"))["content"] == "hello"
    with pytest.raises(ValueError, match="client= or request_sender="):
        RemoteAbstractCoreLLMClient(
            server_base_url=server.url,
            model="m",
            request_sender=BodyOnly(),
            client=httpx.AsyncClient(),
        )


async def test_the_httpx_sender_maps_a_4xx_to_a_final_error(server: ScriptedChatServer) -> None:
    server.add(ScriptedReply.http_error(401, "bad key"))
    sender = HttpxRequestSender()
    try:
        with pytest.raises(LLMHTTPError, match="401") as caught:
            await sender.post(
                f"{server.url}/v1/chat/completions", headers={}, json={"model": "m"}, timeout=5
            )
        assert caught.value.retryable is False
    finally:
        await sender.aclose()
    assert sender.client.is_closed


async def test_remote_runtime_on_the_originals_pair_with_a_context(
    server: ScriptedChatServer,
) -> None:
    server.add(ScriptedReply.text("4"))
    runs, ledger = InMemoryRunStore(), InMemoryLedgerStore()
    async with await create_remote_runtime(
        server_base_url=server.url, model="m", run_store=runs, ledger_store=ledger, context=Host()
    ) as rt:
        assert rt.run_store is runs and rt.ledger_store is ledger
        run_id, state = await rt.run(ask_llm())
        assert state.output == {"answer": "4"}
        assert (await runs.load(run_id)) == state


async def test_remote_file_runtime_keeps_runs_in_its_directory(
    server: ScriptedChatServer, tmp_path: Path
) -> None:
    server.add(ScriptedReply.text("4"))
    rt = await create_remote_file_runtime(
        base_dir=tmp_path, server_base_url=server.url, model="m", context=Host()
    )
    async with rt:
        assert isinstance(rt.run_store, JsonFileRunStore)
        run_id, state = await rt.run(ask_llm())
        assert state.status is RunStatus.COMPLETED and state.output == {"answer": "4"}
    # Closed: the directory is free for the next process, which finds the run as it was.
    assert (tmp_path / f"run_{run_id}.json").exists()
    again = await create_remote_file_runtime(
        base_dir=tmp_path, server_base_url=server.url, model="m"
    )
    async with again:
        assert (await again.get_state(run_id)).output == {"answer": "4"}
        assert verify_ledger_chain(await again.get_ledger(run_id))["ok"]
