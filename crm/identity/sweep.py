"""Choose the match threshold on evidence: precision/recall against the ground truth per threshold.

Reads the warehouse read-only (staging views + steward overrides), takes the company's stored model
(or trains one in memory), scores the candidate pairs once, then clusters and evaluates at each
threshold. Row ``threshold = None`` is the deterministic rules alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from crm.identity.evaluation import pairwise_metrics, truth_sql
from crm.identity.matching import load_model, score_pairs, train_model
from crm.identity.resolution import IdentitySettings, load_overrides, prepare_matching, resolve
from crm.warehouse import connect as connect_warehouse


def threshold_sweep(
    warehouse: str | Path,
    ground_truth_dir: str | Path,
    thresholds: list[float],
    settings: IdentitySettings | None = None,
) -> list[dict]:
    from crm.identity.records import load_source_records

    settings = settings or IdentitySettings()
    con = connect_warehouse(warehouse, read_only=True)
    try:
        matching = prepare_matching(load_source_records(con), settings)
        overrides = load_overrides(con)
        model = load_model(settings.model_dir) or train_model(matching.profiles, seed=settings.seed)
        matching.model = model
        matching.prior = model.prior(matching.profiles.height)
        all_edges = score_pairs(model, matching.profiles)
        rows = []
        for threshold in [None, *sorted(thresholds)]:
            matching.edges = all_edges if threshold is not None else all_edges.clear()
            run = dataclasses.replace(
                settings, probabilistic=threshold is not None, threshold=threshold or settings.threshold
            )
            res = resolve(matching, overrides, run)
            found = res.records.select("source", "source_key", pl.col("cluster").cast(pl.Utf8).alias("customer_id"))
            con.register("_sweep_found", found.to_arrow())
            m = pairwise_metrics(con, "select * from _sweep_found", truth_sql(ground_truth_dir))
            con.unregister("_sweep_found")
            rows.append({"threshold": threshold, "probabilistic_edges": res.prob_edges.height, **m.as_dict()})
        return rows
    finally:
        con.close()


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) >= 3:
        ts = [float(t) for t in (sys.argv[3] if len(sys.argv) > 3 else "0.5,0.9,0.95,0.99").split(",")]
        print(json.dumps(threshold_sweep(sys.argv[1], sys.argv[2], ts), indent=2))
    else:
        print("usage: python -m crm.identity.sweep WAREHOUSE GROUND_TRUTH [THRESHOLDS]")
        sys.exit(2)
