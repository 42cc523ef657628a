"""The app's data layer and segments on the published snapshot: numbers equal independent SQL."""

from __future__ import annotations

import io
from datetime import timedelta

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from app import data
from app.format import change, count, money, share
from crm.serving.segments import (
    Condition,
    SegmentDefinition,
    SegmentError,
    mask_pii,
    where_clause,
)


def read_xlsx(payload: bytes) -> pl.DataFrame:
    """The first sheet, read by a real spreadsheet reader (calamine, through fastexcel)."""
    return pl.read_excel(io.BytesIO(payload), engine="calamine")


@pytest.fixture(scope="module")
def reader(published):
    from crm.security.roles import Viewer

    opened = data.SnapshotReader(published.snapshot, Viewer.for_role("test-admin", "admin"))
    yield opened
    opened.close()


def test_overview_kpis_equal_sql_on_the_orders(reader, published):
    kpis = {k.label: k for k in data.overview_kpis(reader)}
    as_of = data.as_of_date(reader)
    with published.connect() as con:
        revenue, active, orders = con.execute(
            "SELECT sum(revenue_amount), count(DISTINCT customer_id) FILTER (WHERE is_revenue), "
            "count(*) FILTER (WHERE is_revenue) FROM marts.orders WHERE order_day > ? AND order_day <= ?",
            [as_of - timedelta(days=90), as_of],
        ).fetchall()[0]
        previous = con.execute(
            "SELECT sum(revenue_amount) FROM marts.orders WHERE order_day > ? AND order_day <= ?",
            [as_of - timedelta(days=180), as_of - timedelta(days=90)],
        ).fetchall()[0][0]
        high, clv = con.execute(
            "SELECT avg((churn_band = 'high')::INT), sum(clv_12m) FROM marts.customer_scores"
        ).fetchall()[0]
    assert kpis["Revenue"].current == pytest.approx(revenue)
    assert kpis["Revenue"].previous == pytest.approx(previous)
    assert kpis["Active customers"].current == active > 0
    assert kpis["Average order value"].current == pytest.approx(revenue / orders)
    assert kpis["Share at high churn risk"].current == pytest.approx(high)
    assert kpis["Expected 12-month value"].current == pytest.approx(clv)


def test_search_finds_a_customer_by_id_email_phone_and_part_of_the_name(reader, published):
    with published.connect() as con:
        customer_id, full_name, email, phone = con.execute(
            "SELECT customer_id, full_name, email, phone FROM marts.customer_360 "
            "WHERE email IS NOT NULL AND phone IS NOT NULL AND length(full_name) > 5 ORDER BY customer_id LIMIT 1"
        ).fetchall()[0]
    digits = "".join(ch for ch in phone if ch.isdigit())
    spaced_phone = " ".join(digits[i : i + 3] for i in range(0, len(digits), 3))
    for text in (customer_id, email.upper(), spaced_phone, full_name.split()[-1].lower()):
        found = data.search_customers(reader, text)
        assert customer_id in found["customer_id"].to_list(), text
    assert data.search_customers(reader, customer_id)["customer_id"][0] == customer_id
    assert data.search_customers(reader, "no such person zzzz").height == 0


def test_customer_card_has_provenance_scores_and_every_order_on_the_timeline(reader, published):
    with published.connect() as con:
        customer_id, orders = con.execute(
            "SELECT customer_id, count(*) FROM marts.orders WHERE customer_id IS NOT NULL "
            "GROUP BY ALL ORDER BY count(*) DESC, customer_id LIMIT 1"
        ).fetchall()[0]
    card = data.customer_card(reader, customer_id)
    assert card["customer_id"] == customer_id
    assert card["email_source"] is not None or card["email"] is None
    assert card["churn_band"] in ("low", "medium", "high") and card["loyalty_tier"] in (
        "Bronze",
        "Silver",
        "Gold",
        "Platinum",
    )
    timeline = data.customer_timeline(reader, customer_id, limit=10_000)
    assert timeline.filter(pl.col("kind") == "order").height == orders
    assert timeline["happened_at"].is_sorted(descending=True, nulls_last=True)
    assert data.customer_records(reader, customer_id).height >= 1
    assert data.customer_card(reader, "no-such-id") is None


