"""Snapshot publishing: the served tables only (now) against a copy of the whole warehouse (before).

    .venv/bin/python benchmarks/bench_snapshot.py --warehouse /path/to/crm.duckdb --repeats 3

The warehouse is only read: it is copied into a temporary folder first. "served" is
``publish_snapshot`` (the tables in SERVED_TABLES copied into a new file, bookkeeping, indexes,
search table, pointer swap); "whole copy" is what publishing did before issue 13 (CHECKPOINT, copy
the file, then the same bookkeeping, indexes and search table). Medians of ``--repeats`` runs, and
each snapshot's size against the warehouse's.
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

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _whole_copy(warehouse: Path, target: Path) -> None:
    from crm.serving.snapshots import Snapshot, _add_serving_structures, _row_counts, _write_ops_tables

    with duckdb.connect(str(warehouse)) as con:
        con.execute("CHECKPOINT")
    shutil.copyfile(warehouse, target)
    with duckdb.connect(str(target)) as con:
        snapshot = Snapshot("bench", target, __import__("datetime").datetime.now(), "bench", _row_counts(con))
        _write_ops_tables(con, snapshot, [], [])
        _add_serving_structures(con)
        con.execute("CHECKPOINT")


def main() -> None:
    from crm.serving.snapshots import publish_snapshot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    try:
        warehouse = work / "crm.duckdb"
        shutil.copyfile(args.warehouse, warehouse)
        size = warehouse.stat().st_size
        served, whole, served_size, whole_size = [], [], 0, 0
        for run in range(args.repeats):
            started = time.perf_counter()
            snapshot = publish_snapshot(warehouse, work / "data", run_id=f"bench{run:04d}")
            served.append(time.perf_counter() - started)
            served_size = snapshot.path.stat().st_size
            target = work / f"whole-{run}.duckdb"
            started = time.perf_counter()
            _whole_copy(warehouse, target)
            whole.append(time.perf_counter() - started)
            whole_size = target.stat().st_size
            target.unlink()
        result = {
            "warehouse_bytes": size,
            "served_snapshot_bytes": served_size,
            "whole_copy_bytes": whole_size,
            "served_share_of_warehouse": round(served_size / size, 3),
            "whole_copy_share_of_warehouse": round(whole_size / size, 3),
            "served_publish_s": {"min": min(served), "median": statistics.median(served), "max": max(served)},
            "whole_copy_publish_s": {"min": min(whole), "median": statistics.median(whole), "max": max(whole)},
        }
        print(json.dumps(result, indent=2, default=lambda v: round(v, 3)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
