"""The app's data layer and segments on the published snapshot: numbers equal independent SQL."""

from __future__ import annotations

import io
import unicodedata
from datetime import date, timedelta

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
    assert kpis["Revenue"].current == pytest.approx(revenue)
    assert kpis["Revenue"].previous == pytest.approx(previous)
    assert kpis["Active customers"].current == active > 0
    assert kpis["Average order value"].current == pytest.approx(revenue / orders)
    # Every KPI says what it counts, over which days, and its denominator where it has one.
    assert all(k.definition for k in kpis.values())
    assert f"{orders:,} orders" in kpis["Average order value"].definition
    assert f"{as_of:%d %b %Y}" in kpis["Active customers"].definition


def test_risk_separates_customers_at_risk_from_those_already_lapsed(reader, published):
    """The issue's example: "share at high churn risk" counted of the scored (not of all customers) and
    mixed customers still buying with those long gone. The summary names both denominators."""
    risk = data.risk_summary(reader)
    with published.connect() as con:
        (horizon,) = con.execute(
            "SELECT horizon_days FROM ml.model_registry WHERE status = 'current' ORDER BY trained_at DESC LIMIT 1"
        ).fetchall()[0]
        customers, scored, high, at_risk, lapsed, clv = con.execute(
            "SELECT count(*), count(s.customer_id), count(*) FILTER (WHERE s.churn_band = 'high'), "
            "count(*) FILTER (WHERE s.churn_band = 'high' AND c.days_since_last_order <= ?), "
            "count(*) FILTER (WHERE s.customer_id IS NOT NULL AND c.days_since_last_order > ?), sum(s.clv_12m) "
            "FROM marts.customer_360 c LEFT JOIN marts.customer_scores s USING (customer_id)",
            [2 * horizon, 2 * horizon],
        ).fetchall()[0]
    assert (risk.customers, risk.scored, risk.high, risk.at_risk, risk.lapsed) == (
        customers,
        scored,
        high,
        at_risk,
        lapsed,
    )
    assert risk.lapsed_after_days == 2 * horizon and risk.clv_total == pytest.approx(clv)
    assert scored < customers and 0 < at_risk < high, "the company has unscored, lapsed and at-risk customers"


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
        assert customer_id in found.rows["customer_id"].to_list(), text
    assert data.search_customers(reader, customer_id).rows["customer_id"][0] == customer_id
    assert data.search_customers(reader, "no such person zzzz").total == 0


def _secondary_email(con) -> tuple[str, str]:
    """(customer, an email on one of their source records that is not the customer's shown email)."""
    return con.execute(
        "SELECT r.customer_id, r.email FROM identity.records r JOIN marts.customer_360 c USING (customer_id) "
        "WHERE r.email IS NOT NULL AND r.email <> coalesce(c.email, '') "
        "AND r.email NOT IN (SELECT email FROM marts.customer_360 WHERE email IS NOT NULL) "
        "ORDER BY r.customer_id LIMIT 1"
    ).fetchall()[0]


