"""The app's read-only data layer: every number a page shows comes from a function here.

It reads only the published snapshot the pointer names (never the build warehouse, which the
nightly run holds as its one writer), opened ``read_only``. Values reach SQL as bound
parameters; the few identifiers that vary come from allow-lists. Functions return polars frames
(or plain values) and know nothing about Streamlit, so tests call them directly and compare with
their own SQL.

Access is enforced here, not by hiding widgets: every reader carries the signed-in viewer
(crm.security.roles.Viewer). Each function names the permission it needs and raises
AccessDenied without it; a rep's reader sees only their own book (row-level: other customers'
cards and books are refused); and a viewer without the ``unmask`` permission never receives a
clear email or phone from any function, downloads included.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from crm import audit
from crm.ingest.ledger import quarantine_reasons_sql, quarantine_samples_sql
from crm.security.roles import AccessDenied, Viewer
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
    "PII_COLUMNS",
    "AccessDenied",
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


PII_COLUMNS = frozenset(
    {
        "email",
        "phone",
        "phone_e164",
        "requester_email",
        "requester_phone",
        # a steward's pair of records, side by side
        "email_l",
        "email_r",
        "phone_l",
        "phone_r",
    }
)
# A column whose kind column says what it holds: the search's "found by" (matched / matched_kind) and
# the values identity resolution refused to link through (value / value_kind).
KIND_COLUMNS = {"matched": "matched_kind", "value": "value_kind"}
# An international number inside other text (identity's evidence: "same phone +447700900123 as ...").
_PHONE_IN_TEXT = r"\+[1-9][0-9]{2,10}([0-9]{4})\b"
_EMAIL_IN_TEXT = r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})"


def open_snapshot(snapshot: Snapshot) -> duckdb.DuckDBPyConnection:
    """The one read-only connection a process keeps per snapshot (readers for every viewer share it)."""
    return duckdb.connect(str(snapshot.path), read_only=True)


class SnapshotReader:
    """One snapshot as one viewer may see it. Each query runs on its own cursor of a shared read-only
    connection, so Streamlit's session threads can share it (a DuckDB connection is not safe
    across threads); frames leave it masked unless the viewer may see contact details."""

    def __init__(self, snapshot: Snapshot, viewer: Viewer, connection: duckdb.DuckDBPyConnection | None = None) -> None:
        if not isinstance(viewer, Viewer):
            raise AccessDenied("the data layer serves a signed-in viewer only")
        self.snapshot = snapshot
        self.viewer = viewer
        self._owns_connection = connection is None
        self._con = connection if connection is not None else open_snapshot(snapshot)

    def close(self) -> None:
        if self._owns_connection:
            self._con.close()

    def frame(self, sql: str, params: list[Any] | tuple = ()) -> pl.DataFrame:
        cursor = self._con.cursor()
        try:
            return protect(cursor.sql(sql, params=list(params)).pl(), self.viewer)
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

    def audit(self, action: str, target: str | None = None, **details: Any) -> None:
        audit.record(
            data_dir(),
            actor=self.viewer.name,
            role=self.viewer.role,
            action=action,
            target=target,
            details={"snapshot_id": self.snapshot.snapshot_id, **details},
        )


def protect(frame: pl.DataFrame, viewer: Viewer) -> pl.DataFrame:
    """Contact details masked unless the viewer has ``unmask`` (see :func:`mask_frame`)."""
    return frame if viewer.can("unmask") else mask_frame(frame)


def mask_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Phones and emails masked: the PII columns, a column whose kind column says it holds an email or
    a phone (the search's "found by", a guarded value), and any email address or international
    number inside other text (a marketing contact's source key is their address; identity's evidence
    names the shared phone)."""
    if frame.is_empty():
        return frame
    changes = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        column = pl.col(name)
        phone = column.str.replace(r"^.*(.{4})$", "******$1")
        email = column.str.replace_all(_EMAIL_IN_TEXT, "$1***@$2").str.replace_all(_PHONE_IN_TEXT, "******$1")
        kind = KIND_COLUMNS.get(name)
        if name in PII_COLUMNS and "phone" in name:
            changes.append(phone.alias(name))
        elif kind in frame.columns:
            changes.append(pl.when(pl.col(kind) == "phone").then(phone).otherwise(email).alias(name))
        else:
            changes.append(email.alias(name))
    return frame.with_columns(changes) if changes else frame


