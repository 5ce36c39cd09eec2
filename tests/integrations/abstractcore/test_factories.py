"""The runtime factories: stores, owned resources, defaults, and failing early."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from abstractruntime import (
    EffectOutcome,
    EffectType,
    RunStatus,
    Runtime,
    RuntimeConfig,
    SchemaOutOfDateError,
    verify_ledger_chain,
)
from abstractruntime.integrations.abstractcore import (
    RemoteAbstractCoreLLMClient,
    create_hybrid_runtime,
    create_remote_runtime,
)
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer
from abstractruntime.storage import MemoryStore, SqlStore
from tests.integrations.abstractcore import agent_app


def _owners(rt: Runtime) -> list[Any]:
    return [getattr(close, "__self__", None) for close in rt.owned_resources]


async def test_database_url_runs_are_durable_and_resources_are_closed(
    server: ScriptedChatServer, db_url: str
) -> None:
    server.add(*agent_app.script())
    rt = await create_hybrid_runtime(
        server_base_url=server.url,
        model="m",
        database_url=db_url,
        tool_executor=agent_app.tools(),
    )
    async with rt:
        assert isinstance(rt.store, SqlStore)
        owners = _owners(rt)
        assert [type(o) for o in owners] == [SqlStore, RemoteAbstractCoreLLMClient]
        run_id, state = await rt.run(agent_app.workflow(), {"task": agent_app.TASK})
        assert state.status is RunStatus.COMPLETED, state.error
    assert rt.owned_resources == []
    assert owners[1].is_closed

    async with SqlStore(db_url) as store:  # another store, as in another process
        fresh = Runtime(store=store)
        assert (await fresh.get_state(run_id)).output == state.output
        assert verify_ledger_chain(await fresh.get_ledger(run_id))["ok"]


async def test_no_store_means_memory(server: ScriptedChatServer) -> None:
    async with await create_remote_runtime(server_base_url=server.url, model="m") as rt:
        assert isinstance(rt.store, MemoryStore)
        assert [type(o) for o in _owners(rt)] == [RemoteAbstractCoreLLMClient]


@pytest.fixture
def closed_clients(monkeypatch: pytest.MonkeyPatch) -> list[RemoteAbstractCoreLLMClient]:
    """The LLM clients closed during the test (a spy around the real ``aclose``)."""
    closed: list[RemoteAbstractCoreLLMClient] = []
    original = RemoteAbstractCoreLLMClient.aclose

    async def spy(self: RemoteAbstractCoreLLMClient) -> None:
        closed.append(self)
        await original(self)

    monkeypatch.setattr(RemoteAbstractCoreLLMClient, "aclose", spy)
    return closed


async def test_store_and_database_url_together_is_an_error(
    server: ScriptedChatServer, sqlite_url: str, closed_clients: list[RemoteAbstractCoreLLMClient]
) -> None:
    with pytest.raises(ValueError, match="store= or database_url="):
        await create_remote_runtime(
            server_base_url=server.url, model="m", store=MemoryStore(), database_url=sqlite_url
        )
    assert len(closed_clients) == 1 and closed_clients[0].is_closed  # the client is not leaked


async def test_a_given_store_and_http_client_stay_open(
    server: ScriptedChatServer, sqlite_url: str
) -> None:
    async with SqlStore(sqlite_url) as store, httpx.AsyncClient() as http:
        rt = await create_remote_runtime(
            server_base_url=server.url, model="m", store=store, http_client=http
        )
        assert rt.store is store
        assert rt.owned_resources == []
        await rt.aclose()
        assert not http.is_closed
        await store.check()  # still usable


@pytest.mark.postgres
async def test_a_database_that_needs_an_upgrade_fails_at_creation(
    server: ScriptedChatServer, pg_empty_url: str
) -> None:
    with pytest.raises(SchemaOutOfDateError, match="db upgrade"):
        await create_remote_runtime(
            server_base_url=server.url, model="m", database_url=pg_empty_url
        )


async def test_runtime_kwargs_reach_the_runtime(server: ScriptedChatServer) -> None:
    def custom_llm(run: Any, effect: Any, default_next_node: Any) -> EffectOutcome:
        return EffectOutcome.completed({"content": "custom"})

    config = RuntimeConfig(max_steps=7)
    async with await create_remote_runtime(
        server_base_url=server.url,
        model="m",
        config=config,
        context={"tenant": "t1"},
        effect_handlers={EffectType.LLM_CALL: custom_llm},  # the caller's handlers win
    ) as rt:
        assert rt.config is config
        assert rt.context == {"tenant": "t1"}
        _, state = await rt.run(agent_app.workflow(), {"task": "hi"})
    assert state.output == {"answer": "custom", "llm_calls": 1}
    assert server.chat_requests == []


async def test_a_bad_effect_policy_closes_what_was_made(
    server: ScriptedChatServer, sqlite_url: str, closed_clients: list[RemoteAbstractCoreLLMClient]
) -> None:
    with pytest.raises(TypeError, match="effect_policy"):
        await create_remote_runtime(
            server_base_url=server.url,
            model="m",
            database_url=sqlite_url,
            effect_policy="retry",  # type: ignore[arg-type]
        )
    assert len(closed_clients) == 1 and closed_clients[0].is_closed