def _national_phone(warehouse) -> tuple[str, str]:
    """(customer, a phone as the sales system wrote it in national format: '07364 175306'). From the
    build warehouse: the snapshot serves no raw table (issue 13)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "SELECT r.customer_id, s.phone FROM raw.sales_contacts s "
            "JOIN identity.records r ON r.source = 'sales_contacts' AND r.source_key = CAST(s.contact_id AS VARCHAR) "
            "WHERE regexp_matches(s.phone, '^0[0-9]{3,4}[ -][0-9]') ORDER BY r.customer_id LIMIT 1"
        ).fetchall()[0]


def test_search_reaches_every_identifier_of_every_source_record(reader, published, built_company):
    """The issue's misses: a work email on a sales record (not the shown one), a phone as the sales system
    writes it, an accent-free or nickname spelling, a source system's id, the true number of matches."""
    with published.connect() as con:
        secondary_customer, secondary = _secondary_email(con)
        phone_customer, national = _national_phone(built_company.warehouse)
        # A record's id as identity resolution names it (source:system:key since issue 11).
        source_customer, record_key = con.execute(
            "SELECT customer_id, record_key FROM identity.records WHERE source = 'support_tickets' "
            "ORDER BY customer_id LIMIT 1"
        ).fetchall()[0]
        common = con.execute(
            "SELECT first_name, count(DISTINCT customer_id) FROM identity.records WHERE first_name IS NOT NULL "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchall()[0][0]
        accented = con.execute(
            "SELECT customer_id, full_name FROM marts.customer_360 WHERE full_name <> strip_accents(full_name) "
            "ORDER BY customer_id LIMIT 1"
        ).fetchall()
    assert secondary_customer in data.search_customers(reader, secondary).rows["customer_id"].to_list()
    assert phone_customer in data.search_customers(reader, national).rows["customer_id"].to_list(), national
    found = data.search_customers(reader, record_key)
    assert found.rows["customer_id"].to_list() == [source_customer]
    if accented:
        customer_id, name = accented[0]
        plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
        assert customer_id in data.search_customers(reader, plain.lower(), limit=200).rows["customer_id"].to_list()
    # The true count, with every page reachable.
    first = data.search_customers(reader, common, limit=25)
    assert first.total > 25 and first.rows.height == 25
    pages = [data.search_customers(reader, common, limit=25, offset=o).rows for o in range(0, first.total, 25)]
    ids = [i for page in pages for i in page["customer_id"].to_list()]
    assert len(ids) == len(set(ids)) == first.total


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
    timeline, sends = data.customer_timeline(reader, customer_id, limit=10_000)
    assert timeline.filter(pl.col("kind") == "Order").height == orders
    assert timeline["happened_at"].is_sorted(descending=True, nulls_last=True)
    # Sends are counted apart, not listed; campaigns appear by name.
    with published.connect() as con:
        sent, named = con.execute(
            "SELECT count(*) FILTER (WHERE event_type IN ('sent', 'delivered')), "
            "list(DISTINCT k.campaign_name) FILTER (WHERE event_type NOT IN ('sent', 'delivered')) "
            "FROM marts.marketing_events e LEFT JOIN marts.campaign_performance k USING (campaign_id) "
            "WHERE e.customer_id = ?",
            [customer_id],
        ).fetchall()[0]
    marketing = timeline.filter(pl.col("kind") == "Marketing")
    assert sends == sent and not marketing["what"].is_in(["sent", "delivered"]).any()
    assert {n for n in named if n} <= set(marketing["detail"].to_list())
    everything, _ = data.customer_timeline(reader, customer_id, limit=10_000, include_sends=True)
    assert everything.filter(pl.col("kind") == "Marketing").height == marketing.height + sent
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
    assert moves.filter(pl.col("to_segment") != data.GONE)["customers"].sum() == at_end


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
    freshness = data.source_freshness(reader, date.today())
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
    assert histogram.height <= 40 and histogram["is_top"].sum() == 1


def test_partial_months_are_flagged_in_every_monthly_and_cohort_series(reader, published):
    """The issue: on the 1st of a month the open month was drawn as a full one (active customers 533 -> 34)."""
    as_of = data.as_of_date(reader)
    open_month = as_of.replace(day=1)
    month_is_open = as_of.month == (as_of + timedelta(days=1)).month
    assert month_is_open, "the shared company ends mid-month (its last day is not a month end)"
    for series in (data.monthly_activity(reader), data.tickets_by_month(reader)):
        flagged = set(series.filter(pl.col("is_partial"))["month"].to_list())
        assert open_month in flagged
        full = series.filter(~pl.col("is_partial"))
        # A month not flagged is covered from its first to its last day.
        assert (full["covered_from"] == full["month"]).all()
        assert (full["covered_to"] == full["month"].dt.month_end()).all()
    cohorts = data.cohort_retention(reader)
    assert set(cohorts.filter(pl.col("is_partial"))["activity_month"].to_list()) == {open_month}


def test_source_freshness_is_judged_against_the_configs_expectations(reader, built_company):
    expectations = {e[1]: e for e in built_company.settings.freshness_expectations()}
    newest = data.source_freshness(reader, date.today())
    orders = newest.filter(pl.col("entity") == "sales_orders").row(0, named=True)
    warn, error = expectations["sales_orders"][2], expectations["sales_orders"][3]
    assert (orders["source"], orders["warn_after_days"], orders["error_after_days"]) == ("sales_db", warn, error)
    last = orders["last_partition"]

    def status(today):
        frame = data.source_freshness(reader, today)
        return dict(zip(frame["entity"], frame["status"], strict=True))

    assert status(last + timedelta(days=warn))["sales_orders"] == "ok"
    assert status(last + timedelta(days=warn + 1))["sales_orders"] == "warn"
    assert status(last + timedelta(days=error + 1))["sales_orders"] == "error"
    assert status(last)["sales_reps"] == "no expectation", "the demo config sets none for reps"


def test_quarantine_samples_point_at_the_source_row_with_its_reason(reader, published, built_company):
    from crm.ingest.ledger import GROUPED_REASON_SQL

    samples = data.quarantine_samples(reader)
    reasons = data.quarantine_reasons(reader)
    assert samples.height > 0
    assert samples.group_by("entity", "reason").len()["len"].max() <= 3
    # Every grouped reason has an example, and every example is a real quarantined row. The snapshot
    # carries the pointers, never the quarantined records (issue 13): those are in the build warehouse,
    # and a reason about a person's field carries the grouped reason, without the person's value.
    assert samples["entity"].n_unique() == reasons["entity"].n_unique()
    with published.connect() as con:
        assert not [
            t
            for (t,) in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()
            if t == "quarantine"
        ]
    with duckdb.connect(str(built_company.warehouse), read_only=True) as con:
        for row in samples.head(10).iter_rows(named=True):
            found = con.execute(
                f"SELECT count(*) FROM quarantine.{row['entity']} WHERE _source_location = ? "
                f"AND (_reason = ? OR {GROUPED_REASON_SQL} = ?)",
                [row["location"], row["reason"], row["reason"]],
            ).fetchall()[0][0]
            assert found >= 1, row
    assert samples["location"].str.contains(r":\d+$|:").all()


def test_the_publishing_run_reads_as_published_not_started(reader):
    runs = data.recent_runs(reader)
    mine = runs.filter(pl.col("run_id") == reader.snapshot.run_id)
    assert mine["status"][0] == "STARTED", "the run recorded itself while still finishing"
    assert mine["outcome"][0] == "Published this snapshot"


def test_model_drift_and_identity_figures_come_with_the_snapshot(reader, published):
    drift = data.model_drift(reader)
    assert drift.height > 0 and drift["psi"].min() >= 0
    sizes = data.identity_cluster_sizes(reader)
    with published.connect() as con:
        customers_with_records, largest = con.execute(
            "SELECT count(*), max(n) FROM (SELECT customer_id, count(*) AS n FROM identity.records "
            "WHERE customer_id IS NOT NULL GROUP BY 1)"
        ).fetchall()[0]
    assert sizes["customers"].sum() == customers_with_records and sizes["largest"].max() == largest
    assert data.identity_largest_clusters(reader)["records"][0] == largest
    assert data.suspected_duplicates(reader) is None or data.suspected_duplicates_count(reader) is not None


def test_a_bound_left_open_keeps_tomorrows_larger_values_and_missing_values_are_a_choice(reader, published):
    """Filters stored as meant: no captured maximum, and customers without a value kept unless excluded."""
    with published.connect() as con:
        everyone, with_value, at_least = con.execute(
            "SELECT count(*), count(s.clv_12m), count(*) FILTER (WHERE s.clv_12m >= 100) "
            "FROM marts.customer_360 c LEFT JOIN marts.customer_scores s USING (customer_id)"
        ).fetchall()[0]
    assert everyone > with_value, "some customers have no expected value (never ordered)"

    def count(*conditions: Condition) -> int:
        return data.segment_count(reader, SegmentDefinition(name="t", conditions=list(conditions)))[0]

    assert count(Condition(column="clv_12m", op=">=", value=100)) == at_least
    assert count(Condition(column="clv_12m", op=">=", value=100, include_missing=True)) == at_least + (
        everyone - with_value
    )
    assert count(Condition(column="clv_12m", op="not_null")) == with_value
    sql, params = where_clause(
        SegmentDefinition(name="t", conditions=[Condition(column="clv_12m", op=">=", value=100)]),
        data.filterable_columns(reader),
    )
    assert params == [100] and "<=" not in sql and "BETWEEN" not in sql
