"""Overview: KPIs against the previous period (each with its definition and denominator), risk split
into "still buying, at risk" and "already lapsed", revenue and ordering customers per month with the
open month marked, segment and tier sizes.

The KPIs come from a few precomputed rows and are drawn first; the charts follow.
"""

import altair as alt
import streamlit as st

from app import charts, data, ui
from app.format import count, money, share

st.title("Overview")
reader = ui.reader()
as_of = ui.query(data.as_of_date)
st.caption(
    f"Figures up to {as_of:%d %b %Y}, the newest day with data. Changes compare the last "
    f"{data.KPI_PERIOD_DAYS} days with the {data.KPI_PERIOD_DAYS} days before; hover (?) for each definition."
)
ui.metric_row(ui.query(data.overview_kpis))

risk = ui.query(data.risk_summary)
if risk is None:
    st.info(data.NO_SCORES)
else:
    high_from = f"{risk.high_from:.0%}" if risk.high_from is not None else "the high band's"
    columns = st.columns(4)
    columns[0].metric(
        "Scored customers",
        count(risk.scored),
        help=f"Customers with a churn and value score: those who have ordered. {count(risk.scored)} of "
        f"{count(risk.customers)} customers; the other {count(risk.customers - risk.scored)} never ordered.",
    )
    columns[1].metric(
        "At risk, still buying",
        count(risk.at_risk),
        help=f"Customers who ordered in the last {risk.lapsed_after_days} days and have a high churn risk "
        f"(a {high_from} or higher chance of no order in the next {risk.horizon_days} days): "
        f"{share(risk.at_risk / risk.active_scored if risk.active_scored else None)} of the "
        f"{count(risk.active_scored)} scored customers still buying. The ones to keep.",
    )
    columns[2].metric(
        "Already lapsed",
        count(risk.lapsed),
        help=f"Scored customers with no order for more than {risk.lapsed_after_days} days (twice the "
        f"{risk.horizon_days}-day churn horizon): {share(risk.lapsed / risk.scored if risk.scored else None)} "
        "of scored customers. Already gone: a win-back case, not a retention one.",
    )
    columns[3].metric(
        "Expected 12-month value",
        money(risk.clv_total),
        help=f"Revenue the value model expects in the next 12 months, summed over the {count(risk.scored)} "
        "scored customers (customers who never ordered are not counted).",
    )

st.subheader("Month by month")
monthly = ui.query(data.monthly_activity)
if monthly.height == 0:
    st.info("No orders yet.")
else:
    shown = ui.month_range(monthly, key="overview_months")
    left, right = st.columns(2)
    ui.chart(
        left, lambda: charts.monthly(shown, "revenue", title="Revenue per month", axis="revenue", kind="money"), shown
    )
    ui.chart(
        right,
        lambda: charts.monthly(
            shown, "active_customers", title="Customers who ordered, per month", axis="customers", line=True
        ),
        shown,
    )
    note = ui.partial_note(shown)
    if note:
        st.caption(note)

left, right = st.columns(2)
segments = ui.query(data.segment_sizes)
ui.chart(
    left,
    lambda: charts.hbar(
        segments,
        x="customers",
        y="segment",
        title="Customers per RFM segment",
        x_title="customers",
        tooltip=[
            alt.Tooltip("segment:N", title="segment"),
            alt.Tooltip("customers:Q", title="customers", format=",.0f"),
            alt.Tooltip("revenue:Q", title="revenue (£)", format=",.0f"),
        ],
    ),
    segments,
)
tiers = ui.query(data.tier_sizes)
if tiers is not None:
    ui.chart(
        right,
        lambda: charts.vbar(
            tiers,
            x="loyalty_tier",
            y="customers",
            title="Customers per loyalty tier",
            y_title="customers",
            colors=charts.TIER_COLOURS,
            order=charts.TIER_ORDER,
            label=True,
            tooltip=[
                alt.Tooltip("loyalty_tier:N", title="tier"),
                alt.Tooltip("customers:Q", title="customers", format=",.0f"),
                alt.Tooltip("clv_12m:Q", title="expected 12-month value (£)", format=",.0f"),
                alt.Tooltip("benefits_yearly_cost:Q", title="benefits per year (£)", format=",.0f"),
            ],
        ),
        tiers,
    )
