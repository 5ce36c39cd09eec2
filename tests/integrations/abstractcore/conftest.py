"""Fixtures of the AbstractCore integration tests: a real scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from abstractruntime.integrations.abstractcore import RemoteAbstractCoreLLMClient
from abstractruntime.integrations.abstractcore.testing import ScriptedChatServer


@pytest.fixture
async def server() -> AsyncIterator[ScriptedChatServer]:
    """A started scripted server with an empty script (tests ``add`` their replies)."""
    async with ScriptedChatServer() as started:
        yield started


@pytest.fixture
async def client(server: ScriptedChatServer) -> AsyncIterator[RemoteAbstractCoreLLMClient]:
    async with RemoteAbstractCoreLLMClient(
        server_base_url=server.url, model="test-model", timeout_s=5.0
    ) as made:
        yield made
