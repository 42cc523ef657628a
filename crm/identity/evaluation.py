"""Pairwise evaluation of identity resolution against the simulator's ground truth.

Records are (source, source_key) pairs; the ground truth's ``record_map.parquet`` maps them to a
``person_id`` and ``identity.records`` maps them to a found ``customer_id``. Over the records present
in both, a pair of records is a true match when they share a person and a found match when they
share a customer: precision = TP / found pairs, recall = TP / true pairs (pairs are counted with
n·(n-1)/2 per group, never enumerated).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from crm.warehouse import connect as connect_warehouse


@dataclass
class IdentityMetrics:
    records_evaluated: int
    records_unmatched_in_truth: int
    true_customers: int
    found_customers: int
    true_pairs: int
    found_pairs: int
    true_positive_pairs: int
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict:
        return asdict(self)


def _pairs(col: str) -> str:
    return f"coalesce(sum({col} * ({col} - 1) / 2), 0)"


def pairwise_metrics(con: duckdb.DuckDBPyConnection, found_sql: str, truth_sql: str) -> IdentityMetrics:
    """Metrics from two queries: found (source, source_key, customer_id), truth (source, source_key, person_id)."""
    con.execute(
        f"""
        create or replace temp table _eval_joined as
        select f.customer_id, t.person_id
        from ({found_sql}) f
        inner join ({truth_sql}) t
            on f.source = t.source and f.source_key = t.source_key
        """
    )
    unmatched = con.execute(
        f"""
        select count(*) from ({found_sql}) f
        where not exists (select 1 from ({truth_sql}) t where t.source = f.source and t.source_key = f.source_key)
        """
    ).fetchall()[0][0]
    row = con.execute(
        f"""
        with
        by_customer as (select customer_id, count(*)::hugeint n from _eval_joined group by 1),
        by_person as (select person_id, count(*)::hugeint n from _eval_joined group by 1),
        by_both as (select customer_id, person_id, count(*)::hugeint n from _eval_joined group by 1, 2)
        select
            (select count(*) from _eval_joined),
            (select count(*) from by_person),
            (select count(*) from by_customer),
            (select {_pairs("n")} from by_person),
            (select {_pairs("n")} from by_customer),
            (select {_pairs("n")} from by_both)
        """
    ).fetchall()[0]
    n, true_customers, found_customers, true_pairs, found_pairs, tp = (int(v) for v in row)
    precision = tp / found_pairs if found_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return IdentityMetrics(
        records_evaluated=n,
        records_unmatched_in_truth=int(unmatched),
        true_customers=true_customers,
        found_customers=found_customers,
        true_pairs=true_pairs,
        found_pairs=found_pairs,
        true_positive_pairs=tp,
        precision=precision,
        recall=recall,
        f1=f1,
    )


def truth_sql(ground_truth_dir: str | Path) -> str:
    path = (Path(ground_truth_dir) / "record_map.parquet").as_posix()
    # The simulator writes a marketing contact's key as the address was written (case, spaces):
    # compare it the way identity.records keys it, lower-cased and trimmed.
    return (
        "select cast(source as varchar) as source, "
        "case when source = 'marketing_contacts' then lower(trim(cast(source_key as varchar))) "
        "else cast(source_key as varchar) end as source_key, "
        f"cast(person_id as varchar) as person_id from read_parquet('{path}')"
    )


def evaluate_warehouse(warehouse_path: str | Path, ground_truth_dir: str | Path) -> IdentityMetrics:
    """Compare identity.records in the warehouse with the ground truth's record_map.parquet."""
    con = connect_warehouse(warehouse_path, read_only=True)
    try:
        return pairwise_metrics(
            con,
            "select source, source_key, customer_id from identity.records",
            truth_sql(ground_truth_dir),
        )
    finally:
        con.close()
