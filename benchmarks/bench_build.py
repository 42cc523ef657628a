"""The whole path at a scale (issue 14): a bare DuckDB pass, the full build, and one nightly build.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_build.py --scale small --repeats 3
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_build.py --scale medium --workdir /tmp/bench-14
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_build.py --scale large --workdir /tmp/bench-14
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_build.py --scale xlarge --days 73 --workdir /tmp/bench-14

In one run:

1. generate the company (small 2,000 persons, medium 100,000, large 1,000,000, xlarge 10,000,000;
   730 days from 2024-01-01 unless ``--days`` says otherwise, seed 1, as bench_pipeline.py) into
   ``<workdir>/<scale>/full`` and copy it to ``sources`` without its last day (simulator/new_day.py:
   rows, drop files and export pages of that day held back);
2. the yardstick, a **bare pass**: every SQLite table, marketing CSV drop and support export page
   into a fresh DuckDB file with plain DuckDB (ADBC's Arrow stream for SQLite: DuckDB's sqlite
   extension cannot be installed offline), then per customer: orders and revenue per contact,
   events per marketing email, tickets per requester email. No project code;
3. the **full build**: ``run_build`` as ``crm build`` runs it, on a fresh data folder (warehouse and
   Dagster instance on disk), every step's wall time and the peak RSS of the process tree during it
   (sampled from /proc every 0.2 s: the build process and its children, dbt's included);
4. append the held-back day (``simulator.new_day.append_days``) and time the **nightly build**
   (``run_build`` without start/end: each source reads what is new since its cursor).

Each pass runs in its own process. ``full_ratio = full / bare``, ``nightly_ratio = nightly / bare``
(medians over ``--repeats``); the load average (``uptime``) is recorded before and after each pass.
Issue 14's targets: nightly <= 0.5x bare, full <= 7x bare; at medium nightly <= 15 s, full <= 60 s.
Results also go to benchmarks/results/build_<scale>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# xlarge is issue 14's moonshot. At 730 days its sources alone need ~65 GB of disk (large: 6.7 GB),
# so on a smaller disk run it with a shorter --days: same persons, fewer events per person.
SCALES = {"small": 2_000, "medium": 100_000, "large": 1_000_000, "xlarge": 10_000_000}
START = date(2024, 1, 1)
DAYS = 730
SEED = 1
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- memory of a process tree, from /proc (psutil is not a dependency) ---------------------------


def _tree_rss_bytes(root: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


class TreeSampler:
    """Peak RSS of this process and its descendants, overall and per named phase (step)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak, self.current = interval, 0, 0
        self.phase_peaks: dict[str, int] = {}
        self.running: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        rss = _tree_rss_bytes(os.getpid())
        with self._lock:
            self.current, self.peak = rss, max(self.peak, rss)
            for name in self.running:
                self.phase_peaks[name] = max(self.phase_peaks.get(name, 0), rss)

    def begin(self, name: str) -> None:
        with self._lock:
            self.running.add(name)
            self.phase_peaks[name] = max(self.phase_peaks.get(name, 0), self.current)

    def end(self, name: str) -> None:
        self.sample()
        with self._lock:
            self.running.discard(name)


