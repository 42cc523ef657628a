"""Ingest one entity into a fresh warehouse and report its wall time and peak RSS (issue 14).

Each entity runs in a process of its own (its peak RSS is that process's ``ru_maxrss``, taken with
``os.wait4``: ingestion starts no subprocess). The entities it references (order lines check
product ids) are loaded first in another process, not timed. The load average is printed beside
every figure, since the machine is shared: compare runs by ratios taken in one session.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ingest.py --sources /tmp/bench-14/medium/full \\
        --workdir /tmp/ingest-bench marketing_events sales_orders support_tickets sales_order_lines
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(entities: list[str], end: str | None) -> None:
    """In the child: ingest the entities (settings from the environment), up to the day ``end`` when
    given (a shorter window, to see that memory does not grow with it); print each report's counts."""
    sys.path.insert(0, str(ROOT))
    from datetime import date

    from crm.ingest.readers import Window
    from crm.ingest.service import ingest_entity
    from crm.settings import load_settings
    from crm.warehouse import connect

    settings = load_settings()
    with connect(settings.warehouse_path) as con:
        for name in entities:
            window = Window(None, date.fromisoformat(end)) if end else None
            report = ingest_entity(con, settings, name, window, run_id="bench")
            print(
                json.dumps(
                    {
                        "entity": name,
                        "rows_read": report.rows_read,
                        "rows_loaded": report.rows_loaded,
                        "rows_quarantined": report.rows_quarantined,
                        "checks": {c.name: c.passed for c in report.checks},
                    }
                ),
                flush=True,
            )


def _run(entities: list[str], env: dict, end: str | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one child that ingests ``entities``."""
    started = time.perf_counter()
    extra = ["--end", end] if end else []
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *extra, *entities], env=env, stdout=subprocess.PIPE, text=True
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"ingesting {entities} failed ({process.returncode})")
    return wall, usage.ru_maxrss // 1024, out


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entities", nargs="*")
    parser.add_argument("--sources", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ingest-bench"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--end", help="read only up to this day (YYYY-MM-DD): a shorter window")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _load(args.entities, args.end)
        return
    from crm.ingest.entities import ENTITIES

    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "CRM_CONFIG": str(ROOT / "config" / "sources.demo.yml"),
        "CRM_SOURCES_DIR": str(args.sources.resolve()),
    }
    for name in ("CRM_WAREHOUSE_PATH", "CRM_HISTORY_START", "CRM_SALES_DB_URL"):
        env.pop(name, None)
    results = []
    for entity in args.entities:
        for repeat in range(args.repeats):
            data = args.workdir / "data"
            shutil.rmtree(data, ignore_errors=True)
            env["CRM_DATA_DIR"] = str(data)
            upstream = list(ENTITIES[entity].upstream)
            if upstream:
                _run(upstream, env)
            before = _load_average()
            wall, peak, out = _run([entity], env, args.end)
            after = _load_average()
            counts = json.loads(out.strip().splitlines()[-1])
            row = {"entity": entity, "end": args.end, "repeat": repeat + 1, "wall_s": round(wall, 1), "peak_mib": peak}
            row |= {"load_before": before, "load_after": after, **counts}
            results.append(row)
            print(
                f"{entity:<22} run {repeat + 1}: {wall:6.1f} s  {peak:6,} MiB  load {before} -> {after}  "
                f"read {counts['rows_read']:,} loaded {counts['rows_loaded']:,} "
                f"quarantined {counts['rows_quarantined']:,}",
                flush=True,
            )
    shutil.rmtree(args.workdir / "data", ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
