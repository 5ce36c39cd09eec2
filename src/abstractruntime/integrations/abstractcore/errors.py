"""The exceptions of the AbstractCore integration.

    AbstractRuntimeError                       abstractruntime's root exception
    ├── LLMCallError                           an LLM call failed; ``retryable`` says whether
    │   │                                      another attempt may succeed
    │   ├── LLMConnectionError                 the server cannot be reached, or dropped the
    │   │                                      connection (retryable)
    │   ├── LLMTimeoutError                    no answer within ``timeout_s`` (retryable)
    │   ├── LLMHTTPError                       the server answered an error status: retryable
    │   │                                      for 408, 429 and 5xx, not for other statuses
    │   └── LLMResponseError                   a success status whose body is not a chat
    │                                          completion (not JSON, no ``choices``): not retryable
    ├── InvalidToolCallsError (ValueError)     a ``tool_calls`` payload that is not a list of calls
    └── AbstractCoreNotInstalledError (ImportError)
                                               the optional ``abstractcore`` extra is missing

The effect handlers turn these into failed effects (``EffectOutcome.failed(str(exc),
retryable=exc.retryable)``), so a failing LLM never raises out of ``Runtime.tick``; the run's
effect policy decides whether a retryable failure gets another attempt.
"""

from __future__ import annotations

from ...errors import AbstractRuntimeError

INSTALL_HINT = "pip install 'abstractruntime[abstractcore]'"


class LLMCallError(AbstractRuntimeError):
    """An LLM call failed.

    Attributes:
        retryable: whether another attempt of the same call may succeed (a timeout, a 5xx)
            as opposed to a failure that will repeat (a 400, an unknown model).
        url: the endpoint that was called, when there is one.
    """

    def __init__(self, message: str, *, retryable: bool, url: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.url = url


class LLMConnectionError(LLMCallError):
    """The LLM server could not be reached (refused, unknown host) or dropped the connection."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, retryable=True, url=url)


class LLMTimeoutError(LLMCallError):
    """The LLM server did not answer in time."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, retryable=True, url=url)


#: Statuses worth another attempt: the request timed out, we were throttled, the server failed.
RETRYABLE_STATUSES = frozenset({408, 429})


def status_is_retryable(status_code: int) -> bool:
    """Whether a request answered with ``status_code`` may succeed when sent again."""
    return status_code in RETRYABLE_STATUSES or 500 <= status_code <= 599


class LLMHTTPError(LLMCallError):
    """The LLM server answered with an error status.

    Attributes:
        status_code: the HTTP status.
        body: the start of the response body (truncated), to show what the server said.
        retry_after_s: the server's ``Retry-After`` in seconds, when it sent one as a number.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str,
        url: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retryable=status_is_retryable(status_code), url=url)
        self.status_code = status_code
        self.body = body
        self.retry_after_s = retry_after_s


class LLMResponseError(LLMCallError):
    """The LLM server answered with a success status, but not with a chat completion."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, retryable=False, url=url)


class InvalidToolCallsError(AbstractRuntimeError, ValueError):
    """A ``tool_calls`` payload that is not a list of ``{"name", "arguments"}`` calls."""


class AbstractCoreNotInstalledError(AbstractRuntimeError, ImportError):
    """The optional ``abstractcore`` package, needed by this feature, is not installed."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional 'abstractcore' package, which is not installed: "
            f"run {INSTALL_HINT}"
        )
        self.feature = feature
        self.name = "abstractcore"  # ImportError's attribute: the module that is missing