def _maxrss_mib() -> float:
    """ru_maxrss (KiB on Linux) of this process and of its largest waited-for child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


# --- the passes (each in its own process) ---------------------------------------------------------


def bare_pass(sources: Path, warehouse: Path) -> dict:
    """Load every source into a fresh DuckDB file and aggregate per customer; plain DuckDB, no project code."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite
    import duckdb

    warehouse.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        leftover.unlink(missing_ok=True)
    steps: dict[str, float] = {}
    rows: dict[str, int] = {}
    started = time.perf_counter()
    with TreeSampler() as sampler, duckdb.connect(str(warehouse)) as con:

        def timed(name: str, sql: str) -> None:
            sampler.begin(name)
            t = time.perf_counter()
            con.execute(sql)
            steps[name] = time.perf_counter() - t
            sampler.end(name)

        sampler.begin("load sales (SQLite via ADBC)")
        t = time.perf_counter()
        with adbc_sqlite.connect(str(sources / "sales" / "sales.sqlite")) as sqlite, sqlite.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            tables = [r[0] for r in cursor.fetchall()]
            for table in tables:
                cursor.execute(f'SELECT * FROM "{table}"')
                stream = cursor.fetch_record_batch()  # noqa: F841 (scanned by name below)
                con.execute(f"CREATE TABLE sales_{table} AS SELECT * FROM stream")
        steps["load sales (SQLite via ADBC)"] = time.perf_counter() - t
        sampler.end("load sales (SQLite via ADBC)")
        # One scan per group of files with the same header (the platform changed its exports'
        # columns over the years), read as that header says: sniffing each of 730 small files
        # (union_by_name) costs 20x as much. Lines that do not fit their header are skipped.
        for kind in ("campaigns", "contacts", "events"):
            timed(f"load marketing {kind} (CSV)", _csv_groups_sql(f"marketing_{kind}", sources / "marketing" / kind))
        timed(
            "load support pages (JSON)",
            f"CREATE TABLE support_lines AS SELECT * FROM read_json('{sources}/support/export/*.jsonl', "
            "format = 'newline_delimited', union_by_name = true, ignore_errors = true, filename = true)",
        )
        timed(
            "aggregate per customer",
            """
            CREATE TABLE orders_per_contact AS
              SELECT contact_id, count(*) AS orders, sum(try_cast(total_amount AS DOUBLE)) AS revenue
              FROM sales_orders GROUP BY contact_id;
            CREATE TABLE events_per_contact AS
              SELECT lower(trim(email)) AS email, count(*) AS events,
                     count(*) FILTER (WHERE event_type = 'click') AS clicks
              FROM marketing_events GROUP BY 1;
            CREATE TABLE tickets_per_requester AS
              SELECT lower(trim(requester.email)) AS email, count(DISTINCT id) AS tickets
              FROM support_lines WHERE id IS NOT NULL GROUP BY 1;
            CHECKPOINT;
            """,
        )
        for table in ("sales_orders", "marketing_events", "support_lines", "orders_per_contact"):
            rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    total = time.perf_counter() - started
    return {"total": total, "steps": steps, "step_peaks": sampler.phase_peaks, "peak_tree": sampler.peak, "rows": rows}


