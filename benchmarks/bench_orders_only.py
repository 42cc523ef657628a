"""An orders-only shop of CDNOW's size end to end: ~70k orders of ~24k customers, 1997-01 .. 1998-06.

Writes a CDNOW-shaped orders file (customer, date as YYYYMMDD, items, amount; every customer's
first purchase in the first quarter of 1997, repeat purchases until mid-1998) and README's
orders-only config next to it, then prints the command that times a first build from scratch:

    .venv/bin/python benchmarks/bench_orders_only.py --out /tmp/crm-orders-only
    farm-bench -n 3 --warmup 0 --timeout 1800 -- sh -c 'cd /tmp/crm-orders-only && rm -rf data && \\
        OPENBLAS_NUM_THREADS=1 /path/to/.venv/bin/crm build --config crm.yml'

The target (issue 10) is a first build in at most 2 minutes on the 2-core machine; quote the median
with the machine's load (``uptime``) before and after.
"""

from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIRST, LAST = date(1997, 1, 1), date(1998, 6, 30)


def write_orders(path: Path, customers: int = 23_570, seed: int = 1997) -> int:
    """CDNOW's shape: 23,570 customers acquired in Q1 1997, 2.96 orders each on average (heavy-tailed)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 90, customers)
    # Repeat purchases: negative binomial (a gamma mixture of Poisson rates), mean ~1.96.
    repeats = rng.negative_binomial(0.35, 0.35 / (0.35 + 1.96), customers)
    span = (LAST - FIRST).days
    rows = []
    for customer, (day0, n) in enumerate(zip(first, repeats, strict=True), start=1):
        days = np.concatenate([[day0], np.sort(rng.integers(day0, span + 1, n))])
        for d in days:
            rows.append((customer, int(d)))
    amounts = rng.gamma(2.0, 17.0, len(rows))
    items = 1 + np.minimum(rng.poisson(1.5, len(rows)), 9)
    lines = ["customer,date,cds,amount"] + [
        f"{c:05d},{FIRST + timedelta(days=d):%Y%m%d},{q},{a:.2f}"
        for (c, d), q, a in zip(rows, items, amounts, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return len(rows)


def readme_config() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own sources") :]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/crm-orders-only"))
    args = parser.parse_args()
    (args.out / "exports").mkdir(parents=True, exist_ok=True)
    orders = write_orders(args.out / "exports" / "orders.csv")
    (args.out / "crm.yml").write_text(readme_config())
    crm = ROOT / ".venv" / "bin" / "crm"
    print(f"{orders:,} orders of 23,570 customers in {args.out / 'exports' / 'orders.csv'}")
    print(
        f"farm-bench -n 3 --warmup 0 --timeout 1800 -- sh -c 'cd {args.out} && rm -rf data && "
        f"OPENBLAS_NUM_THREADS=1 {crm} build --config crm.yml'"
    )


if __name__ == "__main__":
    main()