def test_rfm_grid_and_migration_account_for_every_customer(reader, published):
    grid = data.rfm_grid(reader)
    with published.connect() as con:
        scored = con.execute("SELECT count(*) FROM marts.customer_rfm").fetchall()[0][0]
    assert grid["customers"].sum() == scored
    dates = data.rfm_snapshot_dates(reader)
    moves = data.segment_migration(reader, dates[-2], dates[-1])
    with published.connect() as con:
        at_end = con.execute(
            "SELECT count(*) FROM marts.customer_rfm_history WHERE snapshot_date = ?", [dates[-1]]
        ).fetchall()[0][0]
    assert moves.filter(pl.col("to_segment") != "(gone)")["customers"].sum() == at_end


def _segment_ids(con, where: str, params=()) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            f"SELECT c.customer_id FROM marts.customer_360 c LEFT JOIN marts.customer_scores s USING (customer_id) "
            f"WHERE {where}",
            list(params),
        ).fetchall()
    }


def test_filters_change_the_count_and_match_sql(reader, published):
    everyone, _ = data.segment_count(reader, SegmentDefinition(name="all"))
    at_risk = SegmentDefinition(
        name="at risk",
        conditions=[
            Condition(column="churn_band", op="in", value=["high"]),
            Condition(column="revenue_lifetime", op=">=", value=100),
        ],
    )
    matched, excluded = data.segment_count(reader, at_risk)
    with published.connect() as con:
        expected = _segment_ids(con, "s.churn_band = 'high' AND c.revenue_lifetime >= 100")
    assert 0 < matched == len(expected) < everyone
    assert excluded == 0
    rows = data.segment_rows(reader, at_risk).rows
    assert set(rows["customer_id"].to_pylist()) == expected


def test_an_email_export_holds_exactly_the_consenting_filtered_rows(reader, published):
    definition = SegmentDefinition(
        name="b2c email", channel="email", conditions=[Condition(column="segment", op="in", value=["B2C"])]
    )
    with published.connect() as con:
        filtered = _segment_ids(con, "c.segment = 'B2C'")
        sendable = _segment_ids(
            con, "c.segment = 'B2C' AND c.email_consent AND NOT c.is_unsubscribed AND c.email IS NOT NULL"
        )
    matched, excluded = data.segment_count(reader, definition)
    assert (matched, excluded) == (len(filtered), len(filtered) - len(sendable))
    assert excluded > 0, "the fixture company should have B2C customers without email consent"

    csv = pl.read_csv(io.BytesIO(data.export_bytes(reader, definition, "CSV", include_contacts=True)))
    assert set(csv["customer_id"].to_list()) == sendable and csv.height == len(sendable)
    assert csv["email_consent"].all()
    parquet = pq.read_table(io.BytesIO(data.export_bytes(reader, definition, "Parquet")))
    assert set(parquet["customer_id"].to_pylist()) == sendable
    assert all("***@" in e for e in parquet["email"].to_pylist() if e)
    excel = read_xlsx(data.export_bytes(reader, definition, "Excel", include_contacts=True))
    assert excel.columns == csv.columns
    assert set(excel["customer_id"].to_list()) == sendable and excel.height == len(sendable)
    assert excel["email"].to_list() == csv["email"].to_list()


def test_sms_export_leaves_out_customers_without_sms_consent(reader, published):
    definition = SegmentDefinition(name="sms", channel="sms")
    rows = data.segment_rows(reader, definition).rows
    with published.connect() as con:
        sendable = _segment_ids(con, "c.sms_consent AND c.phone IS NOT NULL")
    assert set(rows["customer_id"].to_pylist()) == sendable
    assert all(rows["sms_consent"].to_pylist())


