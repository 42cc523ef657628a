"""Identity resolution on a built warehouse, each stage's wall time and peak RSS (issue 14).

    CRM_CONFIG=config/sources.demo.yml CRM_SOURCES_DIR=/tmp/bench-14/large/sources \\
    CRM_DATA_DIR=/tmp/bench-14/large/data OPENBLAS_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/bench_identity_stages.py /tmp/bench-14/large/data/warehouse/crm.duckdb

Runs ``run_identity_resolution`` in this process, as the build's identity step does in its child
process (crm/identity/isolated.py, whose allocator settings this process takes), on the given
warehouse (it writes the identity tables: run it on a benchmark's warehouse or a copy). With no new
source records this is a nightly run with nothing to do, which shows what a nightly pays whatever
changed. ``--reresolve`` normalises and scores every record again (the model kept); ``--retrain``
also trains the model again, as a first build does (it replaces the model in the data folder).

The stages run one after the other, so the RSS of this process, sampled every 0.25 s from /proc,
is attributed to the stage whose time window holds the sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402 (after the path: run as a script)

from crm.identity.isolated import POLARS_ALLOCATOR_CONF, child_environment, identity_memory_limit  # noqa: E402
from crm.identity.resolution import run_identity_resolution, settings_for  # noqa: E402
from crm.settings import load_settings  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
# In the order run_identity_resolution runs them (edges, clustering, explain: inside resolve()).
STAGES = (
    "normalise",  # reading the records, comparing them with the kept ones, normalising the changed
    "guard_profiles",
    "train",
    "score",
    "edges",
    "clustering",
    "explain",
    "stable_ids",
    "write",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--reresolve", action="store_true")
    parser.add_argument("--retrain", action="store_true", help="Train the model again (as a first build does).")
    args = parser.parse_args()
    if POLARS_ALLOCATOR_CONF[0] not in os.environ:
        # polars reads its allocator's settings when it loads: start again as the identity process starts
        os.execve(sys.executable, [sys.executable, *sys.argv], child_environment())
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            with open("/proc/self/statm") as handle:
                samples.append((time.perf_counter(), int(handle.read().split()[1]) * PAGE))

    threading.Thread(target=sample, daemon=True).start()
    settings = load_settings()
    with open("/proc/loadavg") as handle:
        load_before = " ".join(handle.read().split()[:3])
    con = duckdb.connect(str(args.warehouse))
    # as the build's identity step sets it (crm/identity/isolated.py)
    con.execute(f"SET memory_limit = '{identity_memory_limit(settings.warehouse_memory_limit)}'")
    started = time.perf_counter()
    summary = run_identity_resolution(
        con, settings_for(settings, reresolve=args.reresolve or None, retrain=args.retrain or None)
    )
    stop.set()
    con.close()
    with open("/proc/loadavg") as handle:
        load_after = " ".join(handle.read().split()[:3])
    print(
        f"mode {summary.mode}: {summary.records:,} records, {summary.profiles:,} profiles, "
        f"{summary.new_profiles_scored:,} scored, {summary.seconds:.1f} s; load {load_before} -> {load_after}"
    )
    at = started
    for name in STAGES:
        took = summary.stage_seconds.get(name, 0.0)
        peak = max((rss for ts, rss in samples if at <= ts <= at + took), default=0)
        print(f"  {name:16s} {took:8.1f} s {peak / 2**20:9.0f} MiB")
        at += took
    print(f"  peak {max(rss for _, rss in samples) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
