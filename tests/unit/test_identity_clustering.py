"""Clustering with steward constraints, stable ids across runs, pairwise evaluation."""

import duckdb
import numpy as np
import polars as pl

from crm.identity.clustering import (
    PRIORITY_DETERMINISTIC,
    PRIORITY_PROBABILISTIC,
    PRIORITY_STEWARD,
    cluster_records,
)
from crm.identity.evaluation import pairwise_metrics
from crm.identity.rules import deterministic_edges
from crm.identity.stable_ids import assign_stable_ids


def _groups(labels) -> set[frozenset[int]]:
    out: dict[int, set[int]] = {}
    for i, lab in enumerate(labels):
        out.setdefault(int(lab), set()).add(i)
    return {frozenset(v) for v in out.values()}


def test_connected_components_without_constraints():
    res = cluster_records(5, np.array([0, 1]), np.array([1, 2]), np.array([1, 1]))
    assert _groups(res.labels) == {frozenset({0, 1, 2}), frozenset({3}), frozenset({4})}
    # labels are dense and ordered by each cluster's smallest record
    assert res.labels.tolist() == [0, 0, 0, 1, 2]


def test_steward_split_breaks_the_weakest_path():
    # 0-1 deterministic, 1-2 probabilistic 0.95, 2-3 deterministic; steward: 0 and 3 are different people
    src, dst = np.array([0, 1, 2]), np.array([1, 2, 3])
    pri = np.array([PRIORITY_DETERMINISTIC, PRIORITY_PROBABILISTIC, PRIORITY_DETERMINISTIC])
    res = cluster_records(4, src, dst, pri, np.array([1.0, 0.95, 1.0]), cannot_link=[(0, 3)])
    assert _groups(res.labels) == {frozenset({0, 1}), frozenset({2, 3})}
    assert res.skipped_edges == [(1, 2, PRIORITY_PROBABILISTIC)]


def test_steward_merge_wins_over_nothing_but_not_over_a_split():
    src, dst = np.array([0, 2]), np.array([1, 3])
    pri = np.array([PRIORITY_STEWARD, PRIORITY_STEWARD])
    res = cluster_records(4, src, dst, pri, cannot_link=[(2, 3)])
    assert _groups(res.labels) == {frozenset({0, 1}), frozenset({2}), frozenset({3})}
    assert res.skipped_edges == [(2, 3, PRIORITY_STEWARD)]


def test_deterministic_phone_rule_does_not_merge_colleagues_on_a_switchboard():
    records = pl.DataFrame(
        {
            "record_id": [0, 1, 2, 3],
            "email": ["a@x.com", "b@x.com", None, "info@x.com"],
            "email_match": ["a@x.com", "b@x.com", None, None],
            "phone_e164": ["+441134960000", "+441134960000", "+447700900123", None],
            "last_name_key": ["wu", "park", "stone", "stone"],
        }
    )
    edges = deterministic_edges(records)
    assert edges.height == 0  # different surnames on one phone; a role mailbox is no proof


def test_deterministic_email_and_phone_links():
    records = pl.DataFrame(
        {
            "record_id": [0, 1, 2, 3],
            "email": ["ann@x.com", "ann@x.com", None, None],
            "email_match": ["ann@x.com", "ann@x.com", None, None],
            "phone_e164": [None, "+447700900123", "+447700900123", None],
            "last_name_key": ["lee", "lee", None, None],
        }
    )
    edges = deterministic_edges(records)
    assert {(a, b, r) for a, b, r in edges.iter_rows()} == {(0, 1, "email"), (1, 2, "phone")}


def test_stable_ids_first_run_then_new_record_then_merge_and_split():
    first = pl.DataFrame({"record_key": ["a", "b", "c"], "cluster": [0, 0, 1]})
    r1 = assign_stable_ids(first, pl.DataFrame(schema={"record_key": pl.Utf8, "customer_id": pl.Utf8}), 1)
    ids1 = dict(zip(first["record_key"], first.join(r1.assignments, on="cluster")["customer_id"], strict=True))
    assert ids1 == {"a": "C000000001", "b": "C000000001", "c": "C000000002"}
    assert r1.next_seq == 3 and r1.changes.height == 0

    # a new record joins customer 1, another arrives alone: ids unchanged, one new id
    second = pl.DataFrame({"record_key": ["a", "b", "c", "d", "e"], "cluster": [0, 0, 1, 0, 2]})
    prev = pl.DataFrame({"record_key": list(ids1), "customer_id": list(ids1.values())})
    r2 = assign_stable_ids(second, prev, r1.next_seq)
    ids2 = dict(
        zip(
            second["record_key"],
            second.join(r2.assignments, on="cluster", maintain_order="left")["customer_id"],
            strict=True,
        )
    )
    assert ids2 == {"a": "C000000001", "b": "C000000001", "c": "C000000002", "d": "C000000001", "e": "C000000003"}
    assert r2.changes.height == 0

    # c joins customer 1 (merge: C2 retired into C1); b leaves customer 1 (split into a new id)
    third = pl.DataFrame({"record_key": ["a", "b", "c", "d", "e"], "cluster": [0, 1, 0, 0, 2]})
    prev = pl.DataFrame({"record_key": list(ids2), "customer_id": list(ids2.values())})
    r3 = assign_stable_ids(third, prev, r2.next_seq)
    ids3 = dict(
        zip(
            third["record_key"],
            third.join(r3.assignments, on="cluster", maintain_order="left")["customer_id"],
            strict=True,
        )
    )
    assert ids3["a"] == ids3["c"] == ids3["d"] == "C000000001"
    assert ids3["e"] == "C000000003"
    assert ids3["b"] == "C000000004"
    changes = {(t, c, r, n) for t, c, r, n in r3.changes.iter_rows()}
    assert changes == {("merge", "C000000002", "C000000001", 1), ("split", "C000000001", "C000000004", 1)}


def test_stable_ids_rerun_on_same_input_changes_nothing():
    cur = pl.DataFrame({"record_key": ["a", "b", "c"], "cluster": [1, 1, 0]})
    prev = pl.DataFrame({"record_key": ["a", "b", "c"], "customer_id": ["C000000007", "C000000007", "C000000009"]})
    r = assign_stable_ids(cur, prev, 10)
    assert set(r.assignments["customer_id"]) == {"C000000007", "C000000009"}
    assert r.changes.height == 0 and r.next_seq == 10


def test_pairwise_metrics_counts_pairs():
    con = duckdb.connect()
    found = "select * from (values ('s','1','A'),('s','2','A'),('s','3','A'),('s','4','B')) t(source, source_key, customer_id)"
    truth = "select * from (values ('s','1','p'),('s','2','p'),('s','3','q'),('s','4','q')) t(source, source_key, person_id)"
    m = pairwise_metrics(con, found, truth)
    # found pairs: 12 13 23 -> 3; true pairs: 12 34 -> 2; both: 12 -> 1
    assert (m.found_pairs, m.true_pairs, m.true_positive_pairs) == (3, 2, 1)
    assert abs(m.precision - 1 / 3) < 1e-9 and abs(m.recall - 0.5) < 1e-9
    assert (m.true_customers, m.found_customers) == (2, 2)
