"""Child process of the agent crash test: drives one agent run (remote LLM, local tools).

``python -m tests.integrations.abstractcore.agent_child DB_URL SERVER_URL RUN_ID MODE``; with
MODE ``hang`` the ``weather`` tool never returns (the process is killed in that step), with
``finish`` the run is driven to its end and its final state printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from abstractruntime import RuntimeConfig
from abstractruntime.integrations.abstractcore import create_hybrid_runtime
from tests.helpers import tick_when_unleased
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
        # The killed process's lease blocks the run until it expires.
        state = await tick_when_unleased(rt, wf, run_id, timeout=30)
    print(json.dumps({"status": state.status.value, "output": state.output, "error": state.error}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
