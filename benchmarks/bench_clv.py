"""CLV at scale: simulate N customers from known BG/NBD + Gamma-Gamma parameters, then time the RFM
summary, the fits and the scoring (median of R repeats) and print peak memory.

    .venv/bin/python benchmarks/bench_clv.py                  # 1,000,000 customers, 3 repeats
    .venv/bin/python benchmarks/bench_clv.py --customers 100000 --repeats 5

Times are wall-clock medians; peak memory is the process's max RSS (resource.getrusage), so it
includes the simulated data and the transaction log built for the summary step.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models_ml.clv import (  # noqa: E402
    BetaGeoModel,
    BetaGeoParams,
    GammaGammaModel,
    GammaGammaParams,
    compress_rfm,
    customer_lifetime_value,
    simulate_bgnbd,
    simulate_gamma_gamma,
    summary_from_transactions,
)

TRUE_BG = BetaGeoParams(r=0.5, alpha=60.0, a=0.6, b=2.0)  # time unit: days
TRUE_GG = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
END = date(2025, 12, 31)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(label: str, fn: Callable[[], Any], repeats: int) -> Any:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    runs = ", ".join(f"{t:.3f}" for t in times)
    print(f"{label:<44} median {statistics.median(times):7.3f} s   (runs: {runs})")
    return result


def transaction_log(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """A transaction log consistent with (x, t_x, T) in whole days: first purchase, x-1 purchases in
    between, the last one at t_x. Same-day collisions simply merge in the summary (x may shrink)."""
    n = x.size
    xi = x.astype(np.int64)
    first_day = (np.datetime64(END) - T.astype("timedelta64[D]")).astype("datetime64[D]")
    cust = np.repeat(np.arange(n), xi + 1)
    start = np.repeat(np.cumsum(xi + 1) - (xi + 1), xi + 1)
    pos = np.arange(cust.size) - start  # 0 = first purchase, xi = last
    last = np.repeat(xi, xi + 1)
    recency = np.repeat(t_x, xi + 1)
    offset = np.where(pos == last, recency, rng.uniform(0, 1, cust.size) * recency)
    offset = np.where(pos == 0, 0.0, offset)
    days = np.repeat(first_day, xi + 1) + np.floor(offset).astype("timedelta64[D]")
    spend = rng.gamma(6.25, 1 / 4.0, cust.size)
    return pl.DataFrame({"customer_id": cust, "order_date": days, "amount": spend})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n, R = args.customers, args.repeats

    t0 = time.perf_counter()
    T = np.floor(rng.uniform(1, 3 * 365, n))
    x, t_x, T = simulate_bgnbd(TRUE_BG, T, rng)
    t_x = np.round(t_x)  # whole days, as summary_from_transactions produces with freq_days=1
    zbar = simulate_gamma_gamma(TRUE_GG, x, rng)
    print(
        f"simulated {n:,} customers in {time.perf_counter() - t0:.2f} s "
        f"({int((x > 0).sum()):,} repeat buyers, {int(x.sum()):,} repeat purchases)"
    )

    tx = transaction_log(x, t_x, T, rng)
    print(f"transaction log: {tx.height:,} rows; peak RSS so far {peak_rss_mb():,.0f} MB")
    timed(
        "summary_from_transactions",
        lambda log=tx: summary_from_transactions(log, "customer_id", "order_date", "amount", observation_end=END),
        R,
    )
    del tx

    bg = timed("BG/NBD fit (all rows)", lambda: BetaGeoModel().fit(x, t_x, T), R)
    compressed = timed("compress_rfm (identical rows -> weights)", lambda: compress_rfm(x, t_x, T), R)
    xu, tu, Tu, w, _ = compressed
    bg_w = timed(f"BG/NBD fit (weighted, {xu.size:,} distinct rows)", lambda: BetaGeoModel().fit(xu, tu, Tu, w), R)
    gg = timed("Gamma-Gamma fit", lambda: GammaGammaModel().fit(x, zbar), R)

    bg_model, gg_model = BetaGeoModel(bg), GammaGammaModel(gg)

    def score() -> np.ndarray:
        bg_model.probability_alive(x, t_x, T)
        bg_model.expected_purchases(365.0, x, t_x, T)
        return customer_lifetime_value(bg_model, gg_model, x, t_x, T, zbar, horizon_days=365)

    value = timed("scoring (P(alive), E[Y(365)], 12-month CLV)", score, R)
    timed(
        "12-month CLV, monthly discounting at 10%/yr",
        lambda: customer_lifetime_value(
            bg_model, gg_model, x, t_x, T, zbar, horizon_days=365, discount_rate_annual=0.10
        ),
        R,
    )

    print()
    print("BG/NBD   true   ", {k: round(getattr(TRUE_BG, k), 4) for k in ("r", "alpha", "a", "b")})
    print(
        "BG/NBD   fitted ",
        {k: round(getattr(bg, k), 4) for k in ("r", "alpha", "a", "b")},
        f"LL={bg.log_likelihood:,.2f}",
    )
    print(
        "BG/NBD   weighted",
        {k: round(getattr(bg_w, k), 4) for k in ("r", "alpha", "a", "b")},
        f"LL={bg_w.log_likelihood:,.2f}",
    )
    print("Gamma-Gamma true  ", {k: round(getattr(TRUE_GG, k), 4) for k in ("p", "q", "gamma")})
    print("Gamma-Gamma fitted", {k: round(getattr(gg, k), 4) for k in ("p", "q", "gamma")})
    print(f"CLV: mean {value.mean():.2f}, median {np.median(value):.2f}, min {value.min():.2f}")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
