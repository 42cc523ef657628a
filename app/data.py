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
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from crm import audit
from crm.ingest.ledger import quarantine_reasons_sql
from crm.security.roles import AccessDenied, Viewer
from crm.serving.aggregates import KPI_PERIOD_DAYS
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


PII_COLUMNS = frozenset({"email", "phone", "phone_e164", "requester_email", "requester_phone"})
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
    """Phones and emails masked: the PII columns, and any email address inside other text (a
    marketing contact's source key is their address)."""
    if frame.is_empty():
        return frame
    changes = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        column = pl.col(name)
        if name in PII_COLUMNS and "phone" in name:
            changes.append(column.str.replace(r"^.*(.{4})$", "******$1").alias(name))
        else:
            changes.append(column.str.replace_all(_EMAIL_IN_TEXT, "$1***@$2").alias(name))
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
    kpis = [
        Kpi("Active customers", active, active_before, "count"),
        Kpi("Revenue", revenue, revenue_before, "money"),
        Kpi(
            "Average order value",
            revenue / orders if orders else None,
            revenue_before / orders_before if orders_before else None,
            "money",
        ),
    ]
    if reader.has_scores:
        high_share, clv = reader.rows(
            f"SELECT avg(CASE WHEN churn_band = 'high' THEN 1.0 ELSE 0.0 END), sum(clv_12m) FROM {SCORES}"
        )[0]
        kpis += [
            Kpi("Share at high churn risk", high_share, None, "share"),
            Kpi("Expected 12-month value", clv, None, "money"),
        ]
    return kpis


