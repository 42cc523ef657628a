"""The served dashboard in a real headless Chromium: every page opens, no Streamlit exception box.

`crm app` (which runs `streamlit run` in its own process group) is started in its own process
group on a free port and stopped with its group afterwards. Screenshots go to a temporary folder and, when CRM_SCREENSHOT_DIR is set, there too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.app.conftest import PASSWORDS, environment_for_subprocess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# url path -> the page's title (st.Page derives the path from the file name; the default page is "/").
PAGES = {
    "": "Overview",
    "customers": "Customers",
    "segments": "Segments",
    "segment_builder": "Segment builder & export",
    "churn_value": "Churn & value",
    "campaigns_support": "Campaigns & support",
    "my_book": "My book",
    "data_health": "Data health",
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)"
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


@pytest.fixture
def served_app(published, app_users, tmp_path):
    """`crm app --port N` (what `crm demo` ends with): the URL it prints, once Streamlit answers there."""
    port = _free_port()
    log = tmp_path / "crm_app.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("crm")), "app", "--port", str(port)],
            env={
                **environment_for_subprocess(published.data_dir),
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
        while not _healthy(base):
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
    assert not _healthy(base), "the dashboard kept running after crm app was stopped"


def _settle(page, title: str) -> None:
    """Wait for the page's title, then for Streamlit to finish running the script."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)
    page.wait_for_timeout(300)


def test_every_page_opens_in_chromium_without_an_exception(served_app, published, tmp_path):
    from playwright.sync_api import sync_playwright

    with duckdb.connect(str(published.snapshot.path), read_only=True) as con:
        customer_id = con.execute("SELECT min(customer_id) FROM marts.customer_360").fetchall()[0][0]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Not signed in: the login form and nothing else, whichever page the address names.
            page.goto(f"{served_app}/customers", wait_until="domcontentloaded")
            _settle(page, "CRM dashboard")
            assert page.locator('[data-testid="stDataFrame"]').count() == 0
            assert page.locator('[data-testid="stMetric"]').count() == 0
            page.screenshot(path=str(shots / "login.png"), full_page=True)
            page.get_by_label("User name").fill("test-admin")
            page.get_by_label("Password", exact=True).fill(PASSWORDS["admin"])
            page.get_by_role("button", name="Sign in").click()
            _settle(page, "Overview")
            for path, title in PAGES.items():
                # Through the sidebar, as a person would: a new address would start a new session.
                page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
                _settle(page, title)
                if path == "customers":
                    search = page.get_by_label("Search by name, email, phone or customer id")
                    search.fill(customer_id)
                    search.press("Enter")
                    page.get_by_role("heading", name="Time line").wait_for(timeout=30_000)
                    _settle(page, title)
                exceptions = page.locator('[data-testid="stException"]')
                assert exceptions.count() == 0, f"{title}: {exceptions.first.inner_text()}"
                page.screenshot(path=str(shots / f"{path or 'overview'}.png"), full_page=True)
        finally:
            browser.close()
    target = os.environ.get("CRM_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)
    assert len(list(shots.iterdir())) == len(PAGES) + 1
