"""Segments: the RFM grid, how customers moved between segments (a from→to matrix), and cohort
retention with the open month marked."""

import plotly.express as px
import polars as pl
import streamlit as st

from app import data, ui
from app.format import count

st.title("Segments")
ui.reader()

st.subheader("RFM grid: recency × frequency")
grid = ui.query(data.rfm_grid)
if grid.height == 0:
    st.info("No customer has ordered yet: the RFM grid is empty.")
else:
    measure = st.radio("Show", ["customers", "revenue"], horizontal=True, key="rfm_measure", format_func=str.capitalize)
    pivot = grid.pivot(on="f_score", index="r_score", values=measure, sort_columns=True).sort(
        "r_score", descending=True
    )
    f_scores = [c for c in pivot.columns if c != "r_score"]
    figure = px.imshow(
        pivot.select(f_scores).to_numpy(),
        x=[f"F{c}" for c in f_scores],
        y=[f"R{r}" for r in pivot["r_score"]],
        text_auto=",.0f",
        aspect="auto",
        color_continuous_scale="Blues",
        labels={"color": "customers" if measure == "customers" else "revenue (£)", "x": "frequency", "y": "recency"},
    )
    figure.update_layout(
        xaxis_title="frequency score (5 = most orders)", yaxis_title="recency score (5 = most recent)", height=420
    )
    st.plotly_chart(figure)

st.subheader("Migration between two dates")
dates = ui.query(data.rfm_snapshot_dates)
if len(dates) < 2:
    st.info("Migration needs RFM at two dates at least; the history has fewer.")
else:
    left, right = st.columns(2)
    from_date = left.selectbox(
        "From", dates, index=max(0, len(dates) - 13), key="migration_from", format_func=lambda d: f"{d:%d %b %Y}"
    )
    to_date = right.selectbox(
        "To", dates, index=len(dates) - 1, key="migration_to", format_func=lambda d: f"{d:%d %b %Y}"
    )
    moves = ui.query(data.segment_migration, from_date, to_date)
    order = (
        moves.group_by("from_segment").agg(pl.col("customers").sum()).sort("customers", descending=True)["from_segment"]
    ).to_list()
    rows = [s for s in order if s != data.NOT_YET] + ([data.NOT_YET] if data.NOT_YET in order else [])
    columns = [s for s in rows if s != data.NOT_YET]
    columns += [s for s in moves["to_segment"].unique().sort().to_list() if s not in columns]
    matrix = (
        moves.pivot(on="to_segment", index="from_segment", values="customers")
        .fill_null(0)
        .join(pl.DataFrame({"from_segment": rows}).with_row_index("_order"), on="from_segment")
        .sort("_order")
    )
    for column in columns:
        if column not in matrix.columns:
            matrix = matrix.with_columns(pl.lit(0).alias(column))
    values = matrix.select(columns).to_numpy()
    totals = values.sum(axis=1, keepdims=True)
    heatmap = px.imshow(
        values / totals.clip(min=1),
        x=columns,
        y=rows,
        aspect="auto",
        color_continuous_scale="Blues",
        zmin=0,
        zmax=1,
        labels={
            "x": f"segment on {to_date:%d %b %Y}",
            "y": f"segment on {from_date:%d %b %Y}",
            "color": "share of row",
        },
    )
    heatmap.update_traces(
        text=values,
        texttemplate="%{text:,}",
        customdata=values,
        hovertemplate="%{y} → %{x}: %{customdata:,} customers (%{z:.0%} of the row)<extra></extra>",
    )
    heatmap.update_layout(height=120 + 34 * len(rows), coloraxis_colorbar={"tickformat": ".0%"})
    heatmap.update_xaxes(side="top", tickangle=-30)
    st.plotly_chart(heatmap)
    stayed = sum(int(matrix.filter(pl.col("from_segment") == s)[s][0]) for s in rows if s in matrix.columns)
    st.caption(
        f"Each row is where the customers of a segment on {from_date:%d %b %Y} were on {to_date:%d %b %Y}; "
        f"the number is customers, the colour the share of the row. {count(stayed)} customers stayed in their "
        f"segment. “{data.NOT_YET}”: first order after the start date; “{data.GONE}”: merged into another "
        "customer or erased since."
    )

st.subheader("Cohort retention")
cohorts = ui.query(data.cohort_retention)
if cohorts.height == 0:
    st.info("No cohorts yet.")
else:
    pivot = cohorts.pivot(
        on="months_since_acquisition", index="cohort_month", values="active_share", sort_columns=True
    ).sort("cohort_month")
    partial = cohorts.pivot(
        on="months_since_acquisition", index="cohort_month", values="is_partial", sort_columns=True
    ).sort("cohort_month")
    offsets = [c for c in pivot.columns if c != "cohort_month"]
    shares = pivot.select(offsets).to_numpy()
    open_cells = partial.select(offsets).to_numpy()
    text = [
        ["" if v is None or v != v else (f"({v:.0%})" if p else f"{v:.0%}") for v, p in zip(row, flags, strict=True)]
        for row, flags in zip(shares.tolist(), open_cells.tolist(), strict=True)
    ]
    # The open month's cells carry no colour (a partial month would read as a drop), only the figure in brackets.
    coloured = [
        [None if p else v for v, p in zip(row, flags, strict=True)]
        for row, flags in zip(shares.tolist(), open_cells.tolist(), strict=True)
    ]
    figure = px.imshow(
        coloured,
        x=offsets,
        y=[f"{m:%b %Y}" for m in pivot["cohort_month"]],
        aspect="auto",
        color_continuous_scale="Greens",
        labels={"x": "months since first order", "y": "first ordered in", "color": "ordered again"},
    )
    figure.update_traces(text=text, texttemplate="%{text}")
    figure.update_layout(height=max(400, 24 * pivot.height), coloraxis_colorbar={"tickformat": ".0%"})
    st.plotly_chart(figure)
    open_month = cohorts.filter(pl.col("is_partial"))["activity_month"]
    if open_month.len():
        st.caption(
            f"Share of each month's new customers who ordered again n months later. Figures in brackets are "
            f"{open_month[0]:%B %Y}, a month still open: only part of its days are in, so those shares will rise."
        )
    else:
        st.caption("Share of each month's new customers who ordered again n months later.")
