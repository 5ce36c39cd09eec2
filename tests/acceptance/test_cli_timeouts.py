"""``abstractruntime runs list --overdue-within``, run as a subprocess on SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from abstractruntime import Runtime, RuntimeConfig
from abstractruntime.core.serde import utc_now
from abstractruntime.storage import SqlStore
from tests.helpers import FakeClock, cli
from tests.integration.test_timeouts import timed
from tests.workflows import waiter


async def test_runs_list_overdue_within(db_url: str, tmp_path: Path) -> None:
    async with SqlStore(db_url) as store:
        await store.check()  # creates and migrates a SQLite file
        ids = {}
        for name, started_ago_s, timeout_s in [
            ("overdue", 7200, 3600),  # its deadline passed an hour ago, nobody timed it out
            ("soon", 0, 60),
            ("later", 0, 7200),
        ]:
            wf = timed(workflow_id=name, timeout_s=timeout_s)
            clock = FakeClock(utc_now() - timedelta(seconds=started_ago_s))
            ids[name], _ = await Runtime(store=store, config=RuntimeConfig(clock=clock)).run(wf)
        await Runtime(store=store).run(waiter())  # no deadline: never listed

    def listed(*args: str) -> list[str]:
        result = cli("--json", "runs", "list", *args, cwd=tmp_path, url=db_url)
        assert result.returncode == 0, result.stderr
        return [run["workflow_id"] for run in json.loads(result.stdout)]

    assert listed("--overdue-within", "1h") == ["overdue", "soon"]
    assert listed("--overdue-within", "3h") == ["overdue", "soon", "later"]
    assert listed("--overdue-within", "0s") == ["overdue"]
    assert listed("--overdue-within", "2d", "--limit", "1") == ["overdue"]
    assert len(listed()) == 4  # without it: every run, as before

    text = cli("runs", "list", "--overdue-within", "15m", cwd=tmp_path, url=db_url).stdout
    assert ids["soon"] in text and "timeout" in text and ids["later"] not in text

    bad = cli("runs", "list", "--overdue-within", "1x", cwd=tmp_path, url=db_url)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
