"""Streamlit glue shared by the pages: the viewer, the cached reader, cached queries, empty states,
PII masking, tables with human headers, a month-range control and the note under a chart with
partial months.

The snapshot's connection is cached per snapshot id, so a newly published snapshot is picked up
on the next rerun (the pointer is read on every rerun; it is one small file) while a page that is
rendering keeps the snapshot it started with. Every reader carries the signed-in viewer, and
cached answers are keyed by what the viewer may see, so one role never gets another's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import polars as pl
import streamlit as st

from app import data, glossary, login
from app.format import change, kpi_value
from crm.security.roles import AccessDenied, Viewer
from crm.serving.snapshots import Snapshot, SnapshotError

QUERY_TTL_SECONDS = 600
SHOW_PII_KEY = "show_pii"
MISSING = "–"


@st.cache_resource(max_entries=3, show_spinner=False)
def _connection(snapshot_id: str, _snapshot: Snapshot):
    return data.open_snapshot(_snapshot)


def _reader(snapshot_id: str, _snapshot: Snapshot) -> data.SnapshotReader:
    return data.SnapshotReader(_snapshot, current_viewer(), connection=_connection(snapshot_id, _snapshot))


def current_viewer() -> Viewer:
    """The signed-in viewer (the app's entry point signs people in before any page runs)."""
    viewer = login.current_viewer()
    if viewer is None:
        st.stop()
    return viewer


def require_permission(permission: str, what: str = "") -> Viewer:
    """For a page that needs one permission (e.g. "steward"): a plain refusal otherwise."""
    viewer = current_viewer()
    if not viewer.can(permission):
        st.error(f"Your role ({viewer.role}) cannot open this page{': ' + what if what else ''}.")
        st.stop()
    return viewer


def current_snapshot() -> Snapshot | None:
    try:
        return data.find_snapshot()
    except SnapshotError as exc:
        st.error(f"The published data cannot be read: {exc}")
        st.stop()


def reader() -> data.SnapshotReader:
    """The current snapshot's reader; shows the empty state and stops the page when there is none."""
    snapshot = current_snapshot()
    if snapshot is None:
        st.info(data.NO_SNAPSHOT)
        st.stop()
    return _reader(snapshot.snapshot_id, snapshot)


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False, max_entries=500)
def _cached(snapshot_id: str, scope: tuple, name: str, args: tuple, _snapshot: Snapshot) -> Any:
    return getattr(data, name)(_reader(snapshot_id, _snapshot), *args)


def query(function: Callable, *args) -> Any:
    """``function(reader, *args)`` from app.data, cached per snapshot, viewer scope and arguments; a
    refusal of the data layer becomes a plain message and stops the page."""
    current = reader()
    try:
        return _cached(
            current.snapshot.snapshot_id, current.viewer.cache_key, function.__name__, tuple(args), current.snapshot
        )
    except AccessDenied as exc:
        st.error(str(exc))
        st.stop()


def call(function: Callable, *args, **kwargs) -> Any:
    """``function(*args)`` from app.data, uncached; a refusal of the data layer becomes a plain message."""
    try:
        return function(*args, **kwargs)
    except AccessDenied as exc:
        st.error(str(exc))
        st.stop()


def require_scores() -> None:
    if not reader().has_scores:
        st.info(data.NO_SCORES)
        st.stop()


def show_pii() -> bool:
    """Contact details in clear: only for a viewer with the ``unmask`` permission who switched them on."""
    viewer = login.current_viewer()
    return viewer is not None and viewer.can("unmask") and bool(st.session_state.get(SHOW_PII_KEY, False))


def masked(frame: pl.DataFrame) -> pl.DataFrame:
    """Emails and phones masked unless the viewer may see them and switched them on in the sidebar
    (the data layer already masks everything for a viewer without the permission)."""
    return frame if show_pii() else data.mask_frame(frame)


def masked_text(text: str | None) -> str | None:
    """Free text (identity's evidence) with the emails and phones in it masked, as :func:`masked` does."""
    if text is None:
        return None
    return masked(pl.DataFrame({"text": [text]}, schema={"text": pl.String}))["text"][0]