def _csv_groups_sql(table: str, folder: Path) -> str:
    """CREATE TABLE over every CSV in ``folder``: one read_csv per header, unioned by column name."""
    import csv

    groups: dict[tuple[str, ...], list[str]] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            header = tuple(next(csv.reader(handle), []))
        groups.setdefault(header, []).append(str(path))

    def quote(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    scans = []
    for header, files in groups.items():
        columns = "{" + ", ".join(f"{quote(c)}: 'VARCHAR'" for c in header) + "}"
        scans.append(
            f"SELECT * FROM read_csv([{', '.join(quote(f) for f in files)}], header = true, auto_detect = false, "
            f"delim = ',', quote = '\"', columns = {columns}, ignore_errors = true, filename = true)"
        )
    return f"CREATE TABLE {table} AS " + " UNION ALL BY NAME ".join(scans)


def build_pass() -> dict:
    """``run_build`` as ``crm build`` runs it (settings from the environment), timing each step."""
    from crm.settings import load_settings
    from pipelines.build import run_build

    settings = load_settings()
    events: list[tuple[float, str, str]] = []
    with TreeSampler() as sampler:

        def on_step(step: str, status: str) -> None:
            events.append((time.perf_counter(), step, status))
            (sampler.begin if status == "STEP_START" else sampler.end)(step)

        started = time.perf_counter()
        outcome = run_build(settings, on_step=on_step)
        finished = time.perf_counter()
    read = {}
    if settings.warehouse_path.exists():
        import duckdb

        # What this run read, per entity: the nightly must read only the new day (and the day before it).
        try:
            with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
                read = dict(
                    con.execute(
                        "SELECT entity, sum(rows_read)::BIGINT FROM ops.ingest_batches WHERE run_id = ? GROUP BY 1 "
                        "ORDER BY 1",
                        [outcome.run_id],
                    ).fetchall()
                )
        except duckdb.Error as exc:
            read = {"error": str(exc)[:200]}
    sizes = (
        {"warehouse_mib": round(settings.warehouse_path.stat().st_size / 2**20)}
        if settings.warehouse_path.exists()
        else {}
    )
    pointer = settings.data_dir / "snapshots" / "CURRENT.json"
    if pointer.exists():
        snapshot = pointer.parent / json.loads(pointer.read_text())["path"]
        sizes["snapshot_mib"] = round(snapshot.stat().st_size / 2**20)
    starts = {s: t for t, s, e in events if e == "STEP_START"}
    steps = {s: t - starts.get(s, t) for t, s, e in events if e != "STEP_START"}
    first = min(starts.values(), default=finished)
    last = max((t for t, _, _ in events), default=finished)
    return {
        "success": outcome.success,
        "failures": outcome.failures + outcome.failed_checks,
        "total": finished - started,
        "planning": first - started,
        "after_last_step": finished - last,
        "steps": steps,
        "step_peaks": sampler.phase_peaks,
        "peak_tree": sampler.peak,
        "rows_read": read,
        "sizes": sizes,
    }


def _stage(name: str, workdir: Path, out: Path) -> None:
    result = bare_pass(workdir / "sources", workdir / "bare" / "bare.duckdb") if name == "bare" else build_pass()
    result["maxrss_mib"] = _maxrss_mib()
    out.write_text(json.dumps(result))


# --- the driver ----------------------------------------------------------------------------------


def _load() -> str:
    """``uptime``'s load average (1, 5, 15 minutes)."""
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def _say(*parts: object) -> None:
    """Progress goes to stderr, so ``--json`` prints nothing but the JSON on stdout."""
    print(*parts, file=sys.stderr, flush=True)


def _run(stage: str, workdir: Path, env: dict[str, str]) -> dict:
    out = workdir / f"{stage}.result.json"
    out.unlink(missing_ok=True)
    load_before = _load()
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, str(workdir), str(out)], env=env, cwd=ROOT, stdout=sys.stderr
    )
    wall = time.perf_counter() - t
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"{stage} failed (exit {done.returncode})")
    result = json.loads(out.read_text())
    result.update(process_wall=wall, load_before=load_before, load_after=_load())
    if result.get("success") is False:
        _say(f"  {stage}: the build FAILED: {result['failures']}")
    _say(f"  {stage}: {result['total']:.1f} s (process {wall:.1f} s), load {load_before} -> {result['load_after']}")
    return result


def _generate(workdir: Path, customers: int, days: int) -> dict:
    from simulator import SimulationConfig, generate

    full = workdir / "full"
    marker = workdir / "full.json"
    wanted = {"customers": customers, "seed": SEED, "start": START.isoformat(), "days": days}
    if full.exists() and marker.exists() and json.loads(marker.read_text()).get("config") == wanted:
        _say(f"generate: reusing {full}")
        return json.loads(marker.read_text())
    load_before, t = _load(), time.perf_counter()
    report = generate(
        SimulationConfig(
            customers=customers, seed=SEED, start=START, days=days, out=full, truth_out=workdir / "ground_truth"
        )
    )
    info = {
        "config": wanted,
        "wall_s": round(time.perf_counter() - t, 1),
        "load": [load_before, _load()],
        "row_counts": report["row_counts"],
    }
    marker.write_text(json.dumps(info))
    _say(f"generate: {info['wall_s']} s, load {info['load']}")
    return info


def _median_steps(runs: list[dict]) -> list[tuple[str, float, float]]:
    names = list(dict.fromkeys(name for run in runs for name in run["steps"]))
    rows = []
    for name in names:
        wall = statistics.median(run["steps"].get(name, 0.0) for run in runs)
        peak = max(run["step_peaks"].get(name, 0) for run in runs) / 2**20
        rows.append((name, wall, peak))
    return rows


def _summary(runs: list[dict]) -> dict:
    steps = _median_steps(runs)
    out = {
        "total_s": round(statistics.median(r["total"] for r in runs), 2),
        "totals_s": [round(r["total"], 2) for r in runs],
        "peak_tree_mib": round(max(r["peak_tree"] for r in runs) / 2**20),
        "maxrss_mib": round(max(r["maxrss_mib"] for r in runs)),
        "load": [[r["load_before"], r["load_after"]] for r in runs],
        "steps": [{"step": n, "wall_s": round(w, 2), "peak_mib": round(p)} for n, w, p in steps],
    }
    if "planning" in runs[0]:
        out["planning_s"] = round(statistics.median(r["planning"] for r in runs), 2)
        out["after_last_step_s"] = round(statistics.median(r["after_last_step"] for r in runs), 2)
        out["success"] = all(r["success"] for r in runs)
        out["rows_read"] = runs[-1].get("rows_read", {})
        out["sizes"] = runs[-1].get("sizes", {})
    return out


