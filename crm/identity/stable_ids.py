"""Stable customer ids: a customer keeps its id from run to run as new records arrive.

Each run clusters all records afresh; this module maps the new clusters onto the ids the records
had in the previous run. A cluster inherits the old id it shares the most records with (each old
id goes to at most one cluster, each cluster takes at most one old id; ties go to the older id).
Everything else gets a new id. The moves are described as changes:

* ``merge``: records of an old id joined a cluster that kept another id; the old id is retired;
* ``split``: records left an old id that a cluster still holds, into a cluster with another id;
* ``retire``: an old id none of whose records exist any more.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

ID_PREFIX = "C"
ID_DIGITS = 9


def format_customer_id(seq: int) -> str:
    return f"{ID_PREFIX}{seq:0{ID_DIGITS}d}"


def parse_customer_seq(customer_id: str) -> int:
    return int(customer_id[len(ID_PREFIX) :])


@dataclass
class StableIdResult:
    assignments: pl.DataFrame  # cluster, customer_id, is_new
    changes: pl.DataFrame  # change_type, customer_id, related_customer_id, records_moved
    next_seq: int


_CHANGE_SCHEMA = {
    "change_type": pl.Utf8,
    "customer_id": pl.Utf8,
    "related_customer_id": pl.Utf8,
    "records_moved": pl.Int64,
}


def assign_stable_ids(current: pl.DataFrame, previous: pl.DataFrame, next_seq: int) -> StableIdResult:
    """Give every cluster of ``current`` (record_key, cluster) a customer id.

    ``previous`` holds (record_key, customer_id) from the last run (empty on the first run).
    ``next_seq`` is the number the next new id takes; the result carries the updated counter.
    New ids are handed out in order of each cluster's smallest record key, so a rerun on the same
    input gives the same ids.
    """
    current = current.select("record_key", pl.col("cluster").cast(pl.Int64))
    previous = previous.select("record_key", pl.col("customer_id").cast(pl.Utf8))
    overlap = (
        current.join(previous, on="record_key", how="inner").group_by("cluster", "customer_id").agg(pl.len().alias("n"))
    )
    # 1:1 cases (the vast majority) are settled without a loop
    ids_per_cluster = overlap.group_by("cluster").agg(pl.len().alias("ids_in_cluster"))
    clusters_per_id = overlap.group_by("customer_id").agg(pl.len().alias("clusters_of_id"))
    overlap = overlap.join(ids_per_cluster, on="cluster").join(clusters_per_id, on="customer_id")
    one_to_one = (pl.col("ids_in_cluster") == 1) & (pl.col("clusters_of_id") == 1)
    # an id held by one cluster alone, in a cluster holding no other id, stays with it; the contested
    # ones (merges, splits) go greedily to the largest overlaps: few, so walked in Python
    contested = overlap.filter(~one_to_one).sort(["n", "customer_id", "cluster"], descending=[True, False, False])
    assigned: dict[int, str] = {}
    used: set[str] = set()
    for cluster, customer_id in zip(contested["cluster"].to_list(), contested["customer_id"].to_list(), strict=True):
        if cluster in assigned or customer_id in used:
            continue
        assigned[cluster] = customer_id
        used.add(customer_id)
    inherited = pl.concat(
        [
            overlap.filter(one_to_one).select("cluster", "customer_id"),
            pl.DataFrame(
                {"cluster": list(assigned), "customer_id": list(assigned.values())},
                schema={"cluster": pl.Int64, "customer_id": pl.Utf8},
            ),
        ]
    )
    # new ids in order of each cluster's smallest record key
    assignments = (
        current.group_by("cluster")
        .agg(pl.col("record_key").min().alias("first_key"))
        .sort("first_key")
        .join(inherited, on="cluster", how="left", maintain_order="left")
        .with_columns(pl.col("customer_id").is_null().alias("is_new"))
    )
    seq = next_seq - 1 + pl.col("is_new").cast(pl.Int64).cum_sum()
    assignments = assignments.select(
        "cluster",
        pl.when(pl.col("is_new"))
        .then(pl.lit(ID_PREFIX) + seq.cast(pl.Utf8).str.zfill(ID_DIGITS))
        .otherwise(pl.col("customer_id"))
        .alias("customer_id"),
        "is_new",
    )
    next_seq += int(assignments["is_new"].sum())

    moves = (
        overlap.select("cluster", "customer_id", "n")
        .join(assignments.select("cluster", pl.col("customer_id").alias("new_id")), on="cluster")
        .filter(pl.col("customer_id") != pl.col("new_id"))
    )
    changes = moves.select(
        pl.when(pl.col("customer_id").is_in(assignments["customer_id"].implode()))
        .then(pl.lit("split"))
        .otherwise(pl.lit("merge"))
        .alias("change_type"),
        pl.col("customer_id"),
        pl.col("new_id").alias("related_customer_id"),
        pl.col("n").cast(pl.Int64).alias("records_moved"),
    )
    vanished = sorted(
        previous.select(pl.col("customer_id").unique())
        .join(overlap.select("customer_id"), on="customer_id", how="anti")["customer_id"]
        .to_list()
    )
    if vanished:
        changes = pl.concat(
            [
                changes,
                pl.DataFrame(
                    {
                        "change_type": ["retire"] * len(vanished),
                        "customer_id": vanished,
                        "related_customer_id": [None] * len(vanished),
                        "records_moved": [0] * len(vanished),
                    },
                    schema=_CHANGE_SCHEMA,
                ),
            ]
        )
    changes = changes.cast(_CHANGE_SCHEMA).sort(["change_type", "customer_id", "related_customer_id"])
    return StableIdResult(assignments=assignments, changes=changes, next_seq=next_seq)
