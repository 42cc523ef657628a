"""The app's read-only data layer: every number a page shows comes from a function here.

It reads only the published snapshot the pointer names (never the build warehouse, which the
nightly run holds as its one writer), opened ``read_only``. Values reach SQL as bound
parameters; the few identifiers that vary come from allow-lists. Functions return polars frames
(or plain values) and know nothing about Streamlit, so tests call them directly and compare with
their own SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from crm.ingest.ledger import GROUPED_REASON_SQL, quarantine_reasons_sql
from crm.serving.aggregates import KPI_PERIOD_DAYS
from crm.serving.search import SEARCH_TABLE, SearchQuery, search_sql
from crm.serving.segments import (
    Condition,
    SegmentDefinition,
    SegmentError,
    SegmentResult,
    count_segment,
    evaluate_segment,
    exports_dir,
    load_segments,
    mask_pii,
    record_download,
    save_segment,
    to_csv_bytes,
    to_excel_bytes,
    to_parquet_bytes,
    universe_columns,
    universe_sql,
)
from crm.serving.snapshots import Snapshot, current_snapshot
from crm.settings import data_dir_from_env

# The pages reach the domain package only through this module: these are the names they use.
__all__ = [
    "KPI_PERIOD_DAYS",
    "Condition",
    "SegmentDefinition",
    "SegmentError",
    "exports_dir",
    "load_segments",
    "mask_pii",
    "save_segment",
    "to_csv_bytes",
]

SCORES = "marts.customer_scores"
REP_ACTIONS = "marts.rep_actions"
MODEL_REGISTRY = "ml.model_registry"
NO_SNAPSHOT = "No snapshot yet — run `crm build`."
NO_SCORES = "Scores not built yet: the churn, value and loyalty scores appear after a build that includes them."


def data_dir() -> Path:
    """The folder the build publishes snapshots into (CRM_DATA_DIR, set by `crm app`; else data/)."""
    return data_dir_from_env()


def find_snapshot(directory: Path | None = None) -> Snapshot | None:
    return current_snapshot(directory or data_dir())


class SnapshotReader:
    """One read-only connection to one snapshot; each query runs on its own cursor, so Streamlit's
    session threads can share the reader (a DuckDB connection is not safe across threads)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._con = duckdb.connect(str(snapshot.path), read_only=True)

    def close(self) -> None:
        self._con.close()

    def frame(self, sql: str, params: list[Any] | tuple = ()) -> pl.DataFrame:
        cursor = self._con.cursor()
        try:
            return cursor.sql(sql, params=list(params)).pl()
        finally:
            cursor.close()

    def rows(self, sql: str, params: list[Any] | tuple = ()) -> list[tuple]:
        cursor = self._con.cursor()
        try:
            return cursor.execute(sql, list(params)).fetchall()
        finally:
            cursor.close()

    def value(self, sql: str, params: list[Any] | tuple = ()) -> Any:
        return self.rows(sql, params)[0][0]

    @cached_property
    def tables(self) -> frozenset[str]:
        return frozenset(
            r[0] for r in self.rows("SELECT table_schema || '.' || table_name FROM information_schema.tables")
        )

    def has(self, table: str) -> bool:
        return table in self.tables

    @cached_property
    def columns(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {}
        for table, column in self.rows(
            "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns"
        ):
            found.setdefault(table, set()).add(column)
        return {table: frozenset(names) for table, names in found.items()}

    def has_column(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, frozenset())

    @cached_property
    def has_scores(self) -> bool:
        """Scores exist once a model has scored at least one customer (the table is empty before)."""
        return self.has(SCORES) and bool(self.value(f"SELECT count(*) > 0 FROM (SELECT 1 FROM {SCORES} LIMIT 1)"))

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()


# --- Overview -----------------------------------------------------------------------------------


def as_of_date(reader: SnapshotReader) -> date:
    return reader.value("SELECT max(as_of_date) FROM marts.customer_360")


@dataclass(frozen=True)
class Kpi:
    label: str
    current: float | None
    previous: float | None
    kind: str  # "count", "money", "share"
    # One line a person reads under the (?) icon: what is counted, over which customers, which days.
    definition: str = ""

    @property
    def change(self) -> float | None:
        if self.current is None or self.previous in (None, 0):
            return None
        return (self.current - self.previous) / abs(self.previous)


def overview_kpis(reader: SnapshotReader) -> list[Kpi]:
    """The last KPI_PERIOD_DAYS up to the as-of date against the same number of days before them."""
    ((active, active_before, revenue, revenue_before, orders, orders_before),) = reader.rows(
        "SELECT active_current, active_previous, revenue_current, revenue_previous, orders_current, "
        "orders_previous FROM serving.order_kpis"
    )
    as_of = as_of_date(reader)
    days = f"the {KPI_PERIOD_DAYS} days to {as_of:%d %b %Y}"
    return [
        Kpi(
            "Active customers",
            active,
            active_before,
            "count",
            f"Customers with at least one order (not cancelled or returned) in {days}; "
            f"previous period: {active_before:,}.",
        ),
        Kpi(
            "Revenue",
            revenue,
            revenue_before,
            "money",
            f"Value of the orders placed in {days}; cancelled and returned orders count nothing.",
        ),
        Kpi(
            "Average order value",
            revenue / orders if orders else None,
            revenue_before / orders_before if orders_before else None,
            "money",
            f"Revenue divided by the {orders:,} orders (not cancelled or returned) in {days}.",
        ),
    ]


@dataclass(frozen=True)
class RiskSummary:
    """Churn risk in words a marketer can act on: who can still be kept, who is already gone.

    ``lapsed``: no order for more than ``lapsed_after_days`` (twice the model's horizon) — already
    lost, a win-back case; ``at_risk``: high churn band among the others (still buying, may stop).
    """

    customers: int
    scored: int
    high: int
    at_risk: int
    active_scored: int
    lapsed: int
    horizon_days: int
    lapsed_after_days: int
    high_from: float | None
    clv_total: float | None


def risk_summary(reader: SnapshotReader) -> RiskSummary | None:
    if not reader.has_scores:
        return None
    model = current_model(reader)
    horizon = int(model["horizon_days"]) if model and model.get("horizon_days") else KPI_PERIOD_DAYS
    lapsed_after = 2 * horizon
    (row,) = reader.rows(
        f"""
        SELECT count(*),
               count(s.customer_id),
               count(*) FILTER (WHERE s.churn_band = 'high'),
               count(*) FILTER (WHERE s.churn_band = 'high' AND c.days_since_last_order <= ?),
               count(*) FILTER (WHERE s.customer_id IS NOT NULL AND c.days_since_last_order <= ?),
               count(*) FILTER (WHERE s.customer_id IS NOT NULL AND c.days_since_last_order > ?),
               min(s.churn_probability) FILTER (WHERE s.churn_band = 'high'),
               sum(s.clv_12m)
        FROM marts.customer_360 c LEFT JOIN {SCORES} s ON s.customer_id = c.customer_id
        """,
        [lapsed_after, lapsed_after, lapsed_after],
    )
    customers, scored, high, at_risk, active_scored, lapsed, high_from, clv = row
    return RiskSummary(customers, scored, high, at_risk, active_scored, lapsed, horizon, lapsed_after, high_from, clv)


def _with_partial_flag(frame: pl.DataFrame) -> pl.DataFrame:
    """Mark the months the data covers only in part (the open month; a first month begun mid-way)."""
    if frame.height == 0:
        return frame.with_columns(pl.lit(False).alias("is_partial"))
    return frame.with_columns(
        ((pl.col("covered_from") > pl.col("month")) | (pl.col("covered_to") < pl.col("month").dt.month_end())).alias(
            "is_partial"
        )
    )


def monthly_activity(reader: SnapshotReader) -> pl.DataFrame:
    """Revenue, ordering customers and orders per month, each month flagged when its data is partial."""
    return _with_partial_flag(reader.frame("SELECT * FROM serving.monthly_activity ORDER BY month"))


def segment_sizes(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT coalesce(segment, 'Unscored') AS segment, count(*) AS customers, sum(monetary) AS revenue "
        "FROM marts.customer_rfm GROUP BY ALL ORDER BY customers DESC"
    )


TIERS = ("Bronze", "Silver", "Gold", "Platinum")


def tier_sizes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has_scores:
        return None
    return reader.frame(
        f"SELECT loyalty_tier, count(*) AS customers, sum(clv_12m) AS clv_12m, "
        f"sum(benefits_yearly_cost) AS benefits_yearly_cost "
        f"FROM {SCORES} GROUP BY loyalty_tier "
        f"ORDER BY list_position(['Bronze', 'Silver', 'Gold', 'Platinum'], loyalty_tier)"
    )


# --- Customers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPage:
    rows: pl.DataFrame
    total: int
    offset: int


def search_customers(reader: SnapshotReader, text: str, limit: int = 25, offset: int = 0) -> SearchPage:
    """Customers matching ``text`` in any identifier of any of their source records, best match first.

    ``total`` is the true number of matching customers; ``rows`` the page from ``offset``.
    """
    query = SearchQuery.parse(text)
    if not reader.has(SEARCH_TABLE):
        return SearchPage(pl.DataFrame(), 0, offset)
    hits, params = search_sql(query)
    frame = reader.frame(
        f"""
        WITH hits AS ({hits})
        SELECT count(*) OVER () AS total, c.customer_id, c.full_name, hits.matched, hits.matched_kind, c.email,
               c.phone, c.city,
               c.account_name, c.owner_rep_name, c.last_order_at
        FROM hits JOIN marts.customer_360 c ON c.customer_id = hits.customer_id
        ORDER BY hits.score DESC, c.full_name, c.customer_id
        LIMIT ? OFFSET ?
        """,
        [*params, limit, offset],
    )
    if frame.height:
        total = int(frame["total"][0])
    else:
        total = reader.value(f"SELECT count(*) FROM ({hits})", params) if offset else 0
    return SearchPage(frame.drop("total"), total, offset)


def customer_card(reader: SnapshotReader, customer_id: str) -> dict[str, Any] | None:
    """customer_360 with the golden record's provenance, RFM and (when built) scores, as one dict."""
    score_columns = ""
    score_join = ""
    if reader.has_scores:
        own = set(reader.frame("SELECT * FROM marts.customer_360 LIMIT 0").columns)
        extra = [c for c in reader.frame(f"SELECT * FROM {SCORES} LIMIT 0").columns if c not in own]
        score_columns = "".join(f', s."{c}"' for c in extra)
        score_join = f"LEFT JOIN {SCORES} s ON s.customer_id = c.customer_id"
    frame = reader.frame(
        f"""
        SELECT c.*, g.first_name_source, g.last_name_source, g.email_source, g.phone_source, g.city_source,
               g.postcode_source, g.sales_contact_records, g.marketing_contact_records, g.support_ticket_records,
               g.unsubscribed_at, r.segment AS rfm_segment, r.rfm_cell {score_columns}
        FROM marts.customer_360 c
        JOIN marts.customers g ON g.customer_id = c.customer_id
        LEFT JOIN marts.customer_rfm r ON r.customer_id = c.customer_id
        {score_join}
        WHERE c.customer_id = ?
        """,
        [customer_id],
    )
    return frame.row(0, named=True) if frame.height else None


SOURCE_NAMES = {
    "sales_contacts": "Sales contact",
    "sales_orders": "Sales order",
    "marketing_contacts": "Marketing contact",
    "support_tickets": "Support ticket",
}


def customer_records(reader: SnapshotReader, customer_id: str) -> pl.DataFrame:
    """The source records identity resolution joined into this customer, and why (rule, evidence)."""
    evidence = "match_evidence" if reader.has_column("identity.records", "match_evidence") else "NULL::VARCHAR"
    return reader.frame(
        f"SELECT source, source_key, first_name, last_name, email, phone_e164 AS phone, city, match_rule, "
        f"round(match_probability, 3) AS match_probability, {evidence} AS match_evidence "
        f"FROM identity.records WHERE customer_id = ? ORDER BY source, source_key",
        [customer_id],
    ).with_columns(pl.col("source").replace(SOURCE_NAMES))


SUSPECTS = "identity.suspected_duplicates"


def customer_suspects(reader: SnapshotReader, customer_id: str) -> pl.DataFrame | None:
    """Other customers this one may be the same person as (pairs just under the match threshold)."""
    if not reader.has(SUSPECTS):
        return None
    return reader.frame(
        f"""
        WITH pairs AS (
            SELECT customer_id_r AS other, match_probability, evidence FROM {SUSPECTS} WHERE customer_id_l = ?
            UNION ALL
            SELECT customer_id_l, match_probability, evidence FROM {SUSPECTS} WHERE customer_id_r = ?
        )
        SELECT p.other AS customer_id, c.full_name, max(p.match_probability) AS match_probability,
               any_value(p.evidence ORDER BY p.match_probability DESC) AS evidence
        FROM pairs p LEFT JOIN marts.customer_360 c ON c.customer_id = p.other
        WHERE p.other <> ?
        GROUP BY ALL ORDER BY match_probability DESC
        """,
        [customer_id, customer_id, customer_id],
    )


# Marketing sends are the bulk of any customer's events (one per campaign): the time line lists what
# the customer did (opened, clicked, bought, unsubscribed) and counts the sends apart.
QUIET_EVENT_TYPES = ("sent", "delivered")
# Each fact is read by a bare point lookup on the snapshot's customer_id index: DuckDB leaves the index
# as soon as another predicate or a join sits in the same query (a scan of 5M events at medium), so
# filtering and naming happen in polars on the customer's own rows.
TIMELINE_ORDERS = (
    "SELECT order_date AS happened_at, 'Order' AS kind, status AS what, "
    "'order ' || order_id || coalesce(' · ' || channel, '') AS detail, total_amount AS amount "
    "FROM marts.orders WHERE customer_id = ?"
)
TIMELINE_EVENTS = (
    "SELECT occurred_at AS happened_at, event_type, campaign_id, conversion_value "
    "FROM marts.marketing_events WHERE customer_id = ?"
)
TIMELINE_TICKETS = (
    "SELECT created_at AS happened_at, 'Support ticket' AS kind, status AS what, "
    "concat_ws(' · ', subject, priority, 'rated ' || satisfaction_score) AS detail, NULL::DOUBLE AS amount "
    "FROM marts.support_tickets WHERE customer_id = ?"
)


def campaign_names(reader: SnapshotReader) -> dict[str, str]:
    """Campaign id -> name, read once per snapshot reader."""
    names = getattr(reader, "_campaign_names", None)
    if names is None:
        names = (
            dict(reader.rows("SELECT campaign_id, campaign_name FROM marts.campaign_performance"))
            if reader.has_column("marts.campaign_performance", "campaign_name")
            else {}
        )
        reader._campaign_names = names
    return names


def customer_timeline(
    reader: SnapshotReader, customer_id: str, limit: int = 200, include_sends: bool = False
) -> tuple[pl.DataFrame, int]:
    """Orders, marketing events (campaigns by name) and tickets on one time line, newest first, and how
    many marketing messages were sent or delivered (left off the line unless ``include_sends``)."""
    events = reader.frame(TIMELINE_EVENTS, [customer_id])
    sends = events.filter(pl.col("event_type").is_in(QUIET_EVENT_TYPES)).height
    if not include_sends:
        events = events.filter(~pl.col("event_type").is_in(QUIET_EVENT_TYPES))
    names = campaign_names(reader)
    events = events.select(
        "happened_at",
        pl.lit("Marketing").alias("kind"),
        pl.col("event_type").alias("what"),
        pl.col("campaign_id")
        .replace_strict(names, default=pl.col("campaign_id"))
        .fill_null("no campaign")
        .alias("detail"),
        pl.when(pl.col("conversion_value") != 0).then(pl.col("conversion_value")).alias("amount"),
    )
    parts = [
        frame.with_columns(
            pl.col("happened_at").cast(pl.Datetime("us")),
            pl.col("detail").cast(pl.String),
            pl.col("amount").cast(pl.Float64),
        ).select("happened_at", "kind", "what", "detail", "amount")
        for frame in (
            reader.frame(TIMELINE_ORDERS, [customer_id]),
            events,
            reader.frame(TIMELINE_TICKETS, [customer_id]),
        )
    ]
    timeline = pl.concat(parts).sort("happened_at", descending=True, nulls_last=True).head(limit)
    return timeline, sends


# --- Segments -----------------------------------------------------------------------------------


def rfm_grid(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT r_score, f_score, count(*) AS customers, sum(monetary) AS revenue "
        "FROM marts.customer_rfm GROUP BY ALL ORDER BY r_score, f_score"
    )


def rfm_snapshot_dates(reader: SnapshotReader) -> list[date]:
    return [
        r[0]
        for r in reader.rows("SELECT DISTINCT snapshot_date FROM marts.customer_rfm_history ORDER BY snapshot_date")
    ]


NOT_YET = "Not yet a customer"
GONE = "No longer listed"


def segment_migration(reader: SnapshotReader, from_date: date, to_date: date) -> pl.DataFrame:
    """Customers per (segment at from_date, segment at to_date): the from→to matrix, long form.

    A customer without RFM at ``from_date`` had not ordered yet; one missing at ``to_date`` was merged
    into another customer id or erased since.
    """
    return reader.frame(
        f"""
        WITH a AS (SELECT customer_id, segment FROM marts.customer_rfm_history WHERE snapshot_date = ?),
             b AS (SELECT customer_id, segment FROM marts.customer_rfm_history WHERE snapshot_date = ?)
        SELECT coalesce(a.segment, '{NOT_YET}') AS from_segment,
               coalesce(b.segment, '{GONE}') AS to_segment, count(*) AS customers
        FROM a FULL OUTER JOIN b ON a.customer_id = b.customer_id
        GROUP BY ALL ORDER BY customers DESC
        """,
        [from_date, to_date],
    )


def cohort_retention(reader: SnapshotReader) -> pl.DataFrame:
    """Share of each monthly cohort ordering in each later month; the open month's cells are flagged
    (``is_partial``): a month with only some of its days counted reads as a drop that is not there."""
    return reader.frame(
        """
        WITH as_of AS (SELECT max(as_of_date) AS day FROM marts.customer_360)
        SELECT cohort_month, months_since_acquisition, activity_month, cohort_customers, active_customers,
               active_share, activity_month = date_trunc('month', as_of.day)::DATE
                   AND as_of.day < last_day(as_of.day) AS is_partial
        FROM marts.cohort_retention, as_of ORDER BY cohort_month, months_since_acquisition
        """
    )


# --- Segment builder ----------------------------------------------------------------------------


def filterable_columns(reader: SnapshotReader) -> dict[str, str]:
    cursor = reader.cursor()
    try:
        return universe_columns(cursor)
    finally:
        cursor.close()


def distinct_values(reader: SnapshotReader, column: str, limit: int = 200) -> list[Any]:
    allowed = filterable_columns(reader)
    if column not in allowed:
        raise ValueError(f"unknown column {column!r}")
    cursor = reader.cursor()
    try:
        universe = universe_sql(cursor)
        return [
            r[0]
            for r in cursor.execute(
                f'SELECT DISTINCT "{column}" FROM ({universe}) WHERE "{column}" IS NOT NULL ORDER BY 1 LIMIT ?', [limit]
            ).fetchall()
        ]
    finally:
        cursor.close()


def value_range(reader: SnapshotReader, column: str) -> tuple[Any, Any, int]:
    """(lowest value, highest value, customers without a value) of a filterable column."""
    allowed = filterable_columns(reader)
    if column not in allowed:
        raise ValueError(f"unknown column {column!r}")
    cursor = reader.cursor()
    try:
        return cursor.execute(
            f'SELECT min("{column}"), max("{column}"), count(*) - count("{column}") FROM ({universe_sql(cursor)})'
        ).fetchall()[0]
    finally:
        cursor.close()


def missing_count(reader: SnapshotReader, column: str) -> int:
    """Customers without a value in a filterable column (no score yet, never ordered, not given)."""
    return value_range(reader, column)[2]


def segment_count(reader: SnapshotReader, definition: SegmentDefinition) -> tuple[int, int]:
    cursor = reader.cursor()
    try:
        return count_segment(cursor, definition)
    finally:
        cursor.close()


def segment_rows(reader: SnapshotReader, definition: SegmentDefinition, limit: int | None = None) -> SegmentResult:
    cursor = reader.cursor()
    try:
        return evaluate_segment(cursor, definition, limit=limit)
    finally:
        cursor.close()


# --- Churn & value ------------------------------------------------------------------------------


def current_model(reader: SnapshotReader) -> dict[str, Any] | None:
    if not reader.has(MODEL_REGISTRY):
        return None
    frame = reader.frame(f"SELECT * FROM {MODEL_REGISTRY} WHERE status = 'current' ORDER BY trained_at DESC LIMIT 1")
    return frame.row(0, named=True) if frame.height else None


def churn_distribution(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        f"SELECT least(floor(churn_probability * 20) / 20, 0.95) AS bucket, churn_band, count(*) AS customers "
        f"FROM {SCORES} GROUP BY ALL ORDER BY bucket"
    )


def _model_table(reader: SnapshotReader, table: str, order: str) -> pl.DataFrame | None:
    model = current_model(reader)
    if model is None or not reader.has(table):
        return None
    return reader.frame(f"SELECT * FROM {table} WHERE model_version = ? ORDER BY {order}", [model["model_version"]])


def churn_calibration(reader: SnapshotReader) -> pl.DataFrame | None:
    return _model_table(reader, "ml.churn_calibration", "decile")


def churn_drivers(reader: SnapshotReader, top: int = 10) -> pl.DataFrame | None:
    drivers = _model_table(reader, "ml.churn_drivers", "importance DESC")
    return drivers.head(top) if drivers is not None else None


def high_value_at_risk(reader: SnapshotReader, lapsed_after_days: int, limit: int = 50) -> pl.DataFrame:
    """The most valuable customers in the high churn band who still buy (not lapsed): the ones worth a call."""
    return reader.frame(
        f"""
        SELECT s.customer_id, c.full_name, c.owner_rep_name, s.clv_12m, s.churn_probability,
               c.days_since_last_order, s.loyalty_tier, s.churn_reasons, s.next_action
        FROM {SCORES} s JOIN marts.customer_360 c ON c.customer_id = s.customer_id
        WHERE s.churn_band = 'high' AND c.days_since_last_order <= ?
        ORDER BY s.clv_12m DESC NULLS LAST, s.customer_id LIMIT ?
        """,
        [lapsed_after_days, limit],
    )


def clv_histogram(reader: SnapshotReader, bins: int = 40) -> pl.DataFrame:
    """Customers per bin of expected 12-month value, on a linear scale; the top 1% share the last bin
    (``is_top``), so a few very large customers do not squash everyone else into the first bar."""
    return reader.frame(
        f"""
        WITH top AS (SELECT greatest(quantile_cont(clv_12m, 0.99), 1e-9) AS value FROM {SCORES}),
        binned AS (
            SELECT least(floor(greatest(clv_12m, 0) / (top.value / ?)), ? - 1) AS bin, top.value / ? AS width
            FROM {SCORES}, top WHERE clv_12m IS NOT NULL
        )
        SELECT bin * width AS clv_from, (bin + 1) * width AS clv_to, bin = ? - 1 AS is_top, count(*) AS customers
        FROM binned GROUP BY ALL ORDER BY clv_from
        """,
        [bins, bins, bins, bins],
    )


# --- Campaigns & support ------------------------------------------------------------------------

FUNNEL_STEPS = ("customers_sent", "customers_delivered", "customers_opened", "customers_clicked", "customers_converted")


def campaigns(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame("SELECT * FROM marts.campaign_performance ORDER BY launched_at DESC NULLS LAST, campaign_id")


def conversion_by_segment(reader: SnapshotReader) -> pl.DataFrame:
    """Per RFM segment *at the time of the send*: campaign sends and the share that converted."""
    return reader.frame("SELECT * FROM serving.conversion_by_segment ORDER BY sends DESC")


def tickets_by_month(reader: SnapshotReader) -> pl.DataFrame:
    """Tickets, median resolution and satisfied share per month of creation, partial months flagged."""
    return _with_partial_flag(reader.frame("SELECT * FROM serving.tickets_by_month ORDER BY month"))


def satisfaction_vs_churn(reader: SnapshotReader) -> pl.DataFrame | None:
    """Mean churn probability by the customer's last support rating (none = never rated)."""
    if not reader.has_scores:
        return None
    return reader.frame(
        f"""
        SELECT coalesce(c.last_satisfaction, 'no rating') AS last_satisfaction, count(*) AS customers,
               avg(s.churn_probability) AS mean_churn_probability
        FROM marts.customer_360 c JOIN {SCORES} s ON s.customer_id = c.customer_id
        GROUP BY ALL ORDER BY last_satisfaction
        """
    )


# --- My book ------------------------------------------------------------------------------------

# A row is worth a rep's time when something is at stake: at least £1 (a value that rounds to £0, such
# as the catch-all "keep in touch", is listed apart).
ACTIONABLE_FROM = 0.5


def reps(reader: SnapshotReader) -> pl.DataFrame:
    """Every rep with the size of their book as My book lists it (rows of rep_actions) and how many to act on."""
    if not reader.has(REP_ACTIONS):
        return reader.frame(
            "SELECT rep_id, rep_name, region, 0 AS in_book, 0 AS to_act_on FROM marts.rep_performance "
            "WHERE rep_name IS NOT NULL ORDER BY rep_name"
        )
    return reader.frame(
        f"""
        WITH books AS (
            SELECT rep_id, count(*) AS in_book, count(*) FILTER (WHERE value_at_stake >= ?) AS to_act_on
            FROM {REP_ACTIONS} GROUP BY rep_id
        )
        SELECT r.rep_id, r.rep_name, r.region, coalesce(b.in_book, 0) AS in_book,
               coalesce(b.to_act_on, 0) AS to_act_on
        FROM marts.rep_performance r LEFT JOIN books b ON b.rep_id = CAST(r.rep_id AS VARCHAR)
        WHERE r.rep_name IS NOT NULL ORDER BY r.rep_name
        """,
        [ACTIONABLE_FROM],
    )


def rep_book(reader: SnapshotReader, rep_id: str) -> pl.DataFrame | None:
    """The rep's customers ranked by value at stake, with what a call needs: phone, email, last order."""
    if not reader.has(REP_ACTIONS):
        return None
    return reader.frame(
        f"""
        SELECT a.rank_in_book, a.customer_id, a.customer_name, c.phone, c.email, a.next_action, a.reason,
               round(a.value_at_stake) AS value_at_stake, a.churn_probability, round(a.clv_12m) AS clv_12m,
               CAST(c.last_order_at AS DATE) AS last_order_at, c.days_since_last_order, a.loyalty_tier,
               a.action_priority, a.value_at_stake >= ? AS actionable
        FROM {REP_ACTIONS} a LEFT JOIN marts.customer_360 c ON c.customer_id = a.customer_id
        WHERE a.rep_id = ? ORDER BY a.rank_in_book
        """,
        [ACTIONABLE_FROM, rep_id],
    )


# --- Data health --------------------------------------------------------------------------------

RUN_STATUS = {
    "SUCCESS": "Succeeded",
    "FAILURE": "Failed",
    "CANCELED": "Cancelled",
    "CANCELING": "Cancelling",
    "QUEUED": "Queued",
    "NOT_STARTED": "Not started",
}


def recent_runs(reader: SnapshotReader) -> pl.DataFrame:
    """The runs recorded when this snapshot was published, with a status a person can read.

    The publishing run was still running its last steps when it wrote this list, so its raw status
    is STARTED; it is shown as what it was: the run that published this snapshot. An older run that
    still says STARTED never recorded an end: it was interrupted.
    """
    frame = reader.frame("SELECT * FROM ops.recent_runs ORDER BY started_at DESC NULLS LAST")
    if frame.height == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("outcome"))
    publishing = pl.col("run_id") == reader.snapshot.run_id
    running = pl.col("status").is_in(["STARTED", "STARTING"])
    return frame.with_columns(
        pl.when(publishing & running)
        .then(pl.lit("Published this snapshot"))
        .when(running & pl.col("ended_at").is_null())
        .then(pl.lit("Did not finish (interrupted)"))
        .otherwise(pl.col("status").replace_strict(RUN_STATUS, default=pl.col("status").str.to_lowercase()))
        .alias("outcome")
    )


FRESHNESS_EXPECTATIONS = "ops.freshness_expectations"


def source_freshness(reader: SnapshotReader, today: date) -> pl.DataFrame | None:
    """Per source entity: newest day with data, its age today against the config's expectation
    (``status``: ok / warn / error / no expectation / no data), and rows read = raw + quarantine."""
    if not reader.has("ops.ingest_reconciliation"):
        return None
    if reader.has(FRESHNESS_EXPECTATIONS):
        expected = (
            f"LEFT JOIN {FRESHNESS_EXPECTATIONS} e ON e.entity = r.entity",
            "e.source, e.warn_after_days, e.error_after_days",
        )
    else:
        expected = ("", "NULL::VARCHAR AS source, NULL::INTEGER AS warn_after_days, NULL::INTEGER AS error_after_days")
    frame = reader.frame(
        f"""
        SELECT r.entity, {expected[1]}, r.last_partition, r.last_loaded_at, r.rows_read, r.rows_in_raw,
               r.rows_in_quarantine, r.quarantine_share, r.reconciled,
               date_diff('day', r.last_partition, ?::DATE) AS age_days
        FROM ops.ingest_reconciliation r {expected[0]} ORDER BY r.entity
        """,
        [today],
    )
    return frame.with_columns(
        pl.when(pl.col("last_partition").is_null())
        .then(pl.lit("no data"))
        .when(pl.col("error_after_days").is_not_null() & (pl.col("age_days") > pl.col("error_after_days")))
        .then(pl.lit("error"))
        .when(pl.col("warn_after_days").is_not_null() & (pl.col("age_days") > pl.col("warn_after_days")))
        .then(pl.lit("warn"))
        .when(pl.col("warn_after_days").is_null() & pl.col("error_after_days").is_null())
        .then(pl.lit("no expectation"))
        .otherwise(pl.lit("ok"))
        .alias("status")
    )


def _quarantine_entities(reader: SnapshotReader) -> list[str]:
    return sorted(t.split(".", 1)[1] for t in reader.tables if t.startswith("quarantine."))


def quarantine_reasons(reader: SnapshotReader) -> pl.DataFrame:
    """Quarantined rows per entity and reason (values in the reason replaced, so reasons group)."""
    entities = _quarantine_entities(reader)
    if not entities:
        return pl.DataFrame(schema={"entity": pl.String, "reason": pl.String, "rows": pl.Int64})
    return reader.frame(quarantine_reasons_sql(entities))


def quarantine_samples(reader: SnapshotReader, per_reason: int = 3) -> pl.DataFrame:
    """A few quarantined rows of every (entity, reason): where they are in the source (file:line or
    table:key), the field and the reason, so a person can open the file and look."""
    entities = [
        e
        for e in _quarantine_entities(reader)
        if {"_source_location", "_reason"} <= reader.columns.get(f"quarantine.{e}", frozenset())
    ]
    schema = {"entity": pl.String, "location": pl.String, "field": pl.String, "reason": pl.String}
    if not entities:
        return pl.DataFrame(schema=schema)
    union = " UNION ALL ".join(
        f"SELECT '{e}' AS entity, _source_location AS location, "
        f"{'_field' if reader.has_column(f'quarantine.{e}', '_field') else 'NULL'} AS field, _reason AS reason, "
        f'{GROUPED_REASON_SQL} AS grouped FROM quarantine."{e}"'
        for e in entities
    )
    return reader.frame(
        f"""
        SELECT entity, location, field, reason FROM ({union})
        QUALIFY row_number() OVER (PARTITION BY entity, grouped ORDER BY location) <= ?
        ORDER BY entity, grouped, location
        """,
        [per_reason],
    )


def check_results(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT asset_key, check_name, passed, severity, description, evaluated_at "
        "FROM ops.asset_check_results ORDER BY passed, severity, asset_key, check_name"
    )


def model_drift(reader: SnapshotReader) -> pl.DataFrame | None:
    """How far tonight's scored customers moved from the ones the current model was trained on
    (population stability index per feature and for the score itself)."""
    model = current_model(reader)
    if model is None or not reader.has("ml.score_drift"):
        return None
    descriptions = (
        "LEFT JOIN ml.churn_drivers d ON d.model_version = s.model_version AND d.feature = s.feature"
        if reader.has("ml.churn_drivers")
        else ""
    )
    description = "d.description" if descriptions else "NULL::VARCHAR"
    return reader.frame(
        f"""
        SELECT s.feature, coalesce({description},
                   CASE WHEN s.feature = 'churn_probability' THEN 'the churn score itself' END) AS description,
               s.psi, s.scored_as_of
        FROM ml.score_drift s {descriptions}
        WHERE s.model_version = ? ORDER BY s.psi DESC
        """,
        [model["model_version"]],
    )


def identity_summary(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("serving.identity_summary"):
        return None
    return reader.frame("SELECT * FROM serving.identity_summary ORDER BY source")


def identity_cluster_sizes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("serving.identity_cluster_sizes"):
        return None
    return reader.frame("SELECT * FROM serving.identity_cluster_sizes ORDER BY records")


def identity_largest_clusters(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("serving.identity_largest_clusters"):
        return None
    return reader.frame(
        "SELECT l.*, c.full_name FROM serving.identity_largest_clusters l "
        "LEFT JOIN marts.customer_360 c ON c.customer_id = l.customer_id ORDER BY l.records DESC, l.customer_id"
    )


def guarded_values(reader: SnapshotReader) -> pl.DataFrame | None:
    """Values shared by so many records that identity resolution refused to link through them."""
    if not reader.has("identity.guarded_values"):
        return None
    return reader.frame("SELECT value_kind, value, records, reason FROM identity.guarded_values ORDER BY records DESC")


def identity_changes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("identity.customer_id_changes"):
        return None
    return reader.frame("SELECT * FROM identity.customer_id_changes ORDER BY changed_at DESC LIMIT 200")


# --- Steward review -----------------------------------------------------------------------------


def suspected_duplicates_count(reader: SnapshotReader) -> int | None:
    if not reader.has(SUSPECTS):
        return None
    return reader.value(f"SELECT count(*) FROM {SUSPECTS}")


def suspected_duplicates(reader: SnapshotReader, limit: int = 200) -> pl.DataFrame | None:
    """Pairs of records identity resolution found similar but not similar enough to join, most likely
    first, each side with what a steward needs to judge: name, email, phone, city, its customer."""
    if not reader.has(SUSPECTS):
        return None
    side = (
        "SELECT record_key, source, source_key, customer_id, trim(concat_ws(' ', first_name, last_name)) AS name, "
        "email, phone_e164 AS phone, city FROM identity.records"
    )
    return reader.frame(
        f"""
        WITH side AS ({side})
        SELECT p.record_key_l, p.record_key_r, p.customer_id_l, p.customer_id_r, p.match_probability, p.evidence,
               l.source AS source_l, l.source_key AS source_key_l, l.name AS name_l, l.email AS email_l,
               l.phone AS phone_l, l.city AS city_l,
               r.source AS source_r, r.source_key AS source_key_r, r.name AS name_r, r.email AS email_r,
               r.phone AS phone_r, r.city AS city_r
        FROM {SUSPECTS} p
        LEFT JOIN side l ON l.record_key = p.record_key_l
        LEFT JOIN side r ON r.record_key = p.record_key_r
        ORDER BY p.match_probability DESC, p.record_key_l, p.record_key_r
        LIMIT ?
        """,
        [limit],
    )


def widget_kind(duckdb_type: str) -> str:
    """Which filter widget a column gets: 'boolean', 'number', 'date' or 'category'."""
    upper = duckdb_type.upper()
    if upper == "BOOLEAN":
        return "boolean"
    if upper.startswith(
        (
            "TINYINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "HUGEINT",
            "UTINYINT",
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
            "FLOAT",
            "DOUBLE",
            "DECIMAL",
            "REAL",
        )
    ):
        return "number"
    if upper.startswith(("DATE", "TIMESTAMP")):
        return "date"
    return "category"


EXPORT_FORMATS = {
    "CSV": (".csv", "text/csv"),
    "Parquet": (".parquet", "application/vnd.apache.parquet"),
    "Excel": (".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def export_bytes(reader: SnapshotReader, definition: SegmentDefinition, file_format: str, *, mask: bool) -> bytes:
    """The whole segment (consent applied for its channel) as a file; contact details masked on request."""
    return _export(reader, definition, file_format, mask=mask)[0]


def _export(
    reader: SnapshotReader, definition: SegmentDefinition, file_format: str, *, mask: bool
) -> tuple[bytes, SegmentResult]:
    result = segment_rows(reader, definition)
    rows = mask_pii(result.rows) if mask else result.rows
    writer = {"CSV": to_csv_bytes, "Parquet": to_parquet_bytes, "Excel": to_excel_bytes}[file_format]
    return writer(rows), result


def export_download(
    reader: SnapshotReader,
    definition: SegmentDefinition,
    file_format: str,
    *,
    mask: bool,
    data_dir: Path,
    file_name: str,
    snapshot_id: str,
) -> bytes:
    """A download's bytes, and its manifest (rows, consent exclusions, contact details in full or
    masked) recorded under exports/downloads/."""
    payload, result = _export(reader, definition, file_format, mask=mask)
    record_download(
        data_dir,
        definition,
        result,
        payload,
        file_name=file_name,
        snapshot_id=snapshot_id,
        contact_details=not mask,
    )
    return payload


_OPERATOR_WORDS = {">=": "at least", "<=": "at most", "=": "equal to", "not_in": "not one of"}


def describe_conditions(conditions: list[Condition], label) -> str:
    """A saved segment's filters in words: "Churn band: high; Expected 12-month value: at least 500"."""
    if not conditions:
        return "everyone"
    parts = []
    for condition in conditions:
        value = condition.value
        if condition.op == "in":
            text = ", ".join(str(v) for v in value)
        elif condition.op == "between":
            text = f"{value[0]} to {value[1]}"
        elif condition.op in ("is_true", "is_false"):
            text = "yes" if condition.op == "is_true" else "no"
        elif condition.op in ("is_null", "not_null"):
            text = "no value" if condition.op == "is_null" else "any value"
        else:
            text = f"{_OPERATOR_WORDS.get(condition.op, condition.op)} {value}"
        if condition.include_missing and condition.op not in ("is_null", "not_null"):
            text += " (or no value)"
        parts.append(f"{label(condition.column)}: {text}")
    return "; ".join(parts)


def last_export_file(directory: Path, segment: SegmentDefinition) -> Path | None:
    """The CSV the nightly run last exported for a saved segment, when there is one."""
    path = exports_dir(directory) / f"{segment.file_stem()}.csv"
    return path if path.exists() else None


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file (an export manifest); empty when it does not exist yet."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def steward_decisions(reader: SnapshotReader, directory: Path) -> pl.DataFrame:
    """The decisions stewards recorded from the dashboard (latest per pair), newest first, each marked
    ``applied`` when the identity run behind this snapshot already applied it (it is in the snapshot's
    identity.steward_decisions), else it waits for the next build."""
    from crm.identity.steward import load_decisions

    decisions = load_decisions(directory).reverse()
    applied: set[tuple] = set()
    if reader.has("identity.steward_decisions"):
        applied = set(
            reader.rows(
                "SELECT left_source, left_key, right_source, right_key, requested_at FROM identity.steward_decisions"
            )
        )
    return decisions.with_columns(
        pl.struct("left_source", "left_key", "right_source", "right_key", "requested_at")
        .map_elements(lambda d: tuple(d.values()) in applied, return_dtype=pl.Boolean)
        .alias("applied")
    )


def record_steward_decision(
    directory: Path, *, action: str, left: tuple[str, str], right: tuple[str, str], reason: str, decided_by: str
) -> dict[str, Any]:
    """Append a merge / keep-apart decision for the next identity run (and to the audit trail). The
    dashboard never writes the build warehouse: the nightly build holds it."""
    from crm.identity.steward import record_decision

    return record_decision(directory, action=action, left=left, right=right, reason=reason, decided_by=decided_by)


def split_record_key(record_key: str) -> tuple[str, str]:
    """'support_tickets:1044' -> ('support_tickets', '1044')."""
    source, _, key = record_key.partition(":")
    return source, key
