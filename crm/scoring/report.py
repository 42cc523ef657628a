"""`crm evaluate scores`: the churn backtest against baselines and the oracle, and the revenue forecast vs truth.

Read-only: the backtest trains a fresh model in memory on the warehouse's marts; nothing is written
to the warehouse. The ground truth (simulated company only) adds the oracle ROC-AUC and the true
revenue of the 365 days after the history end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crm.scoring.service import model_params
from crm.warehouse import connect as connect_warehouse
from models_ml.churn import classification_metrics
from models_ml.evaluation import known_rates_scores, oracle_scores, revenue_forecast_check, run_backtest
from models_ml.features import last_data_day
from models_ml.forecast import forecast_value
from models_ml.scoring_config import ScoringConfig
from models_ml.value import customer_segments

SCORERS = ("model", "baseline_recency", "baseline_bgnbd_p_alive", "known_rates_ceiling", "oracle")


def evaluate_scores(warehouse: Path, config: ScoringConfig, ground_truth: Path | None) -> dict[str, Any]:
    con = connect_warehouse(warehouse, read_only=True)
    try:
        as_of = last_data_day(con)
        if as_of is None:
            raise ValueError(f"{warehouse}: marts.orders is empty; build the warehouse first")
        h = config.churn.horizon_days
        bt = run_backtest(con, as_of, h, model_params(config))
        out: dict[str, Any] = {
            "warehouse": str(warehouse),
            "as_of": as_of.isoformat(),
            "horizon_days": h,
            "train_cutoff": bt.train_cutoff.isoformat(),
            "eval_cutoff": bt.eval_cutoff.isoformat(),
            "calibration_method": bt.model.calibration_method,
            "training_rows": bt.model.training_rows,
            "churn": dict(bt.metrics),
            "calibration": bt.calibration.to_dicts(),
        }
        forecast = forecast_value(con, as_of, config.value.forecast_method, segments=customer_segments(con))
        value = forecast.value
        out["forecast_method"] = forecast.method
        out["forecast_note"] = forecast.note
        out["revenue_forecast_12m"] = float(value["clv_12m"].sum())
        out["revenue_forecast_12m_bgnbd"] = forecast.bgnbd_total
        if ground_truth is not None:
            joined = bt.evaluation.join(
                oracle_scores(con, ground_truth, bt.eval_cutoff, h), on="customer_id", how="inner"
            )
            out["churn"]["oracle"] = classification_metrics(
                joined["churned"].to_numpy(), joined["oracle_churn"].to_numpy()
            )
            out["oracle_coverage"] = joined.height / max(bt.evaluation.height, 1)
            known = bt.evaluation.join(
                known_rates_scores(con, ground_truth, bt.eval_cutoff, h), on="customer_id", maintain_order="left"
            )
            out["churn"]["known_rates_ceiling"] = classification_metrics(
                known["churned"].to_numpy(), known["known_rates_churn"].to_numpy()
            )
            out["revenue"] = revenue_forecast_check(value, ground_truth)
            out["revenue"]["relative_error_bgnbd"] = (
                forecast.bgnbd_total / out["revenue"]["true_12m"] - 1 if out["revenue"]["true_12m"] else float("nan")
            )
        return out
    finally:
        con.close()


def _cell(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    return "-" if v is None else f"{v:.4f}"


def markdown_report(result: dict[str, Any]) -> str:
    lines = [
        f"# Scores evaluation ({result['as_of']})",
        "",
        (
            f"Warehouse `{result['warehouse']}`; horizon {result['horizon_days']} days; model trained at "
            f"{result['train_cutoff']}, evaluated at {result['eval_cutoff']} ({result['training_rows']:,} training "
            f"customers, {result['calibration_method']} calibration)."
        ),
        "",
        "| scorer | ROC-AUC | PR-AUC | Brier | top-decile lift | customers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in SCORERS:
        m = result["churn"].get(name)
        if m:
            lines.append(
                f"| {name} | {_cell(m, 'roc_auc')} | {_cell(m, 'pr_auc')} | {_cell(m, 'brier')} | "
                f"{_cell(m, 'top_decile_lift')} | {m['customers']:,} |"
            )
    lines += [
        "",
        "Calibration by decile of the predicted probability (backtest):",
        "",
        "| decile | customers | mean predicted | observed |",
        "| --- | --- | --- | --- |",
    ]
    for r in result["calibration"]:
        lines.append(f"| {r['decile']} | {r['customers']:,} | {r['mean_predicted']:.3f} | {r['observed_rate']:.3f} |")
    lines += [
        "",
        (
            f"12-month revenue forecast (sum of clv_12m): {result['revenue_forecast_12m']:,.0f} "
            f"({result['forecast_note']}); plain BG/NBD x Gamma-Gamma: "
            f"{result['revenue_forecast_12m_bgnbd']:,.0f}"
        ),
    ]
    if "revenue" in result:
        r = result["revenue"]
        lines.append(
            f"True revenue of the 365 days after {result['as_of']}: {r['true_12m']:,.0f} "
            f"(forecast error {100 * r['relative_error']:+.1f} %; plain BG/NBD "
            f"{100 * r['relative_error_bgnbd']:+.1f} %)"
        )
    return "\n".join(lines) + "\n"
