"""Every dashboard page in a real headless Chromium: time to first content and to fully rendered.

    .venv/bin/python benchmarks/bench_browser.py --data-dir /tmp/crm-bench-12/medium/data --repeats 5

``--data-dir`` is a data folder holding a published snapshot (what `crm build` leaves in
``<data_dir>/snapshots``); it is only read. The benchmark starts `crm app` on a free port (its own
process group, stopped afterwards) and opens each page with Playwright driving Debian's
``/usr/bin/chromium`` (as tests/browser does), one fresh browser context per visit:

- first content: from navigation start until the page's first content is on screen: its title and,
  on Overview, the KPI tiles (the part drawn first; the charts are deferred behind them);
- fully rendered: from navigation start until Streamlit's running indicator is gone (its root says
  the script is not running, no element is still a loading skeleton) and the page has stopped
  changing (no DOM mutation for ``--quiet-ms``); the figure is the time of the last change, so the
  quiet wait itself is not counted;
- from the sidebar: in one browser session (frontend loaded once), from a click on the page's
  sidebar link until it is fully rendered: how a person moves around the app.

Nobody sees a page without signing in (issue 13): the benchmark writes a users file with one admin
(in a temporary folder, pointed at by ``CRM_USERS_FILE``). Every visit is a new session, so it signs
in first (not counted): Overview is timed from the click on "Sign in", every other page from the
click on its sidebar link (an address names no page before the login).

The first visit of each page is reported apart ("cold": a browser that never saw the app, so nothing
is in its cache, and on the first page Streamlit's query caches are empty too); the median of the
following ``--repeats`` page loads in that browser is the "warm" figure (a returning browser opening
the page by its address). The Customers page is measured twice: empty, and
searching a customer's email up to their card. The machine's load (``os.getloadavg``) is recorded
before and after. Results print as a table and go to benchmarks/results/browser_<customers>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
# url path -> title (the default page is "/").
PAGES = {
    "": "Overview",
    "customers": "Customers",
    "segments": "Segments",
    "segment_builder": "Segment builder & export",
    "churn_value": "Churn & value",
    "campaigns_support": "Campaigns & support",
    "my_book": "My book",
    "data_health": "Data health",
    "steward_review": "Steward review",
}
# Records the time of every DOM change, relative to navigation start (performance.now()).
MUTATION_RECORDER = """
window.__lastMutation = 0;
new MutationObserver(() => { window.__lastMutation = performance.now(); })
  .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""
# Streamlit marks its root with the script's state (its own end-to-end tests wait on it); an element
# whose code is still loading shows a skeleton; charts draw after their element mounts (DOM changes).
SETTLED = """([quietMs, title]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSkeleton"]')) return false;
  const heading = document.querySelector('h1');
  if (!heading || (title && !heading.innerText.trim().startsWith(title))) return false;
  return performance.now() - window.__lastMutation >= quietMs;
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


BENCH_USER = "bench-admin"
BENCH_PASSWORD = "bench-password-" + "x" * 12


def users_file(folder: Path) -> Path:
    """A users file with the benchmark's admin (written by the same code as `crm users add`)."""
    sys.path.insert(0, str(ROOT))
    from crm.security.users import add_user

    path = folder / "users.json"
    add_user(path, BENCH_USER, "admin", password=BENCH_PASSWORD, replace=True)
    return path


def sign_in(page, base: str, quiet_ms: int) -> float:
    """Open the app, sign in as the benchmark's admin; performance.now() (ms) of the click on "Sign in"."""
    page.goto(base, wait_until="commit")
    page.get_by_label("User name").fill(BENCH_USER)
    page.get_by_label("Password", exact=True).fill(BENCH_PASSWORD)
    page.wait_for_function(SETTLED, arg=[quiet_ms, None], timeout=120_000, polling=50)
    clicked = page.evaluate("performance.now()")
    page.get_by_role("button", name="Sign in").click()
    return clicked


