"""The app of the worker timeout test (``worker --app tests.acceptance.timeout_app:registry``):
a prompt that gives up after ``TIMEOUT_S`` and goes on at ``late``."""

from __future__ import annotations

from abstractruntime import WorkflowRegistry
from tests.integration.test_timeouts import timed

TIMEOUT_S = 1.0

PROMPT = timed(workflow_id="prompt", timeout_s=TIMEOUT_S, timeout_node="late")
registry = WorkflowRegistry([PROMPT])
