"""Campaigns & support: each campaign's funnel, conversion by segment, ticket volumes and resolution times,
satisfaction against churn."""

import plotly.express as px
import polars as pl
import streamlit as st

from app import data, ui
from app.format import count, share

st.title("Campaigns & support")
reader = ui.reader()

st.subheader("Campaign funnel")
campaigns = ui.query(data.campaigns)
if campaigns.height == 0:
    st.info("No campaigns in this snapshot.")
else:
    labels = {
        row["campaign_id"]: f"{row['campaign_name'] or row['campaign_id']} ({row['channel'] or '?'})"
        for row in campaigns.iter_rows(named=True)
    }
    campaign_id = st.selectbox("Campaign", list(labels), format_func=labels.get, key="campaign_pick")
    row = campaigns.filter(pl.col("campaign_id") == campaign_id).row(0, named=True)
    funnel = pl.DataFrame(
        {
            "step": [s.removeprefix("customers_") for s in data.FUNNEL_STEPS],
            "customers": [row[s] for s in data.FUNNEL_STEPS],
        }
    )
    left, right = st.columns([2, 1])
    left.plotly_chart(px.funnel(funnel, x="customers", y="step", title=labels[campaign_id]))
    right.metric("Open rate", share(row["open_rate"]))
    right.metric("Click rate", share(row["click_rate"]))
    right.metric("Conversion rate", share(row["conversion_rate"]))
    right.metric("Attributed revenue", f"£{row['attributed_revenue']:,.0f}")
    with st.expander("All campaigns"):
        st.dataframe(campaigns, hide_index=True)

st.subheader("Conversion by segment")
by_segment = ui.query(data.conversion_by_segment)
conversion = px.bar(
    by_segment,
    x="segment",
    y="conversion_rate",
    hover_data=["customers_sent", "customers_converted"],
    labels={"conversion_rate": "share of customers reached who converted", "segment": ""},
)
conversion.update_yaxes(tickformat=".0%")
st.plotly_chart(conversion)

st.subheader("Support")
tickets = ui.query(data.tickets_by_month)
if tickets.height == 0:
    st.info("No tickets in this snapshot.")
else:
    left, right = st.columns(2)
    left.plotly_chart(px.bar(tickets, x="month", y="tickets", title="Tickets per month", labels={"month": ""}))
    right.plotly_chart(
        px.line(
            tickets,
            x="month",
            y="median_resolution_hours",
            markers=True,
            title="Median resolution time (hours)",
            labels={"month": "", "median_resolution_hours": "hours"},
        )
    )
    st.caption(f"{count(tickets['tickets'].sum())} tickets in total.")
satisfaction = ui.query(data.satisfaction_vs_churn)
if satisfaction is None:
    st.info(data.NO_SCORES)
else:
    st.plotly_chart(
        px.bar(
            satisfaction,
            x="last_satisfaction",
            y="mean_churn_probability",
            hover_data=["customers"],
            title="Churn risk by last support rating",
            labels={"mean_churn_probability": "mean churn probability", "last_satisfaction": ""},
        )
    )
