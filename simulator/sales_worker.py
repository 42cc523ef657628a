"""Entry point of the sales worker process (see :class:`simulator.sales.SalesJob`)."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import polars as pl

from simulator import mess
from simulator.config import SimulationConfig
from simulator.sales import ENTITY_COUNT_KEY, table_batches, write_sqlite


def run(work: Path, db_path: Path) -> None:
    c = json.loads((work / "config.json").read_text())
    cfg = SimulationConfig(
        customers=c["customers"],
        seed=c["seed"],
        start=date.fromisoformat(c["start"]),
        days=c["days"],
        horizon_days=c["horizon_days"],
        out=Path(c["out"]),
        profile=c.get("profile", "full"),
    )
    read = lambda name: pl.read_ipc(work / f"{name}.arrow")  # noqa: E731
    orders_in = {k: v.to_numpy() for k, v in read("orders_in").to_dict().items()}
    log = mess.MalformedLog()
    batches = table_batches(cfg, read("persons"), read("accounts"), read("reps"), read("contacts"), orders_in, log)
    counts = write_sqlite(db_path, batches)
    log.frame().write_parquet(work / "malformed.parquet")
    (work / "counts.json").write_text(json.dumps({ENTITY_COUNT_KEY[k]: v for k, v in counts.items()}))


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
