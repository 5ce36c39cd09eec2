"""Factories of a ``Runtime`` wired to an LLM and to tools, in the original's three topologies:

- ``create_local_runtime``: AbstractCore in process (LLM and tools).
- ``create_remote_runtime``: an LLM server over HTTP; tools are passed through to the host.
- ``create_hybrid_runtime``: an LLM server over HTTP; tools run in this process.

Default tool executors, as in the original AbstractRuntime: ``PassthroughToolExecutor`` for
remote (the runtime may run where tools must not: it waits for the host's results), and
``AbstractCoreToolExecutor`` for local and hybrid (which therefore need ``abstractcore`` unless
you pass ``tool_executor=``, e.g. ``MappingToolExecutor.from_tools([...])``).

Storage: ``store=`` (any ``Store``), ``database_url=`` (a ``SqlStore`` made for you), the
original's pair ``run_store=`` / ``ledger_store=``, or nothing (in memory); the original's
``create_local_file_runtime`` / ``create_remote_file_runtime`` keep runs in a directory
(``JsonFileRunStore`` and ``JsonlLedgerStore``, see docs/files.md).

What a factory creates (the ``SqlStore`` of ``database_url``, a file store, the HTTP client) is
closed by ``Runtime.aclose()``, so ``async with await create_remote_runtime(...) as rt:`` cleans
up; a ``store`` or ``http_client`` you pass stays yours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from ...core.config import RuntimeConfig
from ...core.effects import EffectHandler
from ...core.models import EffectType
from ...core.policy import EffectPolicy
from ...core.ports import Store
from ...core.runtime import Runtime
from .effect_handlers import build_effect_handlers
from .llm_client import LLMClient, LocalAbstractCoreLLMClient, RemoteAbstractCoreLLMClient
from .tool_executor import AbstractCoreToolExecutor, PassthroughToolExecutor, ToolExecutor

Closer = Callable[[], Awaitable[None]]


async def _open_store(
    store: Store | None, database_url: str | None
) -> tuple[Store | None, Closer | None]:
    """The store to use and, when we made it, how to close it."""
    from ...storage.sql import SqlStore

    if store is not None and database_url is not None:
        raise ValueError("pass store= or database_url=, not both")
    if database_url is None:
        return store, None  # None: the Runtime keeps everything in memory
    sql_store = SqlStore(database_url)
    try:
        # Fail now, at start-up, on an unreachable or out-of-date database: not at the
        # first step of the first run.
        await sql_store.check()
    except BaseException:
        await sql_store.close()
        raise
    return sql_store, sql_store.close


async def _assemble(
    *,
    store: Store | None,
    database_url: str | None,
    run_store: Any,
    ledger_store: Any,
    llm: LLMClient,
    llm_closer: Closer | None,
    tool_executor: ToolExecutor,
    effect_policy: EffectPolicy | None,
    runtime_kwargs: dict[str, Any],
) -> Runtime:
    """Build the runtime; on any error, close what was made for it."""
    owned: list[Closer] = [llm_closer] if llm_closer is not None else []
    try:
        opened, store_closer = await _open_store(store, database_url)
        if store_closer is not None:
            owned.insert(0, store_closer)  # closed last: aclose pops the newest first
        handlers: dict[EffectType, EffectHandler] = dict(
            build_effect_handlers(llm=llm, tools=tool_executor)
        )
        extra: Mapping[EffectType, EffectHandler] = (
            runtime_kwargs.pop("effect_handlers", None) or {}
        )
        handlers.update({EffectType(k): v for k, v in extra.items()})  # the caller's win
        runtime = Runtime(
            run_store,
            ledger_store,
            store=opened,
            effect_handlers=handlers,
            effect_policy=effect_policy,
            **runtime_kwargs,
        )
    except BaseException:
        for close in reversed(owned):
            await close()
        raise
    runtime.owned_resources.extend(owned)  # after a pair's store: closed before it
    return runtime


def _remote_client(
    server_base_url: str,
    model: str,
    timeout_s: float,
    headers: Mapping[str, str] | None,
    http_client: httpx.AsyncClient | None,
) -> tuple[RemoteAbstractCoreLLMClient, Closer | None]:
    client = RemoteAbstractCoreLLMClient(
        server_base_url=server_base_url,
        model=model,
        timeout_s=timeout_s,
        headers=headers,
        client=http_client,
    )
    return client, (client.aclose if http_client is None else None)


async def create_remote_runtime(
    *,
    server_base_url: str,
    model: str,
    store: Store | None = None,
    database_url: str | None = None,
    run_store: Any = None,
    ledger_store: Any = None,
    tool_executor: ToolExecutor | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    effect_policy: EffectPolicy | None = None,
    http_client: httpx.AsyncClient | None = None,
    context: Any = None,
    **runtime_kwargs: Any,
) -> Runtime:
    """A ``Runtime`` whose ``llm_call`` goes to ``{server_base_url}/v1/chat/completions``.

    Args:
        server_base_url: an OpenAI-compatible server (an AbstractCore server, vLLM, Ollama...).
        model: the model name sent with each call.
        store: where runs live; or ``database_url`` (a ``SqlStore`` made and closed for you);
            or ``run_store`` / ``ledger_store`` (the original's pair); none: in memory.
        tool_executor: runs ``tool_calls``; default ``PassthroughToolExecutor()`` (the run
            waits for the host's results).
        headers: sent with every LLM call (``Authorization``...).
        timeout_s: the LLM call timeout.
        effect_policy: retries and idempotency keys (e.g. ``RetryPolicy()``).
        http_client: an ``httpx.AsyncClient`` to share (not closed by the runtime).
        context: given to node handlers (``Runtime(context=...)``).
        **runtime_kwargs: passed to ``Runtime`` (``config``, ``workflow_registry``, more
            ``effect_handlers``...).

    Raises:
        ValueError: more than one of ``store``, ``database_url`` and the pair are given.
        StoreError, SchemaOutOfDateError: the database is unreachable or needs an upgrade.
    """
    llm, closer = _remote_client(server_base_url, model, timeout_s, headers, http_client)
    return await _assemble(
        store=store,
        database_url=database_url,
        run_store=run_store,
        ledger_store=ledger_store,
        llm=llm,
        llm_closer=closer,
        tool_executor=tool_executor or PassthroughToolExecutor(),
        effect_policy=effect_policy,
        runtime_kwargs={**runtime_kwargs, "context": context},
    )


async def create_hybrid_runtime(
    *,
    server_base_url: str,
    model: str,
    store: Store | None = None,
    database_url: str | None = None,
    run_store: Any = None,
    ledger_store: Any = None,
    tool_executor: ToolExecutor | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    effect_policy: EffectPolicy | None = None,
    http_client: httpx.AsyncClient | None = None,
    context: Any = None,
    **runtime_kwargs: Any,
) -> Runtime:
    """A ``Runtime`` with a remote LLM (as ``create_remote_runtime``) and tools run here.

    ``tool_executor`` defaults to ``AbstractCoreToolExecutor()`` (AbstractCore's tool
    registry, which needs ``abstractcore``); pass ``MappingToolExecutor.from_tools([...])`` to
    run plain Python functions. The other arguments are those of ``create_remote_runtime``.

    Raises:
        AbstractCoreNotInstalledError: no ``tool_executor`` and no ``abstractcore``.
    """
    tools = tool_executor or AbstractCoreToolExecutor()
    llm, closer = _remote_client(server_base_url, model, timeout_s, headers, http_client)
    return await _assemble(
        store=store,
        database_url=database_url,
        run_store=run_store,
        ledger_store=ledger_store,
        llm=llm,
        llm_closer=closer,
        tool_executor=tools,
        effect_policy=effect_policy,
        runtime_kwargs={**runtime_kwargs, "context": context},
    )


async def create_local_runtime(
    *,
    provider: str,
    model: str,
    llm_kwargs: Mapping[str, Any] | None = None,
    store: Store | None = None,
    database_url: str | None = None,
    run_store: Any = None,
    ledger_store: Any = None,
    tool_executor: ToolExecutor | None = None,
    context: Any = None,
    effect_policy: EffectPolicy | None = None,
    config: RuntimeConfig | None = None,
    **runtime_kwargs: Any,
) -> Runtime:
    """A ``Runtime`` whose LLM runs in process through AbstractCore (``create_llm(provider,
    model=model, **llm_kwargs)``, in a worker thread).

    ``tool_executor`` defaults to ``AbstractCoreToolExecutor()``. As in the original, the
    model's capabilities (``get_model_capabilities()``) go into the config's
    ``model_capabilities``, so a run's ``vars["_limits"]["max_tokens"]`` is the model's context
    window unless ``config.max_tokens`` says otherwise. The other arguments are those of
    ``create_remote_runtime``.

    Raises:
        AbstractCoreNotInstalledError: ``abstractcore`` is not installed (the message names
            ``pip install 'abstractruntime[abstractcore]'``).
    """
    llm = LocalAbstractCoreLLMClient(provider=provider, model=model, llm_kwargs=llm_kwargs)
    tools = tool_executor or AbstractCoreToolExecutor()
    capabilities = await llm.get_model_capabilities()
    config = (config or RuntimeConfig()).with_capabilities(capabilities)
    return await _assemble(
        store=store,
        database_url=database_url,
        run_store=run_store,
        ledger_store=ledger_store,
        llm=llm,
        llm_closer=llm.aclose,
        tool_executor=tools,
        effect_policy=effect_policy,
        runtime_kwargs={**runtime_kwargs, "context": context, "config": config},
    )


def _file_stores(base_dir: str | Path) -> tuple[Any, Any]:
    from ...storage.files import JsonFileRunStore, JsonlLedgerStore

    return JsonFileRunStore(base_dir), JsonlLedgerStore(base_dir)


async def create_local_file_runtime(
    *,
    base_dir: str | Path,
    provider: str,
    model: str,
    llm_kwargs: Mapping[str, Any] | None = None,
    context: Any = None,
    config: RuntimeConfig | None = None,
    **runtime_kwargs: Any,
) -> Runtime:
    """``create_local_runtime`` with its runs in the directory ``base_dir`` (the original's
    JSON files, written crash-safe; one process drives a directory at a time)."""
    run_store, ledger_store = _file_stores(base_dir)
    return await create_local_runtime(
        provider=provider,
        model=model,
        llm_kwargs=llm_kwargs,
        run_store=run_store,
        ledger_store=ledger_store,
        context=context,
        config=config,
        **runtime_kwargs,
    )


async def create_remote_file_runtime(
    *,
    base_dir: str | Path,
    server_base_url: str,
    model: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    context: Any = None,
    **runtime_kwargs: Any,
) -> Runtime:
    """``create_remote_runtime`` with its runs in the directory ``base_dir`` (the original's
    JSON files, written crash-safe; one process drives a directory at a time)."""
    run_store, ledger_store = _file_stores(base_dir)
    return await create_remote_runtime(
        server_base_url=server_base_url,
        model=model,
        headers=headers,
        timeout_s=timeout_s,
        run_store=run_store,
        ledger_store=ledger_store,
        context=context,
        **runtime_kwargs,
    )
