"""Choose the Splink threshold on evidence: precision/recall against the ground truth per threshold.

Reads the warehouse read-only (staging views + steward overrides), scores candidate pairs once at
the lowest threshold, then clusters and evaluates at each threshold. Row ``threshold = None`` is
the deterministic rules alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from crm.identity.clustering import PRIORITY_DETERMINISTIC, cluster_records
from crm.identity.evaluation import pairwise_metrics, truth_sql
from crm.identity.matching import MatchSettings
from crm.identity.resolution import (
    IdentitySettings,
    deterministic_edges,
    load_overrides,
    load_source_records,
    prepare_records,
    probabilistic_edges,
    resolve,
)
from crm.warehouse import connect as connect_warehouse


def threshold_sweep(warehouse: str | Path, ground_truth_dir: str | Path, thresholds: list[float]) -> list[dict]:
    con = connect_warehouse(warehouse, read_only=True)
    try:
        records = prepare_records(load_source_records(con))
        overrides = load_overrides(con)
        det = deterministic_edges(records)
        det_labels = cluster_records(
            records.height, det["a"].to_numpy(), det["b"].to_numpy(), np.full(det.height, PRIORITY_DETERMINISTIC)
        ).labels
        all_pairs = probabilistic_edges(records, det_labels, MatchSettings(), threshold=min(thresholds))
        rows = []
        for threshold in [None, *sorted(thresholds)]:
            settings = IdentitySettings(
                probabilistic=threshold is not None, match=MatchSettings(threshold=threshold or 1.0)
            )
            edges = all_pairs if threshold is not None else all_pairs.clear()
            res = resolve(records, overrides, settings, prob_edges=edges)
            found = res.records.select("source", "source_key", pl.col("cluster").cast(pl.Utf8).alias("customer_id"))
            con.register("_sweep_found", found.to_arrow())
            m = pairwise_metrics(con, "select * from _sweep_found", truth_sql(ground_truth_dir))
            con.unregister("_sweep_found")
            rows.append(
                {
                    "threshold": threshold,
                    "probabilistic_edges": res.prob_edges.height,
                    **{k: v for k, v in m.as_dict().items()},
                }
            )
        return rows
    finally:
        con.close()


def train_from_warehouse(warehouse: str | Path, out_path: str | Path) -> dict:
    """Train the Splink model on a warehouse's records (staging views must exist) and save it.

    The shipped splink_model.json was trained this way on the simulated medium company:
    ``python -m crm.identity.sweep train <warehouse.duckdb> <out.json>``.
    """
    from crm.identity.matching import train_model
    from crm.identity.resolution import build_profiles

    con = connect_warehouse(warehouse, read_only=True)
    try:
        records = prepare_records(load_source_records(con))
    finally:
        con.close()
    det = deterministic_edges(records)
    det_labels = cluster_records(
        records.height, det["a"].to_numpy(), det["b"].to_numpy(), np.full(det.height, PRIORITY_DETERMINISTIC)
    ).labels
    profiles, _ = build_profiles(records, det_labels)
    return train_model(profiles, Path(out_path))


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "train":
        train_from_warehouse(sys.argv[2], sys.argv[3])
        print(f"model written to {sys.argv[3]}")
    elif len(sys.argv) >= 4 and sys.argv[1] == "sweep":
        ts = [float(t) for t in (sys.argv[4] if len(sys.argv) > 4 else "0.5,0.9,0.99").split(",")]
        print(json.dumps(threshold_sweep(sys.argv[2], sys.argv[3], ts), indent=2))
    else:
        print("usage: python -m crm.identity.sweep train|sweep WAREHOUSE OUT|TRUTH [THRESHOLDS]")
        sys.exit(2)
