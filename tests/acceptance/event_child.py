"""Child process of the event crash test: emits a buffered event, and is killed right after
storing it (``ABSTRACTRUNTIME_CRASH_POINTS=after_event_stored@1``)."""

from __future__ import annotations

import asyncio
import sys

from abstractruntime import Runtime
from abstractruntime.storage import SqlStore


async def main(url: str, key: str) -> None:
    async with SqlStore(url) as store:
        await Runtime(store=store).emit_event(key, {"from": "child"}, buffer_s=60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
