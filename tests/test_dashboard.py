"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium)
against a real stack (Redis, ``hardneg serve``, ``hardneg worker``): sign in with the API key, see
a running job's row change without reloading the page, open the job page, save a screenshot.

``HARDNEG_SCREENSHOT_DIR`` names a folder to copy the screenshots into (the bench sets it).
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_DOCS, TINY_QUERIES
from tests.test_service_support import (
    API_KEY,
    Stack,
    jsonl,
    qrels_tsv,
    running_stack,
    wait_for,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("dashboard")) as built:
        yield built


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver: object, path: Path) -> None:
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("HARDNEG_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)


def test_the_dashboard_needs_the_key_and_never_shows_it(stack: Stack) -> None:
    base = stack.processes.base_url
    page = httpx.get(f"{base}/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert httpx.get(f"{base}/ui/jobs").status_code == 401
    form = {"content-type": "application/x-www-form-urlencoded"}
    forged = httpx.post(f"{base}/login", content=f"key={API_KEY}", headers=form)
    assert forged.status_code == 403 and "hardneg_key" not in forged.cookies  # no CSRF token
    with httpx.Client(base_url=base) as visitor:  # keeps the form's CSRF cookie
        csrf = visitor.get("/login").cookies["hardneg_csrf"]
        wrong = visitor.post("/login", content=f"key=nope&csrf={csrf}", headers=form)
        assert wrong.status_code == 401 and "nope" not in wrong.text
        csrf = wrong.cookies["hardneg_csrf"]  # a fresh form, a fresh token
        signed = visitor.post(
            "/login", content=f"key={API_KEY}&csrf={csrf}", headers=form, follow_redirects=False
        )
    assert signed.status_code == 303 and API_KEY not in signed.text
    cookie = signed.cookies.get("hardneg_key")
    assert cookie == API_KEY and "httponly" in signed.headers["set-cookie"].lower()
    assert httpx.get(f"{base}/", cookies={"hardneg_key": cookie}).status_code == 200


def test_a_running_job_updates_on_the_page_without_reloading(
    stack: Stack, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    client = stack.client
    corpus = client.post("/v1/corpora?name=dash", content=gzip.compress(jsonl(TINY_DOCS))).json()
    assert client.put(f"/v1/corpora/{corpus['id']}/queries", content=jsonl(TINY_QUERIES)).is_success
    assert client.put(f"/v1/corpora/{corpus['id']}/qrels/test", content=qrels_tsv()).is_success
    # LLM-written negatives: SmolLM2 takes seconds per query, so the job is seen running
    job = client.post(
        "/v1/jobs/mine",
        json={
            "corpus_id": corpus["id"],
            "params": {"split": "test", "method": "llm", "num_negatives": 2},
        },
    ).json()
    driver = browser
    base = stack.processes.base_url
    driver.get(f"{base}/")  # type: ignore[attr-defined]
    assert driver.current_url.endswith("/login")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "key").send_keys(API_KEY)  # type: ignore[attr-defined]
    driver.find_element(By.TAG_NAME, "button").click()  # type: ignore[attr-defined]
    wait_for(lambda: driver.current_url == f"{base}/" or None, 10, "the dashboard")  # type: ignore[attr-defined]
    assert "dash" in driver.page_source  # type: ignore[attr-defined]  # the corpora table

    def job_row() -> str:
        return str(driver.find_element(By.ID, "jobs").text)  # type: ignore[attr-defined]

    marker = driver.execute_script("document.body.dataset.loaded='1'; return 1")  # type: ignore[attr-defined]
    assert marker == 1 and job["id"] in job_row()
    seen = {state for state in ("queued", "running") if state in job_row()}
    assert seen, job_row()
    wait_for(lambda: "succeeded" in job_row() or None, 240, "the job row to show success")
    # the same document (no reload): the marker set before is still there
    assert driver.execute_script("return document.body.dataset.loaded") == "1"  # type: ignore[attr-defined]
    _screenshot(driver, tmp_path / "dashboard.png")

    driver.find_element(By.LINK_TEXT, job["id"]).click()  # type: ignore[attr-defined]
    time.sleep(0.5)
    text = driver.page_source  # type: ignore[attr-defined]
    assert "succeeded" in text and "scores.png" in text
    image = driver.find_element(By.CSS_SELECTOR, "img[alt='scores.png']")  # type: ignore[attr-defined]
    assert driver.execute_script("return arguments[0].naturalWidth", image) > 100  # type: ignore[attr-defined]
    assert API_KEY not in text
    _screenshot(driver, tmp_path / "dashboard-job.png")