def requires(permission: str) -> Callable:
    """The data function refuses a reader whose viewer lacks ``permission``."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def guarded(reader: SnapshotReader, *args, **kwargs):
            reader.viewer.require(permission, function.__name__.replace("_", " "))
            return function(reader, *args, **kwargs)

        guarded.permission = permission
        return guarded

    return decorate


def _owner_filter(reader: SnapshotReader, alias: str = "c") -> tuple[str, list[Any]]:
    """Row-level scope: a rep sees only the customers they own."""
    if reader.viewer.own_book_only:
        return f" AND {alias}.owner_rep_id = ?", [reader.viewer.rep_id]
    return "", []


def _check_customer_access(reader: SnapshotReader, customer_id: str) -> None:
    if not reader.viewer.own_book_only:
        return
    owner = reader.rows("SELECT owner_rep_id FROM marts.customer_360 WHERE customer_id = ?", [customer_id])
    if owner and owner[0][0] != reader.viewer.rep_id:
        raise AccessDenied(f"customer {customer_id} is not in your book")


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


@requires("analytics")
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


def _horizon_days(reader: SnapshotReader) -> int:
    model = current_model(reader)
    return int(model["horizon_days"]) if model and model.get("horizon_days") else KPI_PERIOD_DAYS


@requires("customers")
def lapsed_after_days(reader: SnapshotReader) -> int | None:
    """Days without an order after which a customer counts as lapsed (twice the churn model's horizon);
    None before scores exist. What a customer card needs of :func:`risk_summary`."""
    return 2 * _horizon_days(reader) if reader.has_scores else None


@requires("analytics")
def risk_summary(reader: SnapshotReader) -> RiskSummary | None:
    if not reader.has_scores:
        return None
    horizon = _horizon_days(reader)
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


@requires("analytics")
def monthly_activity(reader: SnapshotReader) -> pl.DataFrame:
    """Revenue, ordering customers and orders per month, each month flagged when its data is partial."""
    return _with_partial_flag(reader.frame("SELECT * FROM serving.monthly_activity ORDER BY month"))


@requires("analytics")
def segment_sizes(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT coalesce(segment, 'Unscored') AS segment, count(*) AS customers, sum(monetary) AS revenue "
        "FROM marts.customer_rfm GROUP BY ALL ORDER BY customers DESC"
    )


TIERS = ("Bronze", "Silver", "Gold", "Platinum")


@requires("analytics")
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


@requires("customers")
def search_customers(reader: SnapshotReader, text: str, limit: int = 25, offset: int = 0) -> SearchPage:
    """Customers matching ``text`` in any identifier of any of their source records, best match first.

    A viewer who may not see contact details cannot search by them either (a hit would confirm that
    an address or number belongs to a customer): their search leaves emails and phones out. A rep
    finds only the customers of their own book.

    ``total`` is the true number of matching customers; ``rows`` the page from ``offset``.
    """
    query = SearchQuery.parse(text)
    if not reader.has(SEARCH_TABLE):
        return SearchPage(pl.DataFrame(), 0, offset)
    contacts = reader.viewer.can("unmask")
    if not contacts and not reader.has_column(SEARCH_TABLE, "haystack_no_contacts"):
        return SearchPage(pl.DataFrame(), 0, offset)  # a snapshot from before the search kept contacts apart
    hits, params = search_sql(query, contacts=contacts)
    owner, owner_params = _owner_filter(reader)
    frame = reader.frame(
        f"""
        WITH hits AS ({hits})
        SELECT count(*) OVER () AS total, c.customer_id, c.full_name, hits.matched, hits.matched_kind, c.email,
               c.phone, c.city,
               c.account_name, c.owner_rep_name, c.last_order_at
        FROM hits JOIN marts.customer_360 c ON c.customer_id = hits.customer_id
        WHERE true {owner}
        ORDER BY hits.score DESC, c.full_name, c.customer_id
        LIMIT ? OFFSET ?
        """,
        [*params, *owner_params, limit, offset],
    )
    if frame.height:
        total = int(frame["total"][0])
    else:
        total = (
            reader.value(
                f"SELECT count(*) FROM ({hits}) hits JOIN marts.customer_360 c ON c.customer_id = hits.customer_id "
                f"WHERE true {owner}",
                [*params, *owner_params],
            )
            if offset
            else 0
        )
    return SearchPage(frame.drop("total"), total, offset)


@requires("customers")
def customer_card(reader: SnapshotReader, customer_id: str) -> dict[str, Any] | None:
    """customer_360 with the golden record's provenance, RFM and (when built) scores, as one dict."""
    _check_customer_access(reader, customer_id)
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


@requires("customers")
def customer_records(reader: SnapshotReader, customer_id: str) -> pl.DataFrame:
    """The source records identity resolution joined into this customer, and why (rule, evidence)."""
    _check_customer_access(reader, customer_id)
    evidence = "match_evidence" if reader.has_column("identity.records", "match_evidence") else "NULL::VARCHAR"
    return reader.frame(
        f"SELECT source, source_key, first_name, last_name, email, phone_e164 AS phone, city, match_rule, "
        f"round(match_probability, 3) AS match_probability, {evidence} AS match_evidence "
        f"FROM identity.records WHERE customer_id = ? ORDER BY source, source_key",
        [customer_id],
    ).with_columns(pl.col("source").replace(SOURCE_NAMES))


SUSPECTS = "identity.suspected_duplicates"


@requires("customers")
def customer_suspects(reader: SnapshotReader, customer_id: str) -> pl.DataFrame | None:
    """Other customers this one may be the same person as (pairs just under the match threshold); a
    rep sees only those in their own book."""
    _check_customer_access(reader, customer_id)
    if not reader.has(SUSPECTS):
        return None
    owner, owner_params = _owner_filter(reader)
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
        WHERE p.other <> ? {owner}
        GROUP BY ALL ORDER BY match_probability DESC
        """,
        [customer_id, customer_id, customer_id, *owner_params],
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


@requires("customers")
def customer_timeline(
    reader: SnapshotReader, customer_id: str, limit: int = 200, include_sends: bool = False
) -> tuple[pl.DataFrame, int]:
    """Orders, marketing events (campaigns by name) and tickets on one time line, newest first, and how
    many marketing messages were sent or delivered (left off the line unless ``include_sends``)."""
    _check_customer_access(reader, customer_id)
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


@requires("analytics")
def rfm_grid(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT r_score, f_score, count(*) AS customers, sum(monetary) AS revenue "
        "FROM marts.customer_rfm GROUP BY ALL ORDER BY r_score, f_score"
    )


@requires("analytics")
def rfm_snapshot_dates(reader: SnapshotReader) -> list[date]:
    return [
        r[0]
        for r in reader.rows("SELECT DISTINCT snapshot_date FROM marts.customer_rfm_history ORDER BY snapshot_date")
    ]


NOT_YET = "Not yet a customer"
GONE = "No longer listed"


@requires("analytics")
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


@requires("analytics")
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


@requires("segments")
def filterable_columns(reader: SnapshotReader) -> dict[str, str]:
    """Columns a segment may filter on; contact details only for a viewer who may see them (their
    values would otherwise be listed as filter options)."""
    cursor = reader.cursor()
    try:
        columns = universe_columns(cursor)
    finally:
        cursor.close()
    if not reader.viewer.can("unmask"):
        columns = {name: kind for name, kind in columns.items() if name not in PII_COLUMNS}
    return columns


@requires("segments")
def distinct_values(reader: SnapshotReader, column: str, limit: int = 200) -> list[Any]:
    allowed = filterable_columns(reader)
    if column not in allowed:
        raise ValueError(f"unknown column {column!r}")
    cursor = reader.cursor()
    try:
        universe = _scoped_universe(reader, cursor)
        return [
            r[0]
            for r in cursor.execute(
                f'SELECT DISTINCT "{column}" FROM ({universe}) WHERE "{column}" IS NOT NULL ORDER BY 1 LIMIT ?', [limit]
            ).fetchall()
        ]
    finally:
        cursor.close()


@requires("segments")
def value_range(reader: SnapshotReader, column: str) -> tuple[Any, Any, int]:
    """(lowest value, highest value, customers without a value) of a filterable column (a rep: in
    their own book)."""
    allowed = filterable_columns(reader)
    if column not in allowed:
        raise ValueError(f"unknown column {column!r}")
    cursor = reader.cursor()
    try:
        universe = _scoped_universe(reader, cursor)
        return cursor.execute(
            f'SELECT min("{column}"), max("{column}"), count(*) - count("{column}") FROM ({universe})'
        ).fetchall()[0]
    finally:
        cursor.close()


@requires("segments")
def missing_count(reader: SnapshotReader, column: str) -> int:
    """Customers without a value in a filterable column (no score yet, never ordered, not given)."""
    return value_range(reader, column)[2]


@requires("segments")
def _scoped_universe(reader: SnapshotReader, cursor) -> str:
    universe = universe_sql(cursor)
    if reader.viewer.own_book_only:
        return f"SELECT * FROM ({universe}) WHERE owner_rep_id = {int(reader.viewer.rep_id)}"
    return universe


def _check_definition(reader: SnapshotReader, definition: SegmentDefinition) -> SegmentDefinition:
    """The definition as this viewer may run it: no filter on contact details without ``unmask`` (a
    count per value would reveal them), and a rep's segments stay inside their own book."""
    if not reader.viewer.can("unmask") and {c.column for c in definition.conditions} & PII_COLUMNS:
        raise AccessDenied(f"{reader.viewer.role} may not filter segments on contact details")
    if reader.viewer.own_book_only:
        own = Condition(column="owner_rep_id", op="in", value=[reader.viewer.rep_id])
        return definition.model_copy(update={"conditions": [*definition.conditions, own]})
    return definition


@requires("segments")
def segment_count(reader: SnapshotReader, definition: SegmentDefinition) -> tuple[int, int]:
    definition = _check_definition(reader, definition)
    cursor = reader.cursor()
    try:
        return count_segment(cursor, definition)
    finally:
        cursor.close()


@requires("segments")
def segment_rows(reader: SnapshotReader, definition: SegmentDefinition, limit: int | None = None) -> SegmentResult:
    """The segment's rows, masked unless the viewer may see contact details."""
    definition = _check_definition(reader, definition)
    cursor = reader.cursor()
    try:
        result = evaluate_segment(cursor, definition, limit=limit)
    finally:
        cursor.close()
    if reader.viewer.can("unmask"):
        return result
    return SegmentResult(mask_pii(result.rows), result.matched, result.excluded_without_consent)


# --- Churn & value ------------------------------------------------------------------------------


def current_model(reader: SnapshotReader) -> dict[str, Any] | None:
    if not reader.has(MODEL_REGISTRY):
        return None
    frame = reader.frame(f"SELECT * FROM {MODEL_REGISTRY} WHERE status = 'current' ORDER BY trained_at DESC LIMIT 1")
    return frame.row(0, named=True) if frame.height else None


@requires("analytics")
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


@requires("analytics")
def churn_calibration(reader: SnapshotReader) -> pl.DataFrame | None:
    return _model_table(reader, "ml.churn_calibration", "decile")


@requires("analytics")
def churn_drivers(reader: SnapshotReader, top: int = 10) -> pl.DataFrame | None:
    drivers = _model_table(reader, "ml.churn_drivers", "importance DESC")
    return drivers.head(top) if drivers is not None else None


@requires("analytics")
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


@requires("analytics")
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


@requires("analytics")
def campaigns(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame("SELECT * FROM marts.campaign_performance ORDER BY launched_at DESC NULLS LAST, campaign_id")


@requires("analytics")
def conversion_by_segment(reader: SnapshotReader) -> pl.DataFrame:
    """Per RFM segment *at the time of the send*: campaign sends and the share that converted."""
    return reader.frame("SELECT * FROM serving.conversion_by_segment ORDER BY sends DESC")


@requires("analytics")
def tickets_by_month(reader: SnapshotReader) -> pl.DataFrame:
    """Tickets, median resolution and satisfied share per month of creation, partial months flagged."""
    return _with_partial_flag(reader.frame("SELECT * FROM serving.tickets_by_month ORDER BY month"))


@requires("analytics")
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


@requires("my_book")
def reps(reader: SnapshotReader) -> pl.DataFrame:
    """Every rep with the size of their book as My book lists it (rows of rep_actions) and how many to
    act on; a rep sees only themselves."""
    own = " AND r.rep_id = ?" if reader.viewer.own_book_only else ""
    own_params = [reader.viewer.rep_id] if own else []
    if not reader.has(REP_ACTIONS):
        return reader.frame(
            "SELECT r.rep_id, r.rep_name, r.region, 0 AS in_book, 0 AS to_act_on FROM marts.rep_performance r "
            f"WHERE r.rep_name IS NOT NULL{own} ORDER BY r.rep_name",
            own_params,
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
        WHERE r.rep_name IS NOT NULL{own} ORDER BY r.rep_name
        """,
        [ACTIONABLE_FROM, *own_params],
    )


@requires("my_book")
def rep_book(reader: SnapshotReader, rep_id: str) -> pl.DataFrame | None:
    """The rep's customers ranked by value at stake, with what a call needs: phone, email, last order."""
    if reader.viewer.own_book_only and str(rep_id) != str(reader.viewer.rep_id):
        raise AccessDenied(f"the book of rep {rep_id} is not yours")
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


@requires("operations")
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


@requires("operations")
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


@requires("operations")
def quarantine_reasons(reader: SnapshotReader) -> pl.DataFrame:
    """Quarantined rows per entity and reason (values in the reason replaced, so reasons group)."""
    if reader.has("ops.quarantine_reasons"):  # snapshots carry the reasons, never the records
        return reader.frame("SELECT entity, reason, rows FROM ops.quarantine_reasons ORDER BY rows DESC")
    entities = _quarantine_entities(reader)
    if not entities:
        return pl.DataFrame(schema={"entity": pl.String, "reason": pl.String, "rows": pl.Int64})
    return reader.frame(quarantine_reasons_sql(entities))


QUARANTINE_SAMPLES = "ops.quarantine_samples"


@requires("operations")
def quarantine_samples(reader: SnapshotReader, per_reason: int = 3) -> pl.DataFrame:
    """A few quarantined rows of every (entity, reason): where they are in the source (file:line or
    table:key), the field and the reason, so a person can open the file and look.

    A snapshot carries these pointers (ops.quarantine_samples, contact details in the reason masked),
    never the quarantined records; a warehouse's own quarantine tables are read directly."""
    schema = {"entity": pl.String, "location": pl.String, "field": pl.String, "reason": pl.String}
    if reader.has(QUARANTINE_SAMPLES):
        return reader.frame(
            f"SELECT entity, location, field, reason FROM {QUARANTINE_SAMPLES} "
            "QUALIFY row_number() OVER (PARTITION BY entity, grouped ORDER BY location) <= ? "
            "ORDER BY entity, grouped, location",
            [per_reason],
        ).cast(schema)
    entities = [
        e
        for e in _quarantine_entities(reader)
        if {"_source_location", "_reason"} <= reader.columns.get(f"quarantine.{e}", frozenset())
    ]
    if not entities:
        return pl.DataFrame(schema=schema)
    return reader.frame(
        f"SELECT entity, location, field, reason FROM ({quarantine_samples_sql(reader.columns, entities)}) "
        "WHERE sample <= ? ORDER BY entity, grouped, location",
        [per_reason],
    )


@requires("operations")
def check_results(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT asset_key, check_name, passed, severity, description, evaluated_at "
        "FROM ops.asset_check_results ORDER BY passed, severity, asset_key, check_name"
    )


@requires("operations")
def missing_capabilities(reader: SnapshotReader) -> pl.DataFrame | None:
    """What the configured sources cannot tell (crm/coverage.py): capability and what its absence costs."""
    if not reader.has("ops.source_coverage"):
        return None
    return reader.frame(
        "SELECT capability, missing_cost FROM ops.source_coverage WHERE NOT available ORDER BY capability"
    )


@requires("operations")
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


@requires("operations")
def scoring_notes(reader: SnapshotReader) -> pl.DataFrame | None:
    """What the scores left out or fell back on (crm/scoring), e.g. features of an absent system."""
    if not reader.has("ml.scoring_notes"):
        return None
    return reader.frame("SELECT component, note FROM ml.scoring_notes ORDER BY component")


@requires("operations")
def identity_summary(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("serving.identity_summary"):
        return None
    return reader.frame("SELECT * FROM serving.identity_summary ORDER BY source")


@requires("operations")
def identity_cluster_sizes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("serving.identity_cluster_sizes"):
        return None
    return reader.frame("SELECT * FROM serving.identity_cluster_sizes ORDER BY records")


@requires("operations")
def identity_largest_clusters(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("serving.identity_largest_clusters"):
        return None
    return reader.frame(
        "SELECT l.*, c.full_name FROM serving.identity_largest_clusters l "
        "LEFT JOIN marts.customer_360 c ON c.customer_id = l.customer_id ORDER BY l.records DESC, l.customer_id"
    )


@requires("operations")
def guarded_values(reader: SnapshotReader) -> pl.DataFrame | None:
    """Values shared by so many records that identity resolution refused to link through them (an
    email or a phone among them masked like any contact detail)."""
    if not reader.has("identity.guarded_values"):
        return None
    return reader.frame("SELECT value_kind, value, records, reason FROM identity.guarded_values ORDER BY records DESC")


@requires("operations")
def identity_changes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("identity.customer_id_changes"):
        return None
    return reader.frame("SELECT * FROM identity.customer_id_changes ORDER BY changed_at DESC LIMIT 200")


# --- Steward review -----------------------------------------------------------------------------


@requires("operations")
def suspected_duplicates_count(reader: SnapshotReader) -> int | None:
    if not reader.has(SUSPECTS):
        return None
    return reader.value(f"SELECT count(*) FROM {SUSPECTS}")


@requires("steward")
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


def may_export_contacts(viewer: Viewer, definition: SegmentDefinition) -> bool:
    """Clear contact details in a download: with ``unmask``, or ``export_contacts`` for a channel
    export (which leaves out everyone without consent for that channel)."""
    return viewer.can("unmask") or (viewer.can("export_contacts") and definition.channel is not None)


@requires("segments")
def export_bytes(
    reader: SnapshotReader, definition: SegmentDefinition, file_format: str, *, include_contacts: bool = False
) -> bytes:
    """The whole segment (consent applied for its channel) as a file, recorded in the audit trail
    with its definition, snapshot, row count and SHA-256. Contact details are masked unless asked
    for and allowed (:func:`may_export_contacts`)."""
    return _export(reader, definition, file_format, include_contacts=include_contacts)[0]


def _export(
    reader: SnapshotReader, definition: SegmentDefinition, file_format: str, *, include_contacts: bool
) -> tuple[bytes, SegmentResult]:
    if include_contacts and not may_export_contacts(reader.viewer, definition):
        raise AccessDenied(
            f"{reader.viewer.role} may not export contact details"
            + ("" if definition.channel else ": only a channel export (email or sms) carries them")
        )
    scoped = _check_definition(reader, definition)
    cursor = reader.cursor()
    try:
        result = evaluate_segment(cursor, scoped)
    finally:
        cursor.close()
    rows = result.rows if include_contacts else mask_pii(result.rows)
    writer = {"CSV": to_csv_bytes, "Parquet": to_parquet_bytes, "Excel": to_excel_bytes}[file_format]
    payload = writer(rows)
    reader.audit(
        "export",
        target=definition.name,
        format=file_format,
        definition=definition.model_dump(mode="json"),
        rows=rows.num_rows,
        sha256=hashlib.sha256(payload).hexdigest(),
        contact_details=include_contacts,
    )
    return payload, result


@requires("segments")
def export_download(
    reader: SnapshotReader,
    definition: SegmentDefinition,
    file_format: str,
    *,
    include_contacts: bool = False,
    data_dir: Path,
    file_name: str,
    snapshot_id: str,
) -> bytes:
    """A download's bytes (as :func:`export_bytes`: access checked, audited), and its manifest (rows,
    consent exclusions, contact details in full or masked) recorded under exports/downloads/."""
    payload, result = _export(reader, definition, file_format, include_contacts=include_contacts)
    record_download(
        data_dir,
        definition,
        result,
        payload,
        file_name=file_name,
        snapshot_id=snapshot_id,
        contact_details=include_contacts,
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


@requires("my_book")
def rep_book_csv(reader: SnapshotReader, rep_id: str, *, include_contacts: bool = False) -> bytes:
    """A rep's customers to act on (something at stake), ready to call: rank, customer, phone, email,
    action, why, value. Phones and emails masked unless asked for and the viewer may see them;
    recorded in the audit trail like every export."""
    if include_contacts:
        reader.viewer.require("unmask", "download contact details")
    book = rep_book(reader, rep_id)
    rows = pl.DataFrame()
    if book is not None:
        rows = book.filter(pl.col("actionable")).select(
            pl.col("rank_in_book").alias("rank"),
            pl.col("customer_id"),
            pl.col("customer_name").alias("customer"),
            "phone",
            "email",
            pl.col("next_action").alias("action"),
            pl.col("reason").alias("why"),
            pl.col("value_at_stake").round(0).cast(pl.Int64),
            (pl.col("churn_probability") * 100).round(0).cast(pl.Int64).alias("churn_risk_pct"),
            pl.col("last_order_at"),
            pl.col("clv_12m").round(0).cast(pl.Int64),
            "loyalty_tier",
        )
    if not include_contacts:
        rows = mask_frame(rows)
    payload = to_csv_bytes(rows.to_arrow())
    reader.audit(
        "export",
        target=f"rep book {rep_id}",
        format="CSV",
        rows=rows.height,
        sha256=hashlib.sha256(payload).hexdigest(),
        contact_details=include_contacts,
    )
    return payload


def record_unmask(reader: SnapshotReader, page: str) -> None:
    """Someone with ``unmask`` chose to see contact details: that choice is audited."""
    reader.viewer.require("unmask", "see contact details")
    reader.audit("unmask", target=page)


@requires("audit")
def audit_events(reader: SnapshotReader, limit: int = 1000) -> pl.DataFrame:
    """The audit trail (outside the snapshots; it survives rebuilds), newest first."""
    rows = audit.events(data_dir(), limit=limit)
    return pl.DataFrame(
        [
            {**{k: e.get(k) for k in ("at", "actor", "role", "action", "target")}, "details": _json(e.get("details"))}
            for e in rows
        ],
        schema={n: pl.String for n in ("at", "actor", "role", "action", "target", "details")},
    )


@requires("audit")
def audit_csv(reader: SnapshotReader) -> bytes:
    """The whole audit trail as CSV; exporting it is itself recorded."""
    events = audit_events(reader, limit=None)
    payload = to_csv_bytes(events.to_arrow())
    reader.audit(
        "export",
        target="audit trail",
        format="CSV",
        rows=events.height,
        sha256=hashlib.sha256(payload).hexdigest(),
        contact_details=False,
    )
    return payload


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str, sort_keys=True)


@requires("segments")
def last_export_csv(reader: SnapshotReader, directory: Path, segment: SegmentDefinition) -> bytes | None:
    """The CSV the nightly run last exported for a saved segment, as this viewer may have it: its
    emails and phones masked unless they may export them (:func:`may_export_contacts`), and the
    download recorded in the audit trail. The nightly file covers every customer: not for a viewer
    who sees only their own book."""
    if reader.viewer.own_book_only:
        raise AccessDenied("a saved segment's nightly export covers customers outside your book")
    path = last_export_file(directory, segment)
    if path is None:
        return None
    payload = path.read_bytes()
    manifest = read_json(exports_dir(directory) / f"{segment.file_stem()}.manifest.json")
    contacts = manifest.get("contact_details") != "masked"
    if contacts and not may_export_contacts(reader.viewer, segment):
        import io

        frame = pl.read_csv(io.BytesIO(payload), infer_schema=False)
        payload = to_csv_bytes(mask_frame(frame).to_arrow())
        contacts = False
    reader.audit(
        "export",
        target=segment.name,
        format="CSV",
        source="nightly export",
        rows=manifest.get("row_count"),
        sha256=hashlib.sha256(payload).hexdigest(),
        contact_details=contacts,
    )
    return payload


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file (an export manifest); empty when it does not exist yet."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


@requires("steward")
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


@requires("steward")
def record_steward_decision(
    reader: SnapshotReader, directory: Path, *, action: str, left: tuple[str, str], right: tuple[str, str], reason: str
) -> dict[str, Any]:
    """Append a merge / keep-apart decision for the next identity run, and to the audit trail under
    the signed-in viewer's name and role. The dashboard never writes the build warehouse: the
    nightly build holds it."""
    from crm.identity.steward import record_decision

    return record_decision(
        directory,
        action=action,
        left=left,
        right=right,
        reason=reason,
        decided_by=reader.viewer.name,
        role=reader.viewer.role,
    )


def split_record_key(record_key: str) -> tuple[str, str]:
    """'support_tickets:shop:1044' -> ('support_tickets', 'shop:1044'): the source, and the rest of the
    record key (the identity step finds the record by source + ':' + key)."""
    source, _, key = record_key.partition(":")
    return source, key