def start_app(data_dir: Path, port: int, log: Path, users: Path) -> subprocess.Popen:
    env = {**os.environ, "CRM_DATA_DIR": str(data_dir), "CRM_USERS_FILE": str(users)}
    env.pop("CRM_CONFIG", None)
    with open(log, "w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("crm")), "app", "--port", str(port)],
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not healthy(base):
        if server.poll() is not None or time.monotonic() > deadline:
            stop_app(server)
            raise SystemExit(f"the dashboard did not come up on {base}: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    return server


def stop_app(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def first_content_selector(path: str) -> str:
    """What must be on screen for the page to show its first content."""
    if path == "":
        return '[data-testid="stMetric"] >> nth=2'
    return "h1"


def full_screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main container, so the window grows to its height first
    (again until it stops growing: a taller window can let more of the page lay out)."""
    width = page.viewport_size["width"]
    height = 0
    for _ in range(5):
        needed = page.evaluate(
            "(document.querySelector('[data-testid=\"stMainBlockContainer\"]')?.scrollHeight || 0) + 120"
        )
        if needed <= height:
            break
        height = min(int(needed) + 60, 12_000)
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        page.wait_for_function(SETTLED, arg=[500, None], timeout=60_000, polling=100)
    page.screenshot(path=str(path), full_page=True)


def visit(context, base: str, path: str, *, quiet_ms: int, search: str | None = None, screenshot: Path | None = None):
    """(seconds to first content, seconds to fully rendered) of one page load in a new tab of ``context``."""
    page = context.new_page()
    try:
        started = sign_in(page, base, quiet_ms)
        title = PAGES[path]
        if path:
            page.wait_for_function(SETTLED, arg=[quiet_ms, "Overview"], timeout=120_000, polling=50)
            link = page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first
            started = page.evaluate("performance.now()")
            link.click()
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        page.locator(first_content_selector(path)).first.wait_for(timeout=60_000)
        first = (page.evaluate("performance.now()") - started) / 1000
        page.wait_for_function(SETTLED, arg=[quiet_ms, title], timeout=120_000, polling=50)
        settled = (page.evaluate("window.__lastMutation") - started) / 1000
        if search is not None:
            box = page.get_by_role("textbox", name="Search by name, email, phone, account or id")
            started = page.evaluate("performance.now()")
            box.fill(search)
            box.press("Enter")
            page.get_by_role("heading", name="Time line").wait_for(timeout=60_000)
            page.wait_for_function(SETTLED, arg=[quiet_ms, None], timeout=120_000, polling=50)
            settled = (page.evaluate("window.__lastMutation") - started) / 1000
            first = None
        if screenshot is not None:
            full_screenshot(page, screenshot)
        return first, max(settled, first or 0)
    finally:
        page.close()


def new_context(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(MUTATION_RECORDER)
    return context


def navigate(browser, base: str, *, quiet_ms: int, rounds: int) -> dict[str, list[float]]:
    """Seconds from a click on a page's sidebar link until that page is fully rendered, as a person
    moves around the app in one session (the frontend is loaded once; only the page runs)."""
    context = new_context(browser)
    page = context.new_page()
    times: dict[str, list[float]] = {title: [] for title in PAGES.values()}
    try:
        sign_in(page, base, quiet_ms)
        page.wait_for_function(SETTLED, arg=[quiet_ms, "Overview"], timeout=120_000, polling=50)
        order = list(PAGES.values())[1:] + ["Overview"]
        for _ in range(rounds):
            for title in order:
                link = page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first
                started = page.evaluate("performance.now()")
                link.click()
                page.wait_for_function(SETTLED, arg=[quiet_ms, title], timeout=120_000, polling=50)
                times[title].append((page.evaluate("window.__lastMutation") - started) / 1000)
    finally:
        context.close()
    return times


def measure(data_dir: Path, repeats: int, quiet_ms: int, screenshots: Path | None) -> dict:
    import duckdb
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from crm.serving.snapshots import current_snapshot

    snapshot = current_snapshot(data_dir)
    if snapshot is None:
        raise SystemExit(f"{data_dir}: no published snapshot (run `crm build` first)")
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        email = con.execute(
            "SELECT email FROM marts.customer_360 WHERE email IS NOT NULL ORDER BY customer_id LIMIT 1 OFFSET 100"
        ).fetchall()[0][0]
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-browser-{port}.log"
    load_before = os.getloadavg()
    import tempfile

    users = users_file(Path(tempfile.mkdtemp(prefix="bench-browser-users-")))
    server = start_app(data_dir, port, log, users)
    base = f"http://127.0.0.1:{port}"
    rows = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                targets = [(path, title, None) for path, title in PAGES.items()]
                targets.insert(2, ("customers", "Customers: search an email to the card", email))
                for path, title, search in targets:
                    shot = None
                    if screenshots is not None:
                        screenshots.mkdir(parents=True, exist_ok=True)
                        shot = screenshots / f"{(path or 'overview') + ('_card' if search else '')}.png"
                    # Cold: a browser that never saw the app (nothing cached); warm: a returning browser
                    # (its cache holds the app's code) opening the page anew.
                    fresh = new_context(browser)
                    cold = visit(fresh, base, path, quiet_ms=quiet_ms, search=search)
                    warm = [
                        visit(fresh, base, path, quiet_ms=quiet_ms, search=search, screenshot=shot if i == 0 else None)
                        for i in range(repeats)
                    ]
                    fresh.close()
                    firsts = [w[0] for w in warm if w[0] is not None]
                    rendered = [w[1] for w in warm]
                    rows[title] = {
                        "cold_first_content_s": None if cold[0] is None else round(cold[0], 2),
                        "cold_rendered_s": round(cold[1], 2),
                        "first_content_s": round(statistics.median(firsts), 2) if firsts else None,
                        "rendered_s": round(statistics.median(rendered), 2),
                        "rendered_min_s": round(min(rendered), 2),
                        "rendered_max_s": round(max(rendered), 2),
                    }
                    print(f"{title:45s} {json.dumps(rows[title])}", flush=True)
                for title, seconds in navigate(browser, base, quiet_ms=quiet_ms, rounds=repeats).items():
                    rows[title]["from_sidebar_s"] = round(statistics.median(seconds), 2)
                    rows[title]["from_sidebar_max_s"] = round(max(seconds), 2)
            finally:
                browser.close()
    finally:
        stop_app(server)
    return {
        "snapshot": snapshot.snapshot_id,
        "customers": snapshot.row_counts.get("marts.customer_360"),
        "repeats": repeats,
        "quiet_ms": quiet_ms,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "pages": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="A data folder with a published snapshot.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--quiet-ms", type=int, default=500, help="No DOM change this long = the page stopped changing."
    )
    parser.add_argument("--screenshots", type=Path, default=None, help="Save one screenshot per page here.")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing (Debian's chromium package)")
    results = measure(args.data_dir.resolve(), args.repeats, args.quiet_ms, args.screenshots)
    print(f"\n{results['customers']:,} customers; load {results['load_before']} -> {results['load_after']}")
    print(f"{'page':40s} {'first content':>14s} {'rendered':>9s} {'min-max':>10s} {'cold':>6s} {'from sidebar':>13s}")
    for title, row in results["pages"].items():
        first = "–" if row["first_content_s"] is None else f"{row['first_content_s']:.2f} s"
        sidebar = f"{row['from_sidebar_s']:.2f} s" if "from_sidebar_s" in row else "–"
        print(
            f"{title:40s} {first:>14s} {row['rendered_s']:>7.2f} s "
            f"{row['rendered_min_s']:.2f}-{row['rendered_max_s']:.2f} {row['cold_rendered_s']:>5.2f} {sidebar:>13s}"
        )
    out = ROOT / "benchmarks" / "results" / f"browser_{results['customers']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
