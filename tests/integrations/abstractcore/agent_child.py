"""Child process of the agent crash test: drives one agent run (remote LLM, local tools).

``python -m tests.integrations.abstractcore.agent_child DB_URL SERVER_URL RUN_ID MODE``; with
MODE ``hang`` the ``weather`` tool never returns (the process is killed in that step), with
``finish`` the run is driven to its end and its final state printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from abstractruntime import RunLeasedError, RuntimeConfig
from abstractruntime.integrations.abstractcore import create_hybrid_runtime
from tests.integrations.abstractcore import agent_app

#: A short lease, so that a new process may take the run over soon after the kill.
LEASE_S = 1.0


async def main(db_url: str, server_url: str, run_id: str, mode: str) -> None:
    wf = agent_app.workflow()
    async with await create_hybrid_runtime(
        server_base_url=server_url,
        model="test-model",
        database_url=db_url,
        tool_executor=agent_app.tools(hang=mode == "hang"),
        config=RuntimeConfig(lease_s=LEASE_S),
    ) as rt:
        deadline = time.monotonic() + 30
        while True:
            try:
                state = await rt.tick(workflow=wf, run_id=run_id)
                break
            except RunLeasedError:  # the killed process's lease has not expired yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
    print(json.dumps({"status": state.status.value, "output": state.output, "error": state.error}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
