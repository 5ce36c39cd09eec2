"""Child process of the retry crash test: its only LLM attempt fails, then it is killed while
the retry is pending (it prints ``pending`` and waits to be killed)."""

from __future__ import annotations

import asyncio
import sys

from abstractruntime import EffectOutcome, EffectType, RetryPolicy, Runtime
from abstractruntime.storage import SqlStore
from tests.workflows import llm_agent_step


def unavailable(run: object, effect: object, next_node: object) -> EffectOutcome:
    return EffectOutcome.failed("HTTP 503 from the model server", retryable=True)


async def main(url: str, backoff_s: float) -> None:
    async with SqlStore(url) as store:
        rt = Runtime(
            store=store,
            effect_handlers={EffectType.LLM_CALL: unavailable},
            effect_policy=RetryPolicy(backoff_base=backoff_s),
        )
        run_id, state = await rt.run(llm_agent_step())
        print(run_id, state.status, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
