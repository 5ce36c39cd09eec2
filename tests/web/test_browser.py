"""The console in a real headless browser (Debian's chromium through chromedriver, selenium).

Skipped only when chromium or chromedriver is absent, and never in CI (``$CI`` set): there a
missing browser fails the run (``.ci/run`` installs it). With ``ABSTRACTRUNTIME_SCREENSHOTS=DIR``
the pages are saved there as PNGs (how ``docs/img/`` is made).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.app import XSS
from tests.web.conftest import AUTH, ROOT, TOKEN, serve_process

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WAIT_S = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('browser') / 'runs.db'}"
    with serve_process(db_url) as url:
        yield url, db_url


@pytest.fixture(scope="module")
def driver(server: tuple[str, str]) -> Iterator[Any]:  # quits before the server stops
    if not (CHROMIUM and DRIVER):
        message = (
            "the browser tests need chromium and chromedriver "
            "(apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    browser.set_page_load_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()


def wait(driver: Any, condition: Any, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message)


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("ABSTRACTRUNTIME_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def start(url: str, workflow: str, vars: dict[str, Any] | None = None) -> str:
    response = httpx.post(
        f"{url}/api/v1/workflows/{workflow}/runs",
        json={"vars": vars or {}},
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    run_id = str(response.json()["run_id"])

    def waiting() -> bool:
        state = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=AUTH, timeout=30).json()
        return bool(state["status"] == "waiting")

    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(None, WAIT_S, poll_frequency=0.05).until(lambda _: waiting(), "never waited")
    return run_id


def login(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/login")
    if "/login" not in driver.current_url:
        return  # logged in already
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: "/inbox" in d.current_url, "login did not lead to the inbox")


def test_refused_without_the_token(driver: Any, server: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By

    url, _ = server
    driver.delete_all_cookies()
    driver.get(f"{url}/runs")
    wait(driver, lambda d: "/login" in d.current_url, "the console let us in without a token")
    screenshot(driver, "login")
    driver.find_element(By.ID, "token").send_keys("wrong-token-0123456789")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: "That is not the token" in d.page_source, "a wrong token got in")
    driver.get(f"{url}/api/v1/runs")
    body = json.loads(driver.find_element(By.TAG_NAME, "body").text)
    assert body["error"]["type"] == "Unauthorized"


def test_answer_a_prompt_from_the_inbox(driver: Any, server: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By

    url, _ = server
    run_id = start(url, "approval")
    start(url, "two_asks", {"who": "the finance team"})
    login(driver, url)
    driver.get(f"{url}/inbox")
    prompt = wait(driver, lambda d: d.find_element(By.ID, f"prompt-{run_id}"), "no prompt")
    assert "Approve?" in prompt.text
    screenshot(driver, "inbox")
    prompt.find_element(By.CSS_SELECTOR, "button[value=yes]").click()
    wait(driver, lambda d: f"/runs/{run_id}" in d.current_url, "answering did not show the run")
    flash = driver.find_element(By.CSS_SELECTOR, ".flash.ok").text
    assert "Answer sent" in flash and "completed" in flash
    assert driver.find_element(By.ID, "run-status").text == "completed"
    driver.get(f"{url}/inbox")
    assert not driver.find_elements(By.ID, f"prompt-{run_id}")


def test_the_ledger_grows_while_another_process_resumes(
    driver: Any, server: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By

    url, db_url = server
    run_id = start(url, "two_asks", {"who": "ops"})
    login(driver, url)
    driver.get(f"{url}/runs/{run_id}")
    before = int(driver.find_element(By.ID, "ledger-count").text)
    assert before >= 1

    def respond() -> None:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "abstractruntime.cli",
                "--database-url",
                db_url,
                "runs",
                "respond",
                run_id,
                "--payload",
                '{"answer": "yes"}',
                "--app",
                "tests.web.app:registry",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    respond()  # another process answers the first question
    wait(
        driver,
        lambda d: int(d.find_element(By.ID, "ledger-count").text) > before,
        "the timeline did not grow",
    )
    wait(
        driver,
        lambda d: any(
            n.text == "second" for n in d.find_elements(By.CSS_SELECTOR, "#timeline .record .node")
        ),
        "the new record is not shown",
    )
    wait(driver, lambda d: d.find_element(By.ID, "run-status").text == "waiting", "not waiting")

    def current(d: Any) -> str:  # the node the path outlines as where the run is
        return str(d.find_element(By.CSS_SELECTOR, "#path-card svg .node.waiting text").text)

    wait(driver, lambda d: current(d) == "second", "the path did not follow the run")
    assert "Second question?" in driver.find_element(By.ID, "state-card").text
    if os.environ.get("ABSTRACTRUNTIME_SCREENSHOTS"):
        driver.refresh()  # the graph is drawn by the server: show the path so far
        wait(driver, lambda d: d.find_element(By.ID, "run-status").text == "waiting", "reload")
        screenshot(driver, "run")
    respond()  # and the second: the page sees the run end
    wait(
        driver,
        lambda d: d.find_element(By.ID, "run-status").text == "completed",
        "the end of the run did not reach the page",
    )
    wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#path-card svg .node.done"),
        "the path does not show the run done",
    )
    shown = [n.text for n in driver.find_elements(By.CSS_SELECTOR, "#timeline .record .seq")]
    assert shown == [f"#{i}" for i in range(len(shown))]  # each record once, in order
    ledger = httpx.get(f"{url}/api/v1/runs/{run_id}/ledger", headers=AUTH).json()["records"]
    assert len(shown) == len(ledger)


def test_an_xss_probe_renders_as_text(driver: Any, server: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By

    url, _ = server
    run_id = start(url, "probe", {"note": XSS})
    login(driver, url)
    driver.get(f"{url}/inbox")
    prompt = wait(driver, lambda d: d.find_element(By.ID, f"prompt-{run_id}"), "no prompt")
    assert "<script>window.__xss = 1</script>" in prompt.text
    driver.get(f"{url}/runs/{run_id}")
    assert "<script>window.__xss = 1</script>" in driver.find_element(By.ID, "run-prompt").text
    driver.find_element(By.CSS_SELECTOR, "details summary").click()
    assert 'onerror=\\"window.__xss = 2\\"' in driver.find_element(By.ID, "run-vars").text
    assert driver.execute_script("return window.__xss === undefined") is True
    driver.get(f"{url}/runs")
    wait(driver, lambda d: run_id in d.page_source, "the runs page misses the probe")
    screenshot(driver, "runs")
    assert driver.execute_script("return window.__xss === undefined") is True