def test_filters_reach_sql_only_as_parameters(reader):
    allowed = data.filterable_columns(reader)
    hostile = SegmentDefinition(
        name="x", conditions=[Condition(column="full_name", op="in", value=["x'); DROP TABLE marts.customer_360; --"])]
    )
    sql, params = where_clause(hostile, allowed)
    assert "DROP" not in sql and params == [["x'); DROP TABLE marts.customer_360; --"]]
    assert data.segment_count(reader, hostile) == (0, 0)
    with pytest.raises(SegmentError, match="unknown column 'customer_id; --'"):
        where_clause(
            SegmentDefinition(name="x", conditions=[Condition(column="customer_id; --", op="is_null")]), allowed
        )
    with pytest.raises(SegmentError, match="condition 1: between needs"):
        where_clause(
            SegmentDefinition(name="x", conditions=[Condition(column="clv_12m", op="between", value=5)]), allowed
        )


def test_the_allow_list_holds_customer_360_score_and_rfm_columns(reader):
    columns = data.filterable_columns(reader)
    for name in (
        "segment",
        "city",
        "owner_rep_name",
        "email_consent",
        "churn_band",
        "loyalty_tier",
        "clv_12m",
        "rfm_segment",
        "days_since_last_order",
    ):
        assert name in columns
    assert data.widget_kind(columns["churn_probability"]) == "number"
    assert data.widget_kind(columns["email_consent"]) == "boolean"
    assert data.widget_kind(columns["loyalty_tier"]) == "category"
    assert data.widget_kind(columns["last_order_at"]) == "date"


def test_mask_pii_hides_contact_details_but_keeps_them_recognisable():
    import pyarrow as pa

    masked = mask_pii(pa.table({"email": ["jane.doe@example.com", None], "phone": ["+447700900123", "12"]}))
    assert masked["email"].to_pylist() == ["j***@example.com", None]
    assert masked["phone"].to_pylist() == ["******0123", "12"]


def test_rep_book_is_ranked_and_matches_the_rep_actions_table(reader, published):
    with published.connect() as con:
        rep_id, actions = con.execute(
            "SELECT rep_id, count(*) FROM marts.rep_actions GROUP BY ALL ORDER BY 2 DESC, 1 LIMIT 1"
        ).fetchall()[0]
    book = data.rep_book(reader, rep_id)
    assert book.height == actions
    assert book["rank_in_book"].to_list() == sorted(book["rank_in_book"].to_list())


def test_data_health_reads_the_bookkeeping_published_with_the_snapshot(reader, built_company):
    checks = data.check_results(reader)
    assert checks.height > 0
    assert set(checks["severity"]) <= {"ERROR", "WARN"}
    assert not checks.filter(~pl.col("passed") & (pl.col("severity") == "ERROR")).height
    freshness = data.source_freshness(reader)
    assert freshness["reconciled"].all()
    assert str(freshness["last_partition"].max()) == built_company.last_day.isoformat()
    reasons = data.quarantine_reasons(reader)
    assert reasons["rows"].sum() == freshness["rows_in_quarantine"].sum()
    identity = data.identity_summary(reader)
    with duckdb.connect(str(reader.snapshot.path), read_only=True) as con:
        assert identity["records"].sum() == con.execute("SELECT count(*) FROM identity.records").fetchall()[0][0]


def test_numbers_are_formatted_for_people():
    assert money(1_234_567) == "£1.2M" and money(950.4) == "£950" and money(-12_300) == "-£12.3k"
    assert count(1234567) == "1,234,567" and count(None) == "–"
    assert share(0.1234) == "12.3%" and change(-0.05) == "-5.0%" and change(None) is None


def test_clv_histogram_counts_every_scored_customer_once(reader, published):
    histogram = data.clv_histogram(reader)
    with published.connect() as con:
        scored = con.execute("SELECT count(clv_12m) FROM marts.customer_scores").fetchall()[0][0]
    assert histogram["customers"].sum() == scored
    assert histogram.group_by("loyalty_tier").len()["len"].max() <= 40
