"""Snapshot publishing: size and time of ``publish_snapshot`` on a copy of a built warehouse.

    .venv/bin/python benchmarks/bench_snapshot.py --warehouse /path/to/crm.duckdb --repeats 3
    .venv/bin/python benchmarks/bench_snapshot.py --warehouse /path/to/crm.duckdb --tree /path/to/old/checkout

The warehouse is only read: it is copied into a temporary folder, and each run publishes from the
copy into a temporary data folder. ``--tree`` imports ``crm`` from another checkout (e.g. the
commit before a change to publishing) so both are timed the same way on the same file. Prints the
warehouse and snapshot sizes and min / median / max seconds of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose crm package publishes")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    from crm.serving import snapshots

    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    try:
        warehouse = work / "crm.duckdb"
        shutil.copyfile(args.warehouse, warehouse)
        seconds, size = [], 0
        for run in range(args.repeats):
            started = time.perf_counter()
            published = snapshots.publish_snapshot(warehouse, work / "data", run_id=f"bench{run:04d}")
            seconds.append(time.perf_counter() - started)
            size = published.path.stat().st_size
        result = {
            "code": snapshots.__file__,
            "warehouse_bytes": warehouse.stat().st_size,
            "snapshot_bytes": size,
            "snapshot_share_of_warehouse": round(size / warehouse.stat().st_size, 3),
            "publish_s": {
                "min": round(min(seconds), 2),
                "median": round(statistics.median(seconds), 2),
                "max": round(max(seconds), 2),
            },
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
