"""The whole build on a simulated company, checked against the simulator's ground truth.

Uses the session's ``built_company`` (2,000 persons, a year, seed 7: built once through the same
path as `crm build`) and compares identity resolution with its record_map.parquet. Measured on
the two-year small company (docs/benchmarks.md): precision 1.0000, recall 0.9647; the bounds here
leave a margin: precision >= 0.99, recall >= 0.95, found customers within 10% of true persons.
"""

import duckdb

from crm.identity.evaluation import evaluate_warehouse


def test_build_with_warehouse_succeeds_and_every_check_passes(built_company):
    outcome = built_company.outcome
    assert outcome.success, outcome.failures
    assert outcome.failed_checks == []


def test_customer_360_has_one_row_per_found_customer(built_company):
    con = duckdb.connect(str(built_company.warehouse), read_only=True)
    try:
        rows, distinct = con.execute("select count(*), count(distinct customer_id) from marts.customer_360").fetchall()[
            0
        ]
        found = con.execute("select count(distinct customer_id) from identity.records").fetchall()[0][0]
    finally:
        con.close()
    assert rows == distinct == found


def test_found_customers_match_true_persons_within_measured_error(built_company):
    m = evaluate_warehouse(built_company.warehouse, built_company.ground_truth)
    assert m.records_unmatched_in_truth == 0
    assert m.precision >= 0.99, m
    assert m.recall >= 0.95, m
    assert abs(m.found_customers - m.true_customers) / m.true_customers <= 0.10, m
