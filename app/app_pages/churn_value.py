"""Churn & value: who is at risk and who has already lapsed (with definitions and denominators), the
risk distribution, calibration, drivers, the most valuable customers at risk, expected value by tier,
the model card."""

import plotly.express as px
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from app import data, glossary, ui
from app.format import count, money, share

st.title("Churn & value")
reader = ui.reader()
ui.require_scores()

model = ui.query(data.current_model)
risk = ui.query(data.risk_summary)
high_from = f"{risk.high_from:.0%}" if risk.high_from is not None else "the high band's threshold"
columns = st.columns(4)
columns[0].metric(
    "High churn risk",
    count(risk.high),
    help=f"Scored customers with a {high_from} or higher chance of no order in the next {risk.horizon_days} days: "
    f"{share(risk.high / risk.scored if risk.scored else None)} of {count(risk.scored)} scored customers "
    f"(of {count(risk.customers)} customers; those who never ordered are not scored).",
)
columns[1].metric(
    "At risk, still buying",
    count(risk.at_risk),
    help=f"High churn risk and an order in the last {risk.lapsed_after_days} days: "
    f"{share(risk.at_risk / risk.active_scored if risk.active_scored else None)} of the {count(risk.active_scored)} "
    "scored customers still buying. Retention can still work here.",
)
columns[2].metric(
    "Already lapsed",
    count(risk.lapsed),
    help=f"No order for more than {risk.lapsed_after_days} days: "
    f"{share(risk.lapsed / risk.scored if risk.scored else None)} of scored customers. A high churn risk "
    "there states what has happened; win them back instead.",
)
columns[3].metric(
    "Expected 12-month value",
    money(risk.clv_total),
    help=f"Revenue the value model expects from the {count(risk.scored)} scored customers in the next 12 months.",
)

left, right = st.columns(2)
distribution = ui.query(data.churn_distribution)
distribution_chart = px.bar(
    distribution,
    x="bucket",
    y="customers",
    color="churn_band",
    title="Customers by predicted churn risk",
    labels={"bucket": f"chance of no order in the next {risk.horizon_days} days", "churn_band": "band"},
    color_discrete_map=ui.BAND_COLOURS,
    category_orders={"churn_band": ["low", "medium", "high"]},
)
distribution_chart.update_xaxes(tickformat=".0%")
distribution_chart.update_layout(bargap=0.05, height=380)
left.plotly_chart(distribution_chart)
calibration = ui.query(data.churn_calibration)
if calibration is None or calibration.height == 0:
    right.info("No calibration recorded for the current model.")
else:
    figure = go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "grey"}),
            go.Scatter(
                x=calibration["mean_predicted"].to_list(),
                y=calibration["observed_rate"].to_list(),
                mode="lines+markers",
                name="model",
                line={"color": ui.MAIN_COLOUR},
                text=[f"tenth {d} of customers" for d in calibration["decile"]],
            ),
        ]
    )
    figure.update_layout(
        title="Does the predicted risk come true? (backtest)",
        xaxis_title="predicted churn, per tenth of customers",
        yaxis_title="share that churned",
        height=380,
    )
    figure.update_xaxes(tickformat=".0%")
    figure.update_yaxes(tickformat=".0%")
    right.plotly_chart(figure)

left, right = st.columns(2)
drivers = ui.query(data.churn_drivers)
if drivers is None or drivers.height == 0:
    left.info("No drivers recorded for the current model.")
else:
    drivers_chart = px.bar(
        drivers.reverse(),
        x="importance",
        y="description",
        orientation="h",
        title="What moves the churn risk most",
        labels={"description": "", "importance": "average change of the predicted risk"},
        color_discrete_sequence=[ui.MAIN_COLOUR],
    )
    drivers_chart.update_xaxes(tickformat=".1%")
    drivers_chart.update_layout(height=380)
    left.plotly_chart(drivers_chart)
clv = ui.query(data.clv_histogram)
top_from = clv.filter(pl.col("is_top"))["clv_from"].min()
clv_chart = px.bar(
    clv.with_columns(pl.when(pl.col("is_top")).then(pl.lit("top 1%")).otherwise(pl.lit("others")).alias("group")),
    x="clv_from",
    y="customers",
    color="group",
    color_discrete_map={"others": ui.MAIN_COLOUR, "top 1%": ui.PARTIAL_COLOUR},
    title="Customers by expected 12-month value",
    labels={"clv_from": "expected 12-month value (£, bar = from this value)", "group": ""},
    hover_data={"clv_to": ":,.0f", "clv_from": ":,.0f"},
)
clv_chart.update_layout(bargap=0.05, height=380, legend={"orientation": "h", "y": -0.25})
clv_chart.update_xaxes(tickprefix="£", tickformat=",.0f")
right.plotly_chart(clv_chart)
if top_from is not None:
    right.caption(f"The last bar holds the top 1% of customers: everyone from {money(top_from)} up.")

tiers = ui.query(data.tier_sizes)
if tiers is not None and tiers.height:
    by_tier = px.bar(
        tiers,
        x="loyalty_tier",
        y="clv_12m",
        color="loyalty_tier",
        color_discrete_map=ui.TIER_COLOURS,
        text=[money(v) for v in tiers["clv_12m"]],
        title="Expected 12-month value per loyalty tier",
        labels={"loyalty_tier": "", "clv_12m": "expected 12-month value (£)", "customers": "customers"},
        hover_data={"customers": ":,"},
    )
    by_tier.update_layout(showlegend=False, height=340)
    by_tier.update_yaxes(tickprefix="£", tickformat="~s")
    st.plotly_chart(by_tier)

st.subheader("Most valuable customers at risk, still buying")
at_risk = ui.query(data.high_value_at_risk, risk.lapsed_after_days)
st.caption(
    f"The {count(len(at_risk))} customers with the highest expected value among the {count(risk.at_risk)} at high "
    f"risk who ordered in the last {risk.lapsed_after_days} days; together {money(at_risk['clv_12m'].sum())} of "
    "expected value. The lapsed are left out: they are a win-back list (segment builder: days since last order)."
)
ui.table(
    at_risk,
    column_config={
        "clv_12m": ui.money_column("clv_12m"),
        "churn_probability": ui.share_column("churn_probability"),
    },
    key="churn_at_risk",
)

st.subheader("Model card")
if model is None:
    st.info("No current model in the registry.")
else:
    st.caption(
        f"Trained {model['trained_at']:%d %b %Y} on data up to {model['train_cutoff']:%d %b %Y}; predicts no order "
        f"in the next {model['horizon_days']} days. Version {model['model_version']}."
    )
    st.markdown(model["card_markdown"] or "(no card)")
    with st.expander("Metrics"):
        st.code(model["metrics_json"] or "{}", language="json")

st.caption(
    "Definitions: "
    + " ".join(f"{glossary.label(c)}: {glossary.describe(c)}" for c in ("churn_probability", "p_alive", "clv_12m"))
)
