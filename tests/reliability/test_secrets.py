"""Secrets (issue 7.4): a password in a database URL never shows in errors, logs or CLI output.

The password is checked as a plain substring everywhere: ``str()`` and ``repr()`` of the error,
the whole ``__cause__``/``__context__`` chain as ``traceback`` prints it, ``repr`` of the store,
every log record as a handler would format it (traceback included), and what the command line
prints on stdout and stderr. Unreachable servers (a closed port), a real server that refuses
the role, a missing database, and a working database with a password in its URL (the test
server trusts local connections, so a wrong password would not be refused: a missing role is
the refusal we can provoke).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from abstractruntime import (
    AbstractRuntimeError,
    Runtime,
    SchemaOutOfDateError,
    StoreError,
    create_scheduled_runtime,
)
from abstractruntime.storage import SqlStore
from abstractruntime.storage.sql.urls import mask_url
from tests.helpers import EXE, cli, eventually
from tests.workflows import APPROVAL

SECRET = "s3cr3t-PASS"
UNREACHABLE = f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/db"


def with_password(url: str, *, user: str | None = None, database: str | None = None) -> str:
    """``url`` with ``SECRET`` as its password (and another user or database)."""
    parsed = make_url(url).set(password=SECRET)
    if user is not None:
        parsed = parsed.set(username=user)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def everything_printed(exc: BaseException) -> str:
    """All an error shows: its str and repr, and the chain as a traceback prints it."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        parts += [str(link), repr(link)]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


def assert_clean(text: str) -> None:
    assert SECRET not in text, f"the password leaked: {text[:2000]}"


@pytest.fixture
def pg_bad_urls(pg_url: str) -> Iterator[dict[str, str]]:
    """URLs with the password that the real server refuses or cannot serve."""
    yield {
        "closed port": UNREACHABLE,
        "unknown role": with_password(pg_url, user="no_such_role_x"),
        "missing database": with_password(pg_url, database="no_such_database_x"),
    }


# -- the store and its errors ------------------------------------------------------------------


def test_the_store_and_its_url_never_show_the_password() -> None:
    store = SqlStore(UNREACHABLE)
    for text in (repr(store), str(store), repr(store.url), str(store.url), mask_url(UNREACHABLE)):
        assert_clean(text)
    assert "***" in repr(store)


async def test_errors_of_unreachable_and_refusing_databases_are_masked(
    pg_bad_urls: dict[str, str],
) -> None:
    for what, url in pg_bad_urls.items():
        await errors_are_masked(what, url)


async def errors_are_masked(what: str, url: str) -> None:
    async with SqlStore(url) as store:
        rt = Runtime(store=store)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "check": store.check,
            "load_run": lambda: store.load_run("x"),
            "list_runs": store.list_runs,
            "start": lambda: rt.start(workflow=APPROVAL),
            "run": lambda: rt.run(APPROVAL),
            "get_ledger": lambda: rt.get_ledger("x"),
            "cancel_run": lambda: rt.cancel_run("x"),
            "snapshots.list": lambda: store.snapshots.list(query="x"),
            "artifacts.put": lambda: store.artifacts.put(b"data"),
            "upgrade": store.upgrade,
        }
        for name, call in calls.items():
            with pytest.raises(AbstractRuntimeError) as info:
                await call()
            assert isinstance(info.value, StoreError), (what, name, info.value)
            assert "***" in str(info.value), (what, name, str(info.value))
            assert_clean(everything_printed(info.value))


async def test_an_outdated_database_names_the_upgrade_command_masked(pg_empty_url: str) -> None:
    async with SqlStore(with_password(pg_empty_url)) as store:
        with pytest.raises(SchemaOutOfDateError) as info:
            await store.load_run("x")
    assert "db upgrade" in str(info.value) and "***" in str(info.value)
    assert_clean(everything_printed(info.value))


# -- logs --------------------------------------------------------------------------------------


def formatted(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


async def test_a_scheduler_that_cannot_reach_its_database_logs_no_password(
    pg_bad_urls: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The poll loop backs off and the LISTEN loop reconnects, both logging each failure (with
    its traceback): never the password."""
    caplog.set_level(logging.DEBUG)
    for what, url in pg_bad_urls.items():
        caplog.clear()
        await scheduler_survives(what, url, caplog)
        text = formatted(caplog.records)
        assert "poll cycle failed" in text and "cannot LISTEN on" in text
        assert "Traceback" in text  # the poll loop logs the chain: it is checked too
        assert_clean(text)
        assert_clean(caplog.text)


async def scheduler_survives(what: str, url: str, caplog: pytest.LogCaptureFixture) -> None:
    sr = await create_scheduled_runtime(
        database_url=url, workflows=[APPROVAL], poll_interval_s=0.05
    )

    def listen_failures() -> int:
        return sum(
            r.name == "abstractruntime.storage" and r.levelno >= logging.WARNING
            for r in caplog.records
        )

    try:
        await eventually(
            lambda: len(sr.stats.errors) >= 2, f"{what}: the poll loop did not retry", timeout=20
        )
        await eventually(
            lambda: listen_failures() >= 2, f"{what}: the LISTEN loop did not retry", timeout=20
        )
        assert sr.scheduler.is_running
    finally:
        await sr.stop()


# -- the command line --------------------------------------------------------------------------


APP = "tests.acceptance.worker_app:registry"


def test_cli_errors_never_show_the_password(pg_bad_urls: dict[str, str], tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])  # so that --app finds the tests package
    calls = []
    for url in pg_bad_urls.values():
        for command in (["db", "current"], ["runs", "list"], ["--json", "runs", "list"]):
            calls.append((["--database-url", url, *command], None))
        calls.append((["runs", "show", "x"], url))  # the URL from the environment
        calls.append((["--database-url", url, "worker", "--app", APP], None))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda call: cli(*call[0], cwd=Path(root), url=call[1]), calls))
    for (args, _), result in zip(calls, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("abstractruntime: error:"), (args, result.stderr)
        assert "***" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert_clean(result.stdout + result.stderr)


def test_cli_output_with_a_working_url_never_shows_the_password(pg_url: str) -> None:
    url = with_password(pg_url)  # the server trusts us: the password is accepted, and unused
    root = Path(__file__).resolve().parents[2]
    for args in (["db", "current"], ["runs", "list"], ["--json", "runs", "list"], ["demo"]):
        result = cli("--database-url", url, *args, cwd=root)
        assert result.returncode == 0, (args, result.stderr)
        assert_clean(result.stdout + result.stderr)
    # A worker logs where it works: masked.
    env = {k: v for k, v in os.environ.items() if k != "ABSTRACTRUNTIME_DATABASE_URL"}
    worker = subprocess.Popen(
        [EXE, "--database-url", url, "worker", "--app", APP, "--poll-interval", "0.05"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        started = ""
        deadline = time.monotonic() + 30
        while " on postgresql" not in started:
            assert time.monotonic() < deadline and worker.poll() is None, started
            started += worker.stderr.readline()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    assert "***" in started
    assert_clean(started + out + err)


# -- URLs a naive mask lets through ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://app:x@{SECRET}@127.0.0.1:1/db",
        f"postgresql+asyncpg://app@127.0.0.1:1/db?password={SECRET}",
    ],
    ids=["at-sign-in-password", "password-query-parameter"],
)
async def test_unusual_password_spellings_are_masked_too(url: str) -> None:
    assert_clean(mask_url(url))
    store = SqlStore(url)
    try:
        assert_clean(repr(store))
        with pytest.raises(StoreError) as info:
            await store.check()
        assert_clean(everything_printed(info.value))
    finally:
        await store.close()