def _print_table(title: str, summary: dict) -> None:
    print(f"\n{title}: {summary['total_s']:.1f} s (runs {summary['totals_s']}), peak {summary['peak_tree_mib']} MiB")
    print(f"  load (1/5/15 min) before -> after: {summary['load']}")
    print(f"  {'step':44s} {'wall s':>8s} {'peak MiB':>9s}")
    if "planning_s" in summary:
        print(f"  {'(planning: call to the first step)':44s} {summary['planning_s']:8.2f}")
    for row in sorted(summary["steps"], key=lambda r: -r["wall_s"]):
        print(f"  {row['step']:44s} {row['wall_s']:8.2f} {row['peak_mib']:9d}")
    if "after_last_step_s" in summary:
        print(f"  {'(after the last step to return)':44s} {summary['after_last_step_s']:8.2f}")
    if summary.get("rows_read"):
        print(f"  rows read: {summary['rows_read']}")
    if summary.get("sizes"):
        sizes = summary["sizes"]
        share = f" ({sizes['snapshot_mib'] / sizes['warehouse_mib']:.0%} of the warehouse)" if len(sizes) == 2 else ""
        print(f"  sizes (MiB): {sizes}{share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crm-bench-build"))
    parser.add_argument("--days", type=int, default=DAYS, help="Days of history from 2024-01-01 (default 730).")
    parser.add_argument("--repeats", type=int, default=1, help="Runs of the three passes; medians are reported.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON instead of tables.")
    parser.add_argument("--stage", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        _stage(args.stage[0], Path(args.stage[1]), Path(args.stage[2]))
        return
    from simulator.new_day import append_days, hold_back

    customers = SCALES[args.scale]
    workdir = (args.workdir / args.scale).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    generated = _generate(workdir, customers, args.days)
    last_day = date.fromordinal(START.toordinal() + args.days - 1)
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "CRM_CONFIG": str(ROOT / "config" / "sources.demo.yml"),
        "CRM_SOURCES_DIR": str(workdir / "sources"),
        "CRM_DATA_DIR": str(workdir / "data"),
        "CRM_GROUND_TRUTH_DIR": str(workdir / "ground_truth"),
    }
    for name in ("CRM_WAREHOUSE_PATH", "CRM_HISTORY_START", "CRM_SALES_DB_URL"):
        env.pop(name, None)
    bare, full, nightly, moved = [], [], [], {}
    for repeat in range(args.repeats):
        _say(f"repeat {repeat + 1}/{args.repeats}: sources without {last_day}")
        held = hold_back(workdir / "full", workdir / "sources", last_day)
        shutil.rmtree(workdir / "data", ignore_errors=True)
        bare.append(_run("bare", workdir, env))
        full.append(_run("build", workdir, env))
        appended = append_days(workdir / "full", workdir / "sources", last_day)
        moved = {
            "day": last_day.isoformat(),
            "sql_rows_new": appended.sql_rows,
            "sql_rows_updated": appended.sql_updated,
            "files": appended.files,
            "pages": appended.pages,
        }
        assert appended.files == held.files and appended.pages == held.pages
        nightly.append(_run("build", workdir, env))
    result = {
        "scale": args.scale,
        "customers": customers,
        "days": args.days,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "generate": generated,
        "new_day": moved,
        "bare": _summary(bare),
        "full": _summary(full),
        "nightly": _summary(nightly),
    }
    result["full_ratio"] = round(result["full"]["total_s"] / result["bare"]["total_s"], 2)
    result["nightly_ratio"] = round(result["nightly"]["total_s"] / result["bare"]["total_s"], 2)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"build_{args.scale}.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name in ("bare", "full", "nightly"):
        _print_table(name, result[name])
    print(f"\nfull_ratio = {result['full_ratio']}  nightly_ratio = {result['nightly_ratio']}")


if __name__ == "__main__":
    main()
