"""The AbstractCore integration: LLM calls and tool calls as durable effects.

Importing this package does not import ``abstractcore`` (an optional extra,
``pip install 'abstractruntime[abstractcore]'``): only the in-process client and the
AbstractCore tool executor need it, and say so when it is missing. The HTTP client talks to any
OpenAI-compatible chat-completions server.

Also here: ``agent`` (a ReAct agent workflow) and ``testing`` (testing aids: a scripted
OpenAI-compatible server to test workflows against).
"""

from __future__ import annotations

from ...core.config import RuntimeConfig
from .effect_handlers import build_effect_handlers, make_llm_call_handler, make_tool_calls_handler
from .errors import (
    AbstractCoreNotInstalledError,
    InvalidToolCallsError,
    LLMCallError,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
)
from .factory import (
    create_hybrid_runtime,
    create_local_file_runtime,
    create_local_runtime,
    create_remote_file_runtime,
    create_remote_runtime,
)
from .llm_client import (
    AbstractCoreLLMClient,
    HttpResponse,
    HttpxRequestSender,
    LLMClient,
    LocalAbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
    RequestSender,
)
from .tool_executor import (
    AbstractCoreToolExecutor,
    MappingToolExecutor,
    PassthroughToolExecutor,
    ToolExecutor,
)

__all__ = [
    "AbstractCoreLLMClient",
    "AbstractCoreNotInstalledError",
    "AbstractCoreToolExecutor",
    "HttpResponse",
    "HttpxRequestSender",
    "InvalidToolCallsError",
    "LLMCallError",
    "LLMClient",
    "LLMConnectionError",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LocalAbstractCoreLLMClient",
    "MappingToolExecutor",
    "PassthroughToolExecutor",
    "RemoteAbstractCoreLLMClient",
    "RequestSender",
    "RuntimeConfig",
    "ToolExecutor",
    "build_effect_handlers",
    "create_hybrid_runtime",
    "create_local_file_runtime",
    "create_local_runtime",
    "create_remote_file_runtime",
    "create_remote_runtime",
    "make_llm_call_handler",
    "make_tool_calls_handler",
]
