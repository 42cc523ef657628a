"""Campaigns & support: each campaign's funnel, conversion by the segment customers were in when the
campaign reached them, ticket volumes and resolution times per month (open month marked), satisfaction
against churn."""

import altair as alt
import polars as pl
import streamlit as st

from app import charts, data, ui
from app.format import count, money, share

STEPS = {
    "customers_sent": "sent",
    "customers_delivered": "delivered",
    "customers_opened": "opened",
    "customers_clicked": "clicked",
    "customers_converted": "bought",
}
CAMPAIGN_COLUMNS = {
    "campaign_name": "Campaign",
    "channel": "Channel",
    "launched_at": st.column_config.DatetimeColumn("Launched", format="D MMM YYYY"),
    "customers_sent": st.column_config.NumberColumn("Sent to", format="%,d"),
    "open_rate": st.column_config.NumberColumn("Opened", format="percent"),
    "click_rate": st.column_config.NumberColumn("Clicked", format="percent"),
    "conversion_rate": st.column_config.NumberColumn("Bought", format="percent"),
    "attributed_revenue": st.column_config.NumberColumn("Attributed revenue", format="£%,.0f"),
}

st.title("Campaigns & support")
reader = ui.reader()

st.subheader("Campaign funnel")
campaigns = ui.query(data.campaigns)
if campaigns.height == 0:
    st.info("No campaigns in this data.")
else:
    labels = {
        row["campaign_id"]: f"{row['campaign_name'] or 'Unnamed campaign'} · {row['channel'] or 'channel unknown'}"
        + (f" · {row['launched_at']:%d %b %Y}" if row.get("launched_at") else "")
        for row in campaigns.iter_rows(named=True)
    }
    campaign_id = st.selectbox("Campaign", list(labels), format_func=labels.get, key="campaign_pick")
    row = campaigns.filter(pl.col("campaign_id") == campaign_id).row(0, named=True)
    funnel = pl.DataFrame({"step": list(STEPS.values()), "customers": [row[s] for s in STEPS]})
    left, right = st.columns([2, 1])
    ui.chart(
        left,
        lambda: charts.funnel(funnel, step="step", value="customers", title=labels[campaign_id]),
        funnel,
        labels[campaign_id],
    )
    right.metric("Open rate", share(row["open_rate"]), help="Customers who opened ÷ customers it was sent to.")
    right.metric("Click rate", share(row["click_rate"]), help="Customers who clicked ÷ customers it was sent to.")
    right.metric(
        "Conversion rate",
        share(row["conversion_rate"]),
        help="Customers the marketing platform reports as converted ÷ customers it was sent to.",
    )
    right.metric(
        "Attributed revenue",
        money(row["attributed_revenue"]),
        help="Orders a clicker placed within the attribution window after their first click on this campaign.",
    )
    # Lazy: the content runs and is sent only once the reader opens it.
    box = st.expander(f"All {count(campaigns.height)} campaigns", key="all_campaigns", on_change="rerun")
    if box.open:
        with box:
            shown = campaigns.select([c for c in CAMPAIGN_COLUMNS if c in campaigns.columns])
            st.dataframe(shown, hide_index=True, column_config=CAMPAIGN_COLUMNS, placeholder=ui.MISSING)

st.subheader("Conversion by segment at the time of the send")
by_segment = ui.query(data.conversion_by_segment)
if by_segment.height == 0:
    st.info("No campaign sends in this data.")
else:
    ui.chart(
        st,
        lambda: charts.vbar(
            by_segment,
            x="segment",
            y="conversion_rate",
            title="Share of campaign sends that led to a purchase",
            y_title="sends that led to a purchase",
            kind="share",
            tooltip=[
                alt.Tooltip("segment:N", title="segment when sent"),
                alt.Tooltip("sends:Q", title="campaign sends", format=",.0f"),
                alt.Tooltip("conversions:Q", title="purchases", format=",.0f"),
                alt.Tooltip("conversion_rate:Q", title="share", format=".2%"),
                alt.Tooltip("customers_sent:Q", title="customers reached", format=",.0f"),
            ],
        ),
        by_segment,
    )
    st.caption(
        "Each send counts in the RFM segment the customer was in at the end of the month before it (not today's "
        "segment, which the purchase itself may have changed). “No orders yet”: reached before their first order."
    )

st.subheader("Support")
tickets = ui.query(data.tickets_by_month)
if tickets.height == 0:
    st.info("No tickets in this data.")
else:
    shown = ui.month_range(tickets, key="support_months")
    left, right = st.columns(2)
    ui.chart(left, lambda: charts.monthly(shown, "tickets", title="Tickets per month", axis="tickets"), shown)
    ui.chart(
        right,
        lambda: charts.monthly(
            shown,
            "median_resolution_hours",
            title="Median time to resolve (hours), by month opened",
            axis="hours",
            kind="hours",
            line=True,
        ),
        shown,
    )
    note = ui.partial_note(shown)
    st.caption(
        f"{count(shown['tickets'].sum())} tickets in the months shown. Resolution time counts solved tickets by the "
        "month they were opened: in recent months only the quickly solved are in yet." + (f" {note}" if note else "")
    )
satisfaction = ui.query(data.satisfaction_vs_churn)
if satisfaction is None:
    st.info(data.NO_SCORES)
else:
    ui.chart(
        st,
        lambda: charts.vbar(
            satisfaction,
            x="last_satisfaction",
            y="mean_churn_probability",
            title="Churn risk by the customer's last support rating",
            y_title="average churn risk",
            kind="share",
            tooltip=[
                alt.Tooltip("last_satisfaction:N", title="last rating"),
                alt.Tooltip("customers:Q", title="customers", format=",.0f"),
                alt.Tooltip("mean_churn_probability:Q", title="average churn risk", format=".1%"),
            ],
        ),
        satisfaction,
    )
