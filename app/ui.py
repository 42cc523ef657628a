"""Streamlit glue shared by the pages: the cached reader, cached queries, empty states, PII masking,
tables with human headers, charts that mark partial months, and the colours every page shares.

The reader is cached per snapshot id, so a newly published snapshot is picked up on the next
rerun (the pointer is read on every rerun; it is one small file) while a page that is rendering
keeps the snapshot it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from app import data, glossary
from app.format import change, count, kpi_value
from crm.serving.snapshots import Snapshot, SnapshotError

QUERY_TTL_SECONDS = 600
SHOW_PII_KEY = "show_pii"
MISSING = "–"

# One colour per loyalty tier and per churn band on every page (Gold is gold, high risk is red).
TIER_COLOURS = {"Bronze": "#a5672e", "Silver": "#9aa4ad", "Gold": "#d4a62a", "Platinum": "#4d6b7c"}
BAND_COLOURS = {"low": "#2e7d32", "medium": "#f0a020", "high": "#c62828"}
MAIN_COLOUR = "#1f6fb2"
PARTIAL_COLOUR = "#9dbfdf"


@st.cache_resource(max_entries=3, show_spinner=False)
def _reader(snapshot_id: str, _snapshot: Snapshot) -> data.SnapshotReader:
    return data.SnapshotReader(_snapshot)


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
def _cached(snapshot_id: str, name: str, args: tuple, _snapshot: Snapshot) -> Any:
    return getattr(data, name)(_reader(snapshot_id, _snapshot), *args)


def query(function: Callable, *args) -> Any:
    """``function(reader, *args)`` from app.data, cached per snapshot and arguments."""
    current = reader()
    return _cached(current.snapshot.snapshot_id, function.__name__, tuple(args), current.snapshot)


def require_scores() -> None:
    if not reader().has_scores:
        st.info(data.NO_SCORES)
        st.stop()


def show_pii() -> bool:
    return bool(st.session_state.get(SHOW_PII_KEY, False))


def masked(frame: pl.DataFrame) -> pl.DataFrame:
    """Emails and phones masked unless the viewer switched them on in the sidebar."""
    if show_pii() or not {"email", "phone"} & set(frame.columns):
        return frame
    return pl.from_arrow(data.mask_pii(frame.to_arrow()))


def masked_record(record: dict[str, Any]) -> dict[str, Any]:
    contact = {name: [record.get(name)] for name in ("email", "phone")}
    return {**record, **masked(pl.DataFrame(contact, schema={name: pl.String for name in contact})).row(0, named=True)}


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
        "Lighter, hatched bars are partial months: "
        + "; ".join(spans)
        + ". Compare them with full months only with that in mind."
    )


def monthly_chart(
    frame: pl.DataFrame,
    value: str,
    *,
    title: str,
    axis: str,
    money: bool = False,
    line: bool = False,
    share: bool = False,
) -> go.Figure:
    """One value per month; partial months drawn lighter and hatched (bars) or hollow and dashed (lines)."""
    months = frame["month"].to_list()
    values = frame[value].to_list()
    partial = frame["is_partial"].to_list()
    hover = [
        f"{m:%b %Y}: {_hover_value(v, money, share)}" + (" (partial month)" if p else "")
        for m, v, p in zip(months, values, partial, strict=True)
    ]
    figure = go.Figure()
    if line:
        full = [v if not p else None for v, p in zip(values, partial, strict=True)]
        figure.add_scatter(
            x=months,
            y=full,
            mode="lines+markers",
            name="full month",
            line={"color": MAIN_COLOUR},
            hovertext=hover,
            hoverinfo="text",
        )
        if any(partial):
            # Join the partial point to its neighbour with a dashed line so the eye does not read a cliff.
            dashed = [
                v if p or (i + 1 < len(partial) and partial[i + 1]) or (i > 0 and partial[i - 1]) else None
                for i, (v, p) in enumerate(zip(values, partial, strict=True))
            ]
            figure.add_scatter(
                x=months,
                y=dashed,
                mode="lines+markers",
                name="partial month",
                line={"color": PARTIAL_COLOUR, "dash": "dot"},
                marker={"symbol": "circle-open", "size": 9, "color": MAIN_COLOUR},
                hovertext=hover,
                hoverinfo="text",
            )
    else:
        figure.add_bar(
            x=months,
            y=values,
            marker={
                "color": [PARTIAL_COLOUR if p else MAIN_COLOUR for p in partial],
                "pattern": {"shape": ["/" if p else "" for p in partial]},
            },
            hovertext=hover,
            hoverinfo="text",
            showlegend=False,
        )
    figure.update_layout(
        title=title,
        yaxis_title=axis,
        xaxis_title=None,
        margin={"t": 50, "b": 30},
        height=330,
        legend={"orientation": "h", "y": -0.2},
    )
    figure.update_xaxes(tickformat="%b %Y")
    if money:
        figure.update_yaxes(tickprefix="£", tickformat="~s")
    if share:
        figure.update_yaxes(tickformat=".0%")
    return figure


def _hover_value(value, money: bool, share: bool) -> str:
    if value is None:
        return MISSING
    if money:
        return f"£{value:,.0f}"
    if share:
        return f"{value:.1%}"
    return count(value) if float(value).is_integer() else f"{value:,.1f}"


def plain_date(value: date | None) -> str:
    return f"{value:%d %b %Y}" if value else MISSING
