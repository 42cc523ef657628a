"""Generation and ingestion at a chosen scale: per-stage wall time and peak memory.

    .venv/bin/python benchmarks/bench_pipeline.py --scale small
    .venv/bin/python benchmarks/bench_pipeline.py --scale large --workdir /tmp/crm-bench --repeats 1

Scales are those of the design notes' performance budget (customers: small 2,000; medium 100,000;
large 1,000,000; two years of history). Each stage runs in its own process so its peak memory
(max RSS from wait4) is its own:

- ``generate``: the simulated company (``crm generate``);
- ``ingest``: every source entity over the whole history through the ingestion service, one window
  (the work of the single-run backfill, without Dagster's bookkeeping);
- ``build``: the same load through Dagster in-process (``crm build``), which also records one
  materialization per asset and day in a fresh Dagster instance.

Results print as a table and are written to benchmarks/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCALES = {"small": 2_000, "medium": 100_000, "large": 1_000_000}
START = date(2024, 1, 1)
DAYS = 730


def _run_stage(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one stage in a child process; (wall seconds, peak RSS in MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--stage", *args], env=env, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {args[0]} failed")
    return elapsed, usage.ru_maxrss / 1024


def _stage(name: str, workdir: Path, customers: int) -> None:
    sources, warehouse = workdir / "sources", workdir / "warehouse" / "crm.duckdb"
    if name == "generate":
        from simulator import SimulationConfig, generate

        generate(
            SimulationConfig(
                customers=customers, seed=1, start=START, days=DAYS, out=sources, truth_out=workdir / "ground_truth"
            )
        )
        return
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    warehouse.unlink(missing_ok=True)
    from crm.settings import load_settings

    settings = load_settings()
    end = START + timedelta(days=DAYS - 1)
    if name == "ingest":
        import duckdb

        from crm.ingest.entities import ENTITIES
        from crm.ingest.readers import Window
        from crm.ingest.service import ingest_entity

        with duckdb.connect(str(warehouse), config={"memory_limit": "4GB"}) as con:
            for entity in ENTITIES:
                t = time.perf_counter()
                report = ingest_entity(con, settings, entity, Window(START, end))
                print(f"    {entity:22s} {report.rows_read:>12,} rows {time.perf_counter() - t:7.1f}s", flush=True)
                assert report.reconciled, entity
    elif name == "build":
        from pipelines.build import run_build

        shutil.rmtree(workdir / "data" / "dagster", ignore_errors=True)
        outcome = run_build(settings)
        if not outcome.success:
            raise SystemExit("; ".join(outcome.failures + outcome.failed_checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crm-bench"))
    parser.add_argument("--stages", default="generate,ingest,build")
    parser.add_argument("--repeats", type=int, default=1, help="Repeats of each stage; the median is reported.")
    parser.add_argument("--stage", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = args.workdir / args.scale
    if args.stage:
        _stage(args.stage[0], Path(args.stage[1]), int(args.stage[2]))
        return
    customers = SCALES[args.scale]
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CRM_CONFIG": str(ROOT / "config" / "sources.demo.yml"),
        "CRM_SOURCES_DIR": str(workdir / "sources"),
        "CRM_WAREHOUSE_PATH": str(workdir / "warehouse" / "crm.duckdb"),
        "CRM_HISTORY_START": START.isoformat(),
        "CRM_DATA_DIR": str(workdir / "data"),
    }
    results = []
    for stage in args.stages.split(","):
        runs = [_run_stage([stage, str(workdir), str(customers)], env) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        results.append({"stage": stage, "wall_s": round(wall, 1), "peak_rss_mib": round(peak), "repeats": args.repeats})
        print(f"{stage:10s} {wall:8.1f} s   peak {peak:8.0f} MiB", flush=True)
    counts = {}
    truth = workdir / "ground_truth" / "mess_report.json"
    if truth.exists():
        counts = json.loads(truth.read_text()).get("row_counts", {})
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"pipeline_{args.scale}.json").write_text(
        json.dumps(
            {
                "scale": args.scale,
                "customers": customers,
                "days": DAYS,
                "stages": results,
                "source_rows": counts,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
