"""What a long history costs: Dagster's planning, an empty source table, and ingestion, at 1, 5 and 30 years.

The same 18 months of orders (one CSV, YYYYMMDD dates) are built with ``history_start`` 1, 5 and 30
years before their last day; the other eleven entities have no source (empty tables). Measured
through `crm build`'s own path (``pipelines.build.run_build``, the ingest group, a fresh warehouse
and Dagster instance on disk each run), the median of ``--repeats`` runs per length:

* planning: from the call to the first step's start (definitions, job, plan, run record);
* empty table: the step of an entity without a source (raw/marketing_events), start to success;
* ingest: the whole run of the ingest group.

    .venv/bin/python benchmarks/bench_history_length.py [--repeats 3] [--orders 20000]

With daily partitions (the design before issue 10) the same planning grew with the days: 730 days
cost 203 s of planning at medium and 10,927 days did not finish in 30 minutes (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LAST_DAY = date(1998, 6, 30)


def write_orders(path: Path, orders: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 546, orders)
    first = LAST_DAY - timedelta(days=545)
    lines = ["customer,date,amount"] + [
        f"{c:05d},{first + timedelta(days=int(d)):%Y%m%d},{a:.2f}"
        for c, d, a in zip(rng.integers(1, orders // 3, orders), days, rng.gamma(2, 15, orders), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def one_run(workdir: Path, years: int) -> dict:
    import dagster as dg

    from crm.settings import load_settings
    from pipelines.build import prepare_dagster_home, run_build

    data = workdir / f"data-{years}"
    shutil.rmtree(data, ignore_errors=True)
    config = workdir / f"crm-{years}.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data),
                "history_start": (LAST_DAY - timedelta(days=365 * years)).isoformat(),
                "sources": {
                    "shop": {
                        "kind": "file_drop",
                        "path": str(workdir),
                        "entities": {
                            "sales_orders": {
                                "pattern": "orders.csv",
                                "single_file": True,
                                "date_column": "order_date",
                                "columns": {"customer_ref": "customer", "order_date": "date", "total_amount": "amount"},
                            }
                        },
                    }
                },
            }
        )
    )
    settings = load_settings(config)
    events: list[tuple[float, str, str]] = []
    started = time.monotonic()
    instance = dg.DagsterInstance.from_config(str(prepare_dagster_home(settings)))
    outcome = run_build(
        settings, instance=instance, groups=["ingest"], on_step=lambda s, e: events.append((time.monotonic(), s, e))
    )
    finished = time.monotonic()
    assert outcome.success, outcome.failures
    first_start = min(t for t, _, e in events if e == "STEP_START")
    step = [t for t, s, _ in events if s == "raw__marketing_events"]
    return {
        "planning_s": first_start - started,
        "empty_table_s": max(step) - min(step),
        "ingest_run_s": finished - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--years", default="1,5,30")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crm-history-"))
    write_orders(workdir / "orders.csv", args.orders)
    results = {}
    for years in [int(y) for y in args.years.split(",")]:
        runs = []
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            run = one_run(workdir, years)
            run["load"] = load
            runs.append(run)
            print(f"{years:>2} years: {json.dumps({k: round(v, 2) for k, v in run.items()})}", flush=True)
        results[years] = {
            k: statistics.median(r[k] for r in runs) for k in ("planning_s", "empty_table_s", "ingest_run_s")
        }
        results[years]["load_min_max"] = (min(r["load"] for r in runs), max(r["load"] for r in runs))
        print(f"{years:>2} years, median of {args.repeats}: {results[years]}", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "history_length.json").write_text(json.dumps({"orders": args.orders, "results": results}, indent=2))


if __name__ == "__main__":
    main()
