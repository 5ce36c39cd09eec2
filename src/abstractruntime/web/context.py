"""What every route of one app shares."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.runtime import Runtime
from .security import Guard
from .stream import Wakeups


@dataclass
class WebContext:
    runtime: Runtime
    guard: Guard
    wakeups: Wakeups
    #: The largest request body read (413 beyond).
    max_body: int
    #: How often a ledger stream looks for new records (see ``stream.py``).
    stream_poll_s: float