def masked_record(record: dict[str, Any]) -> dict[str, Any]:
    contact = {name: [record.get(name)] for name in ("email", "phone")}
    return {**record, **masked(pl.DataFrame(contact, schema={name: pl.String for name in contact})).row(0, named=True)}


@st.cache_resource(max_entries=3, show_spinner=False)
def _chart_specs(snapshot_id: str) -> dict:
    return {}


def _fingerprint(value: Any) -> Any:
    if isinstance(value, pl.DataFrame):
        return (value.height, tuple(value.columns), int(value.hash_rows().sum()) if value.height else 0)
    return value


def chart(target: Any, build: Callable[[], Any], *depends_on: Any) -> None:
    """Draw an Altair chart, building its Vega-Lite spec once per snapshot, call site and data.

    Building and validating a chart costs tens of milliseconds each time a page runs; the spec of the
    same chart over the same rows is the same, so it is kept (per snapshot) and only sent again.
    ``depends_on``: every value the chart is drawn from (frames, titles).
    """
    specs = _chart_specs(reader().snapshot.snapshot_id)
    code = build.__code__
    key = (code.co_filename, code.co_firstlineno, *(_fingerprint(v) for v in depends_on))
    spec = specs.get(key)
    if spec is None:
        if len(specs) > 500:
            specs.clear()
        spec = specs[key] = build().to_dict()
    target.vega_lite_chart(spec=spec, width="stretch")


def metric_row(kpis: list[data.Kpi]) -> None:
    for column, kpi in zip(st.columns(len(kpis)), kpis, strict=True):
        column.metric(kpi.label, kpi_value(kpi.current, kpi.kind), change(kpi.change), help=kpi.definition or None)


def table(
    frame: pl.DataFrame,
    *,
    column_config: dict[str, Any] | None = None,
    hide: tuple[str, ...] = (),
    **kwargs,
) -> Any:
    """st.dataframe with a person's column names (and each column's definition on hover), "–" for a
    missing value, and internal columns left out."""
    config: dict[str, Any] = {name: None for name in hide if name in frame.columns}
    for name in frame.columns:
        if name in hide:
            continue
        config[name] = (column_config or {}).get(name) or st.column_config.Column(
            glossary.label(name), help=glossary.describe(name)
        )
    return st.dataframe(frame, hide_index=True, column_config=config, placeholder=MISSING, **kwargs)


def money_column(name: str, *, digits: int = 0) -> Any:
    return st.column_config.NumberColumn(
        glossary.label(name), help=glossary.describe(name), format=f"£%,.{digits}f" if digits else "£%,d"
    )


def share_column(name: str) -> Any:
    return st.column_config.ProgressColumn(
        glossary.label(name), help=glossary.describe(name), min_value=0.0, max_value=1.0, format="percent"
    )


def month_range(frame: pl.DataFrame, key: str, column: str = "month", default_months: int = 24) -> pl.DataFrame:
    """A from–to month control over a monthly frame; returns the months chosen (the last two years by default)."""
    months = frame[column].to_list()
    if len(months) < 3:
        return frame
    labels = [f"{m:%b %Y}" for m in months]
    start = labels[max(0, len(labels) - default_months)]
    first, last = st.select_slider("Months shown", options=labels, value=(start, labels[-1]), key=key)
    chosen = months[labels.index(first)], months[labels.index(last)]
    return frame.filter(pl.col(column).is_between(*chosen))


def partial_note(frame: pl.DataFrame) -> str | None:
    """The caption under a monthly chart that names its partial months and what they hold."""
    partial = frame.filter(pl.col("is_partial"))
    if partial.height == 0:
        return None
    spans = [
        f"{row['month']:%b %Y} (only {row['covered_from']:%d %b}–{row['covered_to']:%d %b})"
        for row in partial.iter_rows(named=True)
    ]
    return (
        "Lighter, outlined bars and hollow points are partial months: "
        + "; ".join(spans)
        + ". Compare them with full months only with that in mind."
    )


def plain_date(value: date | None) -> str:
    return f"{value:%d %b %Y}" if value else MISSING
