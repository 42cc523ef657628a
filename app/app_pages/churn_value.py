"""Churn & value: risk distribution, calibration, drivers, high-value customers at risk, CLV, the model card."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import data, ui
from app.format import money

st.title("Churn & value")
reader = ui.reader()
ui.require_scores()

model = ui.query(data.current_model)
kpis = ui.query(data.overview_kpis)
ui.metric_row([k for k in kpis if k.label in ("Share at high churn risk", "Expected 12-month value")])

left, right = st.columns(2)
distribution = ui.query(data.churn_distribution)
left.plotly_chart(
    px.bar(
        distribution,
        x="bucket",
        y="customers",
        color="churn_band",
        title="Churn risk distribution",
        labels={"bucket": "predicted churn probability"},
        color_discrete_map={"low": "#2e7d32", "medium": "#f9a825", "high": "#c62828"},
    )
)
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
                text=[f"decile {d}" for d in calibration["decile"]],
            ),
        ]
    )
    figure.update_layout(
        title="Calibration: predicted vs observed churn (by decile)",
        xaxis_title="mean predicted",
        yaxis_title="observed rate",
    )
    right.plotly_chart(figure)

left, right = st.columns(2)
drivers = ui.query(data.churn_drivers)
if drivers is None or drivers.height == 0:
    left.info("No drivers recorded for the current model.")
else:
    left.plotly_chart(
        px.bar(
            drivers.reverse(),
            x="importance",
            y="description",
            orientation="h",
            title="Top churn drivers",
            labels={"description": ""},
        )
    )
clv = ui.query(data.clv_histogram)
right.plotly_chart(
    px.bar(
        clv,
        x="clv_from",
        y="customers",
        color="loyalty_tier",
        log_y=True,
        category_orders={"loyalty_tier": ["Bronze", "Silver", "Gold", "Platinum"]},
        hover_data={"clv_to": ":,.0f"},
        title="Expected 12-month value (CLV)",
        labels={"clv_from": "CLV, next 12 months (£; last bar: top 1%)"},
    )
)

st.subheader("High-value customers at high risk")
at_risk = ui.query(data.high_value_at_risk)
st.caption(
    f"{len(at_risk)} customers with the highest expected value among those at high churn risk; "
    f"together {money(at_risk['clv_12m'].sum())} of expected value."
)
st.dataframe(
    at_risk,
    hide_index=True,
    column_config={
        "clv_12m": st.column_config.NumberColumn("CLV 12m", format="£%.0f"),
        "churn_probability": st.column_config.ProgressColumn(
            "churn risk", min_value=0.0, max_value=1.0, format="percent"
        ),
    },
)

st.subheader("Model card")
if model is None:
    st.info("No current model in the registry.")
else:
    st.caption(
        f"Model {model['model_version']} · trained {model['trained_at']} · cut-off {model['train_cutoff']} · "
        f"horizon {model['horizon_days']} days"
    )
    st.markdown(model["card_markdown"] or "(no card)")
    with st.expander("Metrics"):
        st.code(model["metrics_json"] or "{}", language="json")
