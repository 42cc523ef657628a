"""Churn & value: who is at risk and who has already lapsed (with definitions and denominators), the
risk distribution, calibration, drivers, the most valuable customers at risk, expected value by tier,
the model card."""

import altair as alt
import polars as pl
import streamlit as st

from app import charts, data, glossary, ui
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
distribution = ui.query(data.churn_distribution).with_columns((pl.col("bucket") + 0.05).alias("bucket_to"))
ui.chart(
    left,
    lambda: charts.histogram(
        distribution,
        start="bucket",
        end="bucket_to",
        count="customers",
        title="Customers by predicted churn risk",
        x_title=f"chance of no order in the next {risk.horizon_days} days",
        kind="share",
        color="churn_band",
        colors=charts.BAND_COLOURS,
    ),
    distribution,
)
calibration = ui.query(data.churn_calibration)
if calibration is None or calibration.height == 0:
    right.info("No calibration recorded for the current model.")
else:
    ui.chart(
        right,
        lambda: charts.calibration(calibration, title="Does the predicted risk come true? (backtest)"),
        calibration,
    )

left, right = st.columns(2)
drivers = ui.query(data.churn_drivers)
if drivers is None or drivers.height == 0:
    left.info("No drivers recorded for the current model.")
else:
    ui.chart(
        left,
        lambda: charts.hbar(
            drivers,
            x="importance",
            y="description",
            title="What moves the churn risk most",
            x_title="effect on the risk",
            kind="share",
        ),
        drivers,
    )
clv = ui.query(data.clv_histogram).with_columns(
    pl.when(pl.col("is_top")).then(pl.lit("top 1%")).otherwise(pl.lit("everyone else")).alias("group")
)
top_from = clv.filter(pl.col("is_top"))["clv_from"].min()
ui.chart(
    right,
    lambda: charts.histogram(
        clv,
        start="clv_from",
        end="clv_to",
        count="customers",
        title="Customers by expected 12-month value",
        x_title="expected 12-month value",
        kind="money",
        color="group",
        colors={"everyone else": charts.MAIN, "top 1%": charts.LIGHT},
    ),
    clv,
)
if top_from is not None:
    right.caption(f"The last bar holds the top 1% of customers: everyone from {money(top_from)} up.")

tiers = ui.query(data.tier_sizes)
if tiers is not None and tiers.height:
    ui.chart(
        st,
        lambda: charts.vbar(
            tiers,
            x="loyalty_tier",
            y="clv_12m",
            title="Expected 12-month value per loyalty tier",
            y_title="expected 12-month value",
            kind="money",
            colors=charts.TIER_COLOURS,
            order=charts.TIER_ORDER,
            label=True,
            tooltip=[
                alt.Tooltip("loyalty_tier:N", title="tier"),
                alt.Tooltip("customers:Q", title="customers", format=",.0f"),
                alt.Tooltip("clv_12m:Q", title="expected 12-month value (£)", format=",.0f"),
            ],
            height=260,
        ),
        tiers,
    )

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
    # Lazy: the content runs and is sent only once the reader opens it.
    box = st.expander(
        "The model card: training, backtest against baselines, limits", key="model_card", on_change="rerun"
    )
    if box.open:
        with box:
            st.markdown(model["card_markdown"] or "(no card)")

st.caption(
    "Definitions: "
    + " ".join(f"{glossary.label(c)}: {glossary.describe(c)}" for c in ("churn_probability", "p_alive", "clv_12m"))
)
