"""Segments: the RFM grid, how customers moved between segments, and cohort retention."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import data, ui

st.title("Segments")
ui.reader()

st.subheader("RFM grid: recency × frequency")
grid = ui.query(data.rfm_grid)
if grid.height == 0:
    st.info("No customer has ordered yet: the RFM grid is empty.")
else:
    measure = st.radio("Show", ["customers", "revenue"], horizontal=True, key="rfm_measure")
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
        labels={"color": measure},
    )
    figure.update_layout(xaxis_title="frequency score (5 = most orders)", yaxis_title="recency score (5 = most recent)")
    st.plotly_chart(figure)

st.subheader("Migration between two snapshots")
dates = ui.query(data.rfm_snapshot_dates)
if len(dates) < 2:
    st.info("Migration needs at least two RFM snapshots; the history has fewer.")
else:
    left, right = st.columns(2)
    from_date = left.selectbox("From", dates, index=max(0, len(dates) - 13), key="migration_from")
    to_date = right.selectbox("To", dates, index=len(dates) - 1, key="migration_to")
    moves = ui.query(data.segment_migration, from_date, to_date)
    labels = sorted(set(moves["from_segment"]) | set(moves["to_segment"]))
    sources = [labels.index(s) for s in moves["from_segment"]]
    targets = [len(labels) + labels.index(t) for t in moves["to_segment"]]
    sankey = go.Figure(
        go.Sankey(
            node={"label": labels + labels, "pad": 12},
            link={"source": sources, "target": targets, "value": moves["customers"].to_list()},
        )
    )
    sankey.update_layout(height=520, title=f"{from_date} → {to_date}")
    st.plotly_chart(sankey)
    with st.expander("As a table"):
        st.dataframe(
            moves.pivot(on="to_segment", index="from_segment", values="customers").fill_null(0), hide_index=True
        )

st.subheader("Cohort retention")
cohorts = ui.query(data.cohort_retention)
if cohorts.height == 0:
    st.info("No cohorts yet.")
else:
    pivot = cohorts.pivot(
        on="months_since_acquisition", index="cohort_month", values="active_share", sort_columns=True
    ).sort("cohort_month")
    offsets = [c for c in pivot.columns if c != "cohort_month"]
    figure = px.imshow(
        pivot.select(offsets).to_numpy(),
        x=offsets,
        y=[f"{m:%Y-%m}" for m in pivot["cohort_month"]],
        text_auto=".0%",
        aspect="auto",
        color_continuous_scale="Greens",
        labels={"x": "months since first order", "y": "cohort", "color": "active share"},
    )
    figure.update_layout(height=max(400, 22 * pivot.height))
    st.plotly_chart(figure)
