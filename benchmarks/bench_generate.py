"""Time a generation and measure the peak memory of the whole process tree (the sales worker included).

    .venv/bin/python benchmarks/bench_generate.py --customers 100000 --out /tmp/bench/sources

Prints when each stage starts, the total wall time, user+system CPU time, and the peak resident
memory of this process plus its children, sampled from /proc (Linux). Not used by the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from datetime import date
from pathlib import Path

from simulator import SimulationConfig, generate


def _tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except OSError:
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
        todo += children.get(pid, [])
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = SimulationConfig(customers=args.customers, seed=args.seed, start=args.start, days=args.days, out=args.out)

    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(os.getpid()))
            stop.wait(0.2)

    threading.Thread(target=sample, daemon=True).start()
    t0, last = time.time(), [None]

    def progress(stage: str, done: int, total: int) -> None:
        if stage != last[0]:
            me = resource.getrusage(resource.RUSAGE_SELF)
            cpu = me.ru_utime + me.ru_stime
            print(f"{time.time() - t0:8.1f}s  (main process cpu {cpu:7.1f}s)  {stage}", flush=True)
            last[0] = stage

    report = generate(cfg, progress=progress)
    wall = time.time() - t0
    stop.set()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    load = os.getloadavg()[0]
    print(f"wall {wall:.1f}s  cpu {cpu:.1f}s  peak tree RSS {peak[0] / 2**30:.2f} GiB  (load avg {load:.1f})")
    print(json.dumps(report["row_counts"], indent=1))


if __name__ == "__main__":
    main()