@requires("analytics")
def monthly_activity(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame("SELECT * FROM serving.monthly_activity ORDER BY month")


@requires("analytics")
def segment_sizes(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT coalesce(segment, 'Unscored') AS segment, count(*) AS customers, sum(monetary) AS revenue "
        "FROM marts.customer_rfm GROUP BY ALL ORDER BY customers DESC"
    )


@requires("analytics")
def tier_sizes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has_scores:
        return None
    return reader.frame(
        f"SELECT loyalty_tier, count(*) AS customers, sum(benefits_yearly_cost) AS benefits_yearly_cost "
        f"FROM {SCORES} GROUP BY loyalty_tier "
        f"ORDER BY list_position(['Bronze', 'Silver', 'Gold', 'Platinum'], loyalty_tier)"
    )


# --- Customers ----------------------------------------------------------------------------------

_DIGITS = re.compile(r"\D+")


@requires("customers")
def search_customers(reader: SnapshotReader, text: str, limit: int = 25) -> pl.DataFrame:
    """Customers whose id, name, email or phone matches ``text`` (case-insensitive); an exact id first.

    Reads serving.customer_search (built when the snapshot is published), so the search is one
    scan of short lower-cased strings. Digits match phones only when the text has no letters
    (a customer id such as C000123 is not a phone number).
    """
    text = text.strip()
    digits = _DIGITS.sub("", text)
    # A viewer who may not see contact details cannot search by them either: a hit would confirm
    # that an address or number belongs to a customer.
    contacts = reader.viewer.can("unmask")
    phone_like = contacts and len(digits) >= 4 and not any(ch.isalpha() for ch in text)
    pattern = "%" + _escape_like(text.lower()) + "%"
    owner, owner_params = _owner_filter(reader)
    return reader.frame(
        f"""
        WITH hits AS (
            SELECT customer_id FROM serving.customer_search
            WHERE ? <> '' AND (customer_id = ? OR name_lower LIKE ? ESCAPE '\\'
                               OR (? AND email_lower LIKE ? ESCAPE '\\') OR (? AND phone_digits LIKE ?))
            LIMIT 1000
        )
        SELECT c.customer_id, c.full_name, c.email, c.phone, c.city, c.segment, c.owner_rep_name
        FROM marts.customer_360 c JOIN hits ON hits.customer_id = c.customer_id
        WHERE true {owner}
        ORDER BY c.customer_id <> ?, c.full_name, c.customer_id
        LIMIT ?
        """,
        [text, text, pattern, contacts, pattern, phone_like, f"%{digits}%", *owner_params, text, limit],
    )


def _escape_like(text: str) -> str:
    """``%`` and ``_`` typed into the search box are literal characters, not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


@requires("customers")
def customer_records(reader: SnapshotReader, customer_id: str) -> pl.DataFrame:
    """The source records identity resolution joined into this customer, and by which rule."""
    _check_customer_access(reader, customer_id)
    return reader.frame(
        "SELECT source, source_key, first_name, last_name, email, phone_e164 AS phone, city, match_rule, "
        "round(match_probability, 3) AS match_probability FROM identity.records WHERE customer_id = ? "
        "ORDER BY source, source_key",
        [customer_id],
    )


TIMELINE_SOURCES = (
    (
        "SELECT order_date AS happened_at, 'order' AS kind, status AS what, "
        "'order ' || order_id || ' · ' || coalesce(channel, '') AS detail, total_amount AS amount "
        "FROM marts.orders WHERE customer_id = ?"
    ),
    (
        "SELECT occurred_at AS happened_at, 'marketing' AS kind, event_type AS what, "
        "'campaign ' || coalesce(campaign_id, '-') AS detail, nullif(conversion_value, 0) AS amount "
        "FROM marts.marketing_events WHERE customer_id = ?"
    ),
    (
        "SELECT created_at AS happened_at, 'ticket' AS kind, status AS what, "
        "coalesce(subject, '') || ' · ' || coalesce(priority, '') || coalesce(' · rated ' || satisfaction_score, '') "
        "AS detail, NULL::DOUBLE AS amount FROM marts.support_tickets WHERE customer_id = ?"
    ),
)


@requires("customers")
def customer_timeline(reader: SnapshotReader, customer_id: str, limit: int = 200) -> pl.DataFrame:
    """Orders, marketing events and tickets on one time line, newest first.

    Three queries, merged here: each is a point lookup on the snapshot's customer_id index, which
    DuckDB does not use once a UNION feeds a top-N (it scans 50M events instead).
    """
    _check_customer_access(reader, customer_id)
    parts = [
        reader.frame(sql, [customer_id]).with_columns(
            pl.col("happened_at").cast(pl.Datetime("us")), pl.col("amount").cast(pl.Float64)
        )
        for sql in TIMELINE_SOURCES
    ]
    return pl.concat(parts).sort("happened_at", descending=True, nulls_last=True).head(limit)


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


@requires("analytics")
def segment_migration(reader: SnapshotReader, from_date: date, to_date: date) -> pl.DataFrame:
    """Customers per (segment at from_date, segment at to_date); new customers come from 'New'."""
    return reader.frame(
        """
        WITH a AS (SELECT customer_id, segment FROM marts.customer_rfm_history WHERE snapshot_date = ?),
             b AS (SELECT customer_id, segment FROM marts.customer_rfm_history WHERE snapshot_date = ?)
        SELECT coalesce(a.segment, '(not yet a customer)') AS from_segment,
               coalesce(b.segment, '(gone)') AS to_segment, count(*) AS customers
        FROM a FULL OUTER JOIN b ON a.customer_id = b.customer_id
        GROUP BY ALL ORDER BY customers DESC
        """,
        [from_date, to_date],
    )


@requires("analytics")
def cohort_retention(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        "SELECT cohort_month, months_since_acquisition, cohort_customers, active_customers, active_share "
        "FROM marts.cohort_retention ORDER BY cohort_month, months_since_acquisition"
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
def value_range(reader: SnapshotReader, column: str) -> tuple[Any, Any]:
    allowed = filterable_columns(reader)
    if column not in allowed:
        raise ValueError(f"unknown column {column!r}")
    cursor = reader.cursor()
    try:
        universe = _scoped_universe(reader, cursor)
        return cursor.execute(f'SELECT min("{column}"), max("{column}") FROM ({universe})').fetchall()[0]
    finally:
        cursor.close()


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
def high_value_at_risk(reader: SnapshotReader, limit: int = 50) -> pl.DataFrame:
    return reader.frame(
        f"""
        SELECT s.customer_id, c.full_name, c.owner_rep_name, s.clv_12m, s.churn_probability, s.loyalty_tier,
               s.churn_reasons, s.next_action
        FROM {SCORES} s JOIN marts.customer_360 c ON c.customer_id = s.customer_id
        WHERE s.churn_band = 'high'
        ORDER BY s.clv_12m DESC NULLS LAST, s.customer_id LIMIT ?
        """,
        [limit],
    )


@requires("analytics")
def clv_histogram(reader: SnapshotReader, bins: int = 40) -> pl.DataFrame:
    """Customers per CLV bin and tier; the top 1% share the last bin, so outliers do not flatten the rest."""
    return reader.frame(
        f"""
        WITH top AS (SELECT greatest(quantile_cont(clv_12m, 0.99), 1e-9) AS value FROM {SCORES}),
        binned AS (
            SELECT loyalty_tier, least(floor(greatest(clv_12m, 0) / (top.value / ?)), ? - 1) AS bin,
                   top.value / ? AS width
            FROM {SCORES}, top WHERE clv_12m IS NOT NULL
        )
        SELECT loyalty_tier, bin * width AS clv_from, (bin + 1) * width AS clv_to, count(*) AS customers
        FROM binned GROUP BY ALL ORDER BY clv_from
        """,
        [bins, bins, bins],
    )


# --- Campaigns & support ------------------------------------------------------------------------

FUNNEL_STEPS = ("customers_sent", "customers_delivered", "customers_opened", "customers_clicked", "customers_converted")


@requires("analytics")
def campaigns(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame("SELECT * FROM marts.campaign_performance ORDER BY launched_at DESC NULLS LAST, campaign_id")


@requires("analytics")
def conversion_by_segment(reader: SnapshotReader) -> pl.DataFrame:
    """Per RFM segment: customers sent something, and the share of them who converted."""
    return reader.frame("SELECT * FROM serving.conversion_by_segment ORDER BY customers_sent DESC")


@requires("analytics")
def tickets_by_month(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame(
        """
        SELECT date_trunc('month', created_on)::DATE AS month, count(*) AS tickets,
               median(resolution_hours) AS median_resolution_hours,
               count(*) FILTER (WHERE satisfaction_score = 'good')
                   / nullif(count(*) FILTER (WHERE satisfaction_score IN ('good', 'bad')), 0) AS satisfied_share
        FROM marts.support_tickets GROUP BY ALL ORDER BY month
        """
    )


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


@requires("my_book")
def reps(reader: SnapshotReader) -> pl.DataFrame:
    own = " AND rep_id = ?" if reader.viewer.own_book_only else ""
    return reader.frame(
        f"SELECT rep_id, rep_name, region, book_size FROM marts.rep_performance "
        f"WHERE rep_name IS NOT NULL{own} ORDER BY rep_name",
        [reader.viewer.rep_id] if own else [],
    )


@requires("my_book")
def rep_book(reader: SnapshotReader, rep_id: str) -> pl.DataFrame | None:
    if reader.viewer.own_book_only and str(rep_id) != str(reader.viewer.rep_id):
        raise AccessDenied(f"the book of rep {rep_id} is not yours")
    if not reader.has(REP_ACTIONS):
        return None
    return reader.frame(
        f"SELECT rank_in_book, customer_id, customer_name, next_action, reason, value_at_stake, churn_probability, "
        f"clv_12m, loyalty_tier, action_priority FROM {REP_ACTIONS} WHERE rep_id = ? ORDER BY rank_in_book",
        [rep_id],
    )


# --- Data health --------------------------------------------------------------------------------


@requires("operations")
def recent_runs(reader: SnapshotReader) -> pl.DataFrame:
    return reader.frame("SELECT * FROM ops.recent_runs ORDER BY started_at DESC NULLS LAST")


@requires("operations")
def last_successful_run(reader: SnapshotReader) -> dict[str, Any] | None:
    """The newest finished successful run, else the run that published this snapshot (it succeeded up
    to publishing, which is its last step), else None."""
    runs = reader.frame(
        "SELECT *, coalesce(ended_at, started_at) AS finished_or_started_at FROM ops.recent_runs "
        "WHERE status = 'SUCCESS' OR run_id = ? ORDER BY status = 'SUCCESS' DESC, finished_or_started_at DESC LIMIT 1",
        [reader.snapshot.run_id],
    )
    return runs.row(0, named=True) if runs.height else None


@requires("operations")
def source_freshness(reader: SnapshotReader) -> pl.DataFrame | None:
    """Per source entity: newest day loaded and rows read = raw + quarantine (None before any ingestion)."""
    if not reader.has("ops.ingest_reconciliation"):
        return None
    return reader.frame(
        "SELECT entity, last_partition, last_loaded_at, rows_read, rows_in_raw, rows_in_quarantine, "
        "quarantine_share, reconciled FROM ops.ingest_reconciliation ORDER BY entity"
    )


@requires("operations")
def quarantine_reasons(reader: SnapshotReader) -> pl.DataFrame:
    """Quarantined rows per entity and reason (values in the reason replaced, so reasons group)."""
    if reader.has("ops.quarantine_reasons"):  # snapshots carry the reasons, never the records
        return reader.frame("SELECT entity, reason, rows FROM ops.quarantine_reasons ORDER BY rows DESC")
    entities = sorted(t.split(".", 1)[1] for t in reader.tables if t.startswith("quarantine."))
    if not entities:
        return pl.DataFrame(schema={"entity": pl.String, "reason": pl.String, "rows": pl.Int64})
    return reader.frame(quarantine_reasons_sql(entities))


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
def identity_changes(reader: SnapshotReader) -> pl.DataFrame | None:
    if not reader.has("identity.customer_id_changes"):
        return None
    return reader.frame("SELECT * FROM identity.customer_id_changes ORDER BY changed_at DESC LIMIT 200")


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
    if include_contacts and not may_export_contacts(reader.viewer, definition):
        raise AccessDenied(
            f"{reader.viewer.role} may not export contact details"
            + ("" if definition.channel else ": only a channel export (email or sms) carries them")
        )
    scoped = _check_definition(reader, definition)
    cursor = reader.cursor()
    try:
        rows = evaluate_segment(cursor, scoped).rows
    finally:
        cursor.close()
    if not include_contacts:
        rows = mask_pii(rows)
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
    return payload


@requires("my_book")
def rep_book_csv(reader: SnapshotReader, rep_id: str) -> bytes:
    """A rep's action list as CSV, recorded in the audit trail like every export."""
    book = rep_book(reader, rep_id)
    payload = to_csv_bytes((book if book is not None else pl.DataFrame()).to_arrow())
    reader.audit(
        "export",
        target=f"rep book {rep_id}",
        format="CSV",
        rows=0 if book is None else book.height,
        sha256=hashlib.sha256(payload).hexdigest(),
        contact_details=False,
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


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file (an export manifest); empty when it does not exist yet."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
