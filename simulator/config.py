"""Run configuration, the simulated clock and seeded random streams.

Time inside the simulator is an integer number of seconds since ``start`` 00:00:00 (UTC), kept in
int32/int64 arrays; it becomes text only when a source file is written. The visible history is
``[0, days * DAY)``; the process keeps running for ``horizon_days`` more so the true future is known.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

DAY = 86_400
HOUR = 3_600

# Persons are simulated in fixed-size chunks so memory stays flat at any scale. The chunk size is a
# constant (never derived from the machine) because the random streams are seeded per chunk: a
# different chunking would give a different, equally valid company.
PERSON_CHUNK = 100_000


@dataclass(frozen=True)
class SimulationConfig:
    customers: int = 2_000
    seed: int = 7
    start: date = date(2024, 1, 1)
    days: int = 730
    out: Path = Path("data/sources")
    truth_out: Path | None = None
    horizon_days: int = 365
    # Which systems the company exports and how it is shaped (simulator/profiles.py).
    profile: str = "full"

    def __post_init__(self) -> None:
        from simulator.profiles import profile as known_profile

        known_profile(self.profile)
        if self.customers < 10:
            raise ValueError("customers must be at least 10")
        if self.days < 30:
            raise ValueError("days must be at least 30 (the mess needs room: schema changes, late events)")
        if self.horizon_days < 1:
            raise ValueError("horizon_days must be positive")
        if (self.days + self.horizon_days) * DAY >= 2**31:
            # per-send times are int32 seconds to halve the memory of tens of millions of sends
            raise ValueError("days + horizon_days must stay under 24,855 (about 68 years)")
        object.__setattr__(self, "out", Path(self.out))
        if self.truth_out is not None:
            object.__setattr__(self, "truth_out", Path(self.truth_out))

    @property
    def truth_dir(self) -> Path:
        return self.truth_out if self.truth_out is not None else self.out.parent / "ground_truth"

    @property
    def end_date(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @property
    def visible_end_s(self) -> int:
        """First second after the visible history (midnight after the end date)."""
        return self.days * DAY

    @property
    def horizon_end_s(self) -> int:
        return (self.days + self.horizon_days) * DAY

    @property
    def start_epoch_s(self) -> int:
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())


def rng_for(seed: int, *path: str | int) -> np.random.Generator:
    """An independent random stream per (seed, stage, chunk...).

    Each stage draws from its own stream, so changing how much one stage draws never shifts the
    numbers another stage sees. crc32 (not ``hash``) keeps stage names stable across processes.
    """
    words = [seed & 0xFFFFFFFF, seed >> 32]
    for part in path:
        words.append(zlib.crc32(part.encode()) if isinstance(part, str) else int(part))
    return np.random.default_rng(np.random.SeedSequence(words))


def chunks(n: int, size: int = PERSON_CHUNK) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def ts_expr(col: str | pl.Expr, cfg: SimulationConfig) -> pl.Expr:
    """Simulated seconds -> 'YYYY-MM-DD HH:MM:SS' text (null stays null)."""
    e = pl.col(col) if isinstance(col, str) else col
    return ((e.cast(pl.Int64) + cfg.start_epoch_s) * 1000).cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%d %H:%M:%S")


_TIME_OF_DAY: pl.Series | None = None


def ts_text(seconds, cfg: SimulationConfig) -> pl.Series:
    """Like :func:`ts_expr` for non-negative times, but by table lookup: day text + time-of-day text.

    Two gathers and a concatenation are cheaper than formatting each timestamp, which matters
    for the tens of millions of event and order timestamps at large scale.
    """
    global _TIME_OF_DAY
    if _TIME_OF_DAY is None:
        _TIME_OF_DAY = pl.select(
            (pl.int_range(DAY, dtype=pl.Int64) * 1000).cast(pl.Datetime("ms")).dt.strftime(" %H:%M:%S")
        ).to_series()
    n_days = cfg.days + cfg.horizon_days + 1
    days = pl.select(
        (pl.lit(cfg.start) + pl.duration(days=pl.int_range(n_days, dtype=pl.Int64))).dt.strftime("%Y-%m-%d")
    ).to_series()
    sec = pl.Series(seconds).cast(pl.Int64)
    return pl.select(days.gather(sec // DAY) + _TIME_OF_DAY.gather(sec % DAY)).to_series()


def dt_expr(col: str | pl.Expr, cfg: SimulationConfig) -> pl.Expr:
    """Simulated seconds -> a real (naive, UTC) datetime column for the ground truth."""
    e = pl.col(col) if isinstance(col, str) else col
    return ((e.cast(pl.Int64) + cfg.start_epoch_s) * 1000).cast(pl.Datetime("ms"))


def day_name(cfg: SimulationConfig, day_index: int) -> str:
    return (cfg.start + timedelta(days=int(day_index))).isoformat()
