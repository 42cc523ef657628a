"""The dashboard at scale: publishing, each page's first render, a customer lookup, a 100k-row export.

    .venv/bin/python benchmarks/bench_app.py --built /tmp/crm-bench/large-built --repeats 5

``--built`` is a folder holding a built ``warehouse/crm.duckdb``; it is only read: the warehouse is
copied into ``--workdir`` and published from there into a temporary data dir. The build must hold
its scores (a full `crm build`), so the score pages do real work.

- publish: ``publish_snapshot`` (the served tables copied into a new file + bookkeeping + lookup
  indexes + pointer swap), and with ``--compare-copy`` DuckDB's ``COPY FROM DATABASE`` of the whole
  warehouse into a new file for comparison;
- first render: Streamlit AppTest running the app script on one page with cold caches (caches
  cleared, so the snapshot is opened and every query runs), signing in through the login form as
  an admin first — the server-side render, no browser;
- customer lookup: search by email, phone or name + the 360 card + time line + source records
  (the data-layer calls the Customers page makes);
- export: a segment of ~100,000 customers to CSV, Parquet and Excel bytes (what a download returns).

Medians of ``--repeats`` runs; peak memory is this process's max RSS. Results print as a table and
are written to benchmarks/results/app_<customers>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGES = (
    "overview",
    "customers",
    "segments",
    "segment_builder",
    "churn_value",
    "campaigns_support",
    "my_book",
    "data_health",
    "steward_review",
)
EXPORT_ROWS = 100_000


def _timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _publish(built: Path, workdir: Path, compare_copy: bool) -> tuple[dict, Path]:
    import duckdb

    from crm.serving.snapshots import publish_snapshot

    warehouse = workdir / "crm.duckdb"
    started = time.perf_counter()
    shutil.copyfile(built / "warehouse" / "crm.duckdb", warehouse)
    copy_seconds = time.perf_counter() - started
    with duckdb.connect(str(warehouse), read_only=True) as con:
        scored = con.execute("SELECT count(*) FROM marts.customer_scores").fetchall()[0][0]
    if not scored:
        raise SystemExit(f"{built}: the built warehouse has no scores; build it with `crm build` first")
    data_dir = workdir / "data"
    started = time.perf_counter()
    snapshot = publish_snapshot(warehouse, data_dir, run_id="benchmark")
    publish_seconds = time.perf_counter() - started
    facts = {
        "warehouse_bytes": warehouse.stat().st_size,
        "copy_of_read_only_build_s": round(copy_seconds, 2),
        "publish_snapshot_s": round(publish_seconds, 2),
        "snapshot_bytes": snapshot.path.stat().st_size,
        "customers": snapshot.row_counts.get("marts.customer_360"),
    }
    if compare_copy:
        started = time.perf_counter()
        with duckdb.connect() as con:
            con.execute(f"ATTACH '{warehouse}' AS source (READ_ONLY)")
            con.execute(f"ATTACH '{workdir / 'copied.duckdb'}' AS target")
            con.execute("COPY FROM DATABASE source TO target")
        facts["copy_from_database_s"] = round(time.perf_counter() - started, 2)
        (workdir / "copied.duckdb").unlink()
    warehouse.unlink()
    return facts, data_dir


BENCH_PASSWORD = "benchmark-password"


def _bench_user(workdir: Path) -> None:
    """An admin in a private users file: every page, through the real login form."""
    import os

    from crm.security.users import add_user

    path = workdir / "users.json"
    if not path.exists():
        add_user(path, "bench", "admin", password=BENCH_PASSWORD)
    os.environ["CRM_USERS_FILE"] = str(path)


def _viewer():
    from crm.security.roles import Viewer

    return Viewer.for_role("bench", "admin")


def _first_renders(repeats: int) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    script = str(ROOT / "app" / "streamlit_app.py")
    results = {}
    for page in PAGES:

        def render(page: str = page) -> None:
            st.cache_data.clear()
            st.cache_resource.clear()
            app = AppTest.from_file(script, default_timeout=120)
            app.run()  # the login form (signing in is part of a first visit)
            app.text_input(key="login_name").input("bench")
            app.text_input(key="login_password").input(BENCH_PASSWORD)
            app.button[0].click().run()
            if page != "overview":
                app.switch_page(f"app_pages/{page}.py")
                app.run()
            if app.exception:
                raise SystemExit(f"{page}: {app.exception[0].value}")

        results[page] = round(_timed(render, repeats)[0], 3)
    return results


def _lookups(repeats: int) -> dict[str, float]:
    from app import data

    reader = data.SnapshotReader(data.find_snapshot(), _viewer())
    rows = reader.rows(
        "SELECT customer_id, email, phone, last_name FROM marts.customer_360 "
        "WHERE email IS NOT NULL AND phone IS NOT NULL USING SAMPLE 200 ROWS"
    )
    picker = random.Random(7)

    def lookup(kind: str):
        def run() -> None:
            customer_id, email, phone, last_name = picker.choice(rows)
            text = {"email": email, "phone": phone[-7:], "name": last_name, "id": customer_id}[kind]
            found = data.search_customers(reader, text)
            chosen = found.rows["customer_id"][0]
            data.customer_card(reader, chosen)
            data.customer_timeline(reader, chosen)  # (rows, sends)
            data.customer_records(reader, chosen)

        return run

    return {kind: round(_timed(lookup(kind), repeats * 4)[0], 3) for kind in ("id", "email", "phone", "name")}


def _export(repeats: int) -> dict[str, float]:
    from app import data
    from crm.serving.segments import Condition, SegmentDefinition

    reader = data.SnapshotReader(data.find_snapshot(), _viewer())
    customers = reader.value("SELECT count(*) FROM marts.customer_360")
    # The revenue above which ~100k customers lie: a realistic filter, not a LIMIT.
    threshold = reader.value(
        "SELECT quantile_disc(revenue_lifetime, ?) FROM marts.customer_360", [max(0.0, 1 - EXPORT_ROWS / customers)]
    )
    definition = SegmentDefinition(
        name="bench", conditions=[Condition(column="revenue_lifetime", op=">=", value=float(threshold))]
    )
    matched, _ = data.segment_count(reader, definition)
    results = {"rows": matched}
    for file_format in ("CSV", "Parquet", "Excel"):
        seconds, payload = _timed(lambda fmt=file_format: data.export_bytes(reader, definition, fmt), repeats)
        results[f"{file_format.lower()}_s"] = round(seconds, 3)
        results[f"{file_format.lower()}_bytes"] = len(payload)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--built", type=Path, default=Path("/tmp/crm-bench/large-built"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--compare-copy",
        action="store_true",
        help="also time DuckDB's COPY FROM DATABASE (the alternative to a file copy)",
    )
    args = parser.parse_args()
    import os

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-app-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        publish, data_dir = _publish(args.built, workdir, args.compare_copy)
        os.environ["CRM_DATA_DIR"] = str(data_dir)
        os.environ.pop("CRM_CONFIG", None)
        _bench_user(workdir)
        results = {
            "built": str(args.built),
            "repeats": args.repeats,
            "publish": publish,
            "first_render_s": _first_renders(args.repeats),
            "customer_lookup_s": _lookups(args.repeats),
            "export": _export(args.repeats),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results" / f"app_{publish['customers']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
