"""Segments: the RFM grid, how customers moved between segments (a from→to matrix), and cohort
retention with the open month marked."""

import altair as alt
import polars as pl
import streamlit as st

from app import charts, data, ui
from app.format import count

st.title("Segments")
ui.reader()

st.subheader("RFM grid: recency × frequency")
grid = ui.query(data.rfm_grid)
if grid.height == 0:
    st.info("No customer has ordered yet: the RFM grid is empty.")
else:
    measure = st.radio("Show", ["customers", "revenue"], horizontal=True, key="rfm_measure", format_func=str.capitalize)
    cells = grid.with_columns(
        ("F" + pl.col("f_score").cast(pl.String)).alias("frequency"),
        ("R" + pl.col("r_score").cast(pl.String)).alias("recency"),
        (pl.col(measure) / pl.col(measure).max()).alias("shade"),
        pl.col(measure)
        .round(0)
        .cast(pl.Int64)
        .map_elements((lambda v: f"£{v:,}") if measure == "revenue" else (lambda v: f"{v:,}"), return_dtype=pl.String)
        .alias("label"),
    )
    ui.chart(
        st,
        lambda: charts.heatmap(
            cells,
            x="frequency",
            y="recency",
            value="shade",
            text="label",
            title=None,
            x_title="frequency score (5 = most orders)",
            y_title="recency score (5 = most recent)",
            x_order=[f"F{i}" for i in range(1, 6)],
            y_order=[f"R{i}" for i in range(5, 0, -1)],
            share=True,
            height=300,
            tooltip=[
                alt.Tooltip("recency:N", title="recency score"),
                alt.Tooltip("frequency:N", title="frequency score"),
                alt.Tooltip("customers:Q", title="customers", format=",.0f"),
                alt.Tooltip("revenue:Q", title="revenue (£)", format=",.0f"),
            ],
        ).configure_legend(disable=True),
        cells,
    )

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
    cells = moves.join(
        moves.group_by("from_segment").agg(pl.col("customers").sum().alias("row_total")), on="from_segment"
    ).with_columns(
        (pl.col("customers") / pl.col("row_total")).alias("share"),
        pl.col("customers").map_elements(lambda v: f"{v:,}", return_dtype=pl.String).alias("label"),
    )
    ui.chart(
        st,
        lambda: charts.heatmap(
            cells,
            x="to_segment",
            y="from_segment",
            value="share",
            text="label",
            title=None,
            x_title=f"segment on {to_date:%d %b %Y}",
            y_title=f"segment on {from_date:%d %b %Y}",
            x_order=columns,
            y_order=rows,
            share=True,
            x_top=True,
            tooltip=[
                alt.Tooltip("from_segment:N", title="from"),
                alt.Tooltip("to_segment:N", title="to"),
                alt.Tooltip("customers:Q", title="customers", format=",.0f"),
                alt.Tooltip("share:Q", title="share of the row", format=".0%"),
            ],
        ),
        cells,
        from_date,
        to_date,
    )
    stayed = moves.filter(pl.col("from_segment") == pl.col("to_segment"))["customers"].sum()
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
    cells = cohorts.with_columns(
        pl.col("cohort_month").dt.strftime("%b %Y").alias("cohort"),
        # The open month's cells carry no colour (a partial month would read as a drop), only the figure in brackets.
        pl.when(pl.col("is_partial")).then(None).otherwise(pl.col("active_share")).alias("shade"),
        pl.when(pl.col("is_partial"))
        .then(pl.format("({}%)", (pl.col("active_share") * 100).round(0).cast(pl.Int64)))
        .otherwise(pl.format("{}%", (pl.col("active_share") * 100).round(0).cast(pl.Int64)))
        .alias("label"),
    )
    order = cells.sort("cohort_month")["cohort"].unique(maintain_order=True).to_list()
    ui.chart(
        st,
        lambda: charts.heatmap(
            cells,
            x="months_since_acquisition",
            y="cohort",
            value="shade",
            text="label",
            title=None,
            x_title="months since first order",
            y_title="first ordered in",
            y_order=order,
            scheme="greens",
            share=True,
            tooltip=[
                alt.Tooltip("cohort:N", title="first ordered in"),
                alt.Tooltip("months_since_acquisition:O", title="months later"),
                alt.Tooltip("cohort_customers:Q", title="customers in the cohort", format=",.0f"),
                alt.Tooltip("active_customers:Q", title="ordered that month", format=",.0f"),
                alt.Tooltip("active_share:Q", title="share", format=".0%"),
            ],
        ),
        cells,
    )
    open_month = cohorts.filter(pl.col("is_partial"))["activity_month"]
    if open_month.len():
        st.caption(
            f"Share of each month's new customers who ordered again n months later. Figures in brackets are "
            f"{open_month[0]:%B %Y}, a month still open: only part of its days are in, so those shares will rise."
        )
    else:
        st.caption("Share of each month's new customers who ordered again n months later.")
