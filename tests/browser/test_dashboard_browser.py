"""The served dashboard in a real headless Chromium: every page opens without a Streamlit exception,
a customer is found by a secondary email and by a phone in national format, the open month is marked,
a download holds the rows the page counts; a full-page screenshot of every page is kept.

`crm app` (which runs `streamlit run` in its own process group) is started in its own process group on
a free port and stopped with its group afterwards. It serves a copy of the shared build's snapshot with
suspected duplicates added (what issue 11's identity step writes), so the steward page has pairs.
Screenshots go to tests/artifacts/<date-time>/screenshots/ (git-ignored), or to CRM_SCREENSHOT_DIR.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from benchmarks.bench_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MUTATION_RECORDER,
    PAGES,
    SETTLED,
    free_port,
    full_screenshot,
    healthy,
)
from tests.app.conftest import PASSWORDS, environment_for_subprocess, republish
from tests.app.test_app_data import _national_phone, _secondary_email
from tests.app.test_app_pages import _suspects

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SEARCH_LABEL = "Search by name, email, phone, account or id"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)"
    ),
]


@pytest.fixture(scope="module")
def screenshots() -> Path:
    target = Path(os.environ.get("CRM_SCREENSHOT_DIR") or ARTIFACTS / f"{datetime.now():%Y%m%dT%H%M%S}")
    folder = target / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def served_app(published, app_users, tmp_path):
    """`crm app --port N` (what `crm demo` ends with) on a copy of the snapshot with suspected duplicates:
    the URL it prints, once Streamlit answers there."""
    data_dir = tmp_path / "data"
    # The build's own run id: Data health names the run that published what it shows.
    republish(published.snapshot.path, data_dir, published.snapshot.run_id, published.snapshot, _suspects)
    port = free_port()
    log = tmp_path / "crm_app.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("crm")), "app", "--port", str(port)],
            env={
                **environment_for_subprocess(data_dir),
                "CRM_USERS_FILE": str(app_users.path),
                "COLUMNS": "200",
            },
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(base):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not come up on {base}: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        assert base in log.read_text(), "crm app prints the dashboard's URL"
        yield base
    finally:
        # crm stops its Streamlit process group on SIGTERM; SIGKILL the rest if it does not.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert not healthy(base), "the dashboard kept running after crm app was stopped"


def _settle(page, title: str) -> None:
    """Wait for the page's title, then for Streamlit to finish the script and the page to stop changing."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    page.wait_for_function(SETTLED, arg=[400, None], timeout=60_000, polling=100)


def _no_exception(page, title: str) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{title}: {exceptions.first.inner_text()}"


def _search(page, text: str) -> str:
    """Type into the Customers search, wait for the card; the card's heading (the customer's name)."""
    box = page.get_by_role("textbox", name=SEARCH_LABEL)
    box.fill(text)
    box.press("Enter")
    page.get_by_role("heading", name="Time line").wait_for(timeout=30_000)
    page.wait_for_function(SETTLED, arg=[400, None], timeout=60_000, polling=100)
    return page.locator("h3").first.inner_text()


def test_every_page_in_chromium_with_screenshots(served_app, published, built_company, screenshots):
    from playwright.sync_api import sync_playwright

    with duckdb.connect(str(published.snapshot.path), read_only=True) as con:
        secondary_customer, secondary = _secondary_email(con)
        phone_customer, national = _national_phone(built_company.warehouse)
        names = dict(con.execute("SELECT customer_id, full_name FROM marts.customer_360").fetchall())
        (as_of,) = con.execute("SELECT max(as_of_date) FROM marts.customer_360").fetchall()[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            context.add_init_script(MUTATION_RECORDER)
            page = context.new_page()
            # Not signed in: the login form and nothing else, whichever page the address names.
            page.goto(f"{served_app}/customers", wait_until="domcontentloaded")
            _settle(page, "CRM dashboard")
            assert page.locator('[data-testid="stDataFrame"]').count() == 0
            assert page.locator('[data-testid="stMetric"]').count() == 0
            full_screenshot(page, screenshots / "login.png")
            page.get_by_label("User name").fill("test-admin")
            page.get_by_label("Password", exact=True).fill(PASSWORDS["admin"])
            page.get_by_role("button", name="Sign in").click()
            _settle(page, "Overview")
            for path, title in PAGES.items():
                page.set_viewport_size({"width": 1400, "height": 1000})
                # Through the sidebar, as a person would: a new address would start a new session.
                page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
                _settle(page, title)
                _no_exception(page, title)
                if path == "":
                    assert page.get_by_text(f"partial months: {as_of:%b %Y}").count() >= 1, "the open month is marked"
                if path == "customers":
                    assert _search(page, national) == names[phone_customer], national
                    assert _search(page, secondary) == names[secondary_customer], secondary
                    _no_exception(page, title)
                if path == "segment_builder":
                    shown = int(page.locator('[data-testid="stMetricValue"]').first.inner_text().replace(",", ""))
                    with page.expect_download() as download:
                        page.get_by_role("button", name="Download CSV").click()
                    rows = pl.read_csv(download.value.path(), infer_schema=False)
                    assert rows.height == shown, "the file holds the rows the page counts"
                full_screenshot(page, screenshots / f"{path or 'overview'}.png")
        finally:
            browser.close()
    taken = sorted(p.name for p in screenshots.iterdir())
    assert taken == sorted(["login.png", *(f"{path or 'overview'}.png" for path in PAGES)]), taken
