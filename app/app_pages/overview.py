"""Overview: KPIs against the previous period, revenue and active customers over time, segment and tier sizes."""

import plotly.express as px
import streamlit as st

from app import data, ui

st.title("Overview")
reader = ui.reader()
as_of = ui.query(data.as_of_date)
st.caption(
    f"As of {as_of:%d %b %Y}; changes compare the last {data.KPI_PERIOD_DAYS} days with the "
    f"{data.KPI_PERIOD_DAYS} days before."
)
ui.metric_row(ui.query(data.overview_kpis))
if not reader.has_scores:
    st.info(data.NO_SCORES)

monthly = ui.query(data.monthly_activity)
left, right = st.columns(2)
left.plotly_chart(
    px.bar(monthly, x="month", y="revenue", title="Revenue per month", labels={"revenue": "revenue (£)", "month": ""}),
    width="stretch",
)
right.plotly_chart(
    px.line(
        monthly,
        x="month",
        y="active_customers",
        title="Active customers per month",
        labels={"active_customers": "customers who ordered", "month": ""},
        markers=True,
    ),
    width="stretch",
)

left, right = st.columns(2)
segments = ui.query(data.segment_sizes)
left.plotly_chart(
    px.bar(
        segments, x="customers", y="segment", orientation="h", title="RFM segments", hover_data={"revenue": ":,.0f"}
    ),
    width="stretch",
)
tiers = ui.query(data.tier_sizes)
if tiers is not None:
    right.plotly_chart(
        px.bar(
            tiers,
            x="loyalty_tier",
            y="customers",
            title="Loyalty tiers",
            hover_data={"benefits_yearly_cost": ":,.0f"},
            labels={"loyalty_tier": ""},
        ),
        width="stretch",
    )
