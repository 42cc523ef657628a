"""`crm evaluate ...`: measure the warehouse against the simulator's ground truth.

`crm evaluate identity` compares ``identity.records`` (found customers) with the ground truth's
``record_map.parquet`` (true persons) and prints pairwise precision, recall and F1 plus the numbers
of true and found customers. ``--sweep`` re-runs the matching in memory (read-only) at several
Splink thresholds, which is how the default threshold was chosen (docs/benchmarks.md).

`crm evaluate scores` re-runs the churn backtest in memory (read-only) and prints the model against
the recency and BG/NBD baselines, a ceiling that knows every person's true rates, and the oracle
that knows who has dropped out; calibration by decile; the 12-month revenue forecast against the
true future revenue. ``--json`` for machines; a markdown report is written either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crm.settings import ConfigError, Settings, load_scoring_config, load_settings

evaluate_app = typer.Typer(no_args_is_help=True, help="Measure the warehouse against the ground truth.")
console = Console()

DEFAULT_THRESHOLDS = "0.5,0.8,0.9,0.95,0.99,0.995,0.999"


@evaluate_app.callback()
def _evaluate() -> None:
    """Measure the warehouse (of the sources config, CRM_CONFIG) against the simulator's ground truth."""


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def _warehouse_and_truth() -> tuple[Path, Path]:
    """The warehouse to measure (must exist; the sources config names it, as for `crm build`) and the
    ground-truth folder (checked by each command)."""
    settings = _settings()
    warehouse = settings.warehouse_path
    if not warehouse.exists():
        console.print(f"[red]No warehouse at {warehouse}[/red] (run `crm build`, or set CRM_WAREHOUSE_PATH).")
        raise typer.Exit(2)
    return warehouse, settings.ground_truth_dir or Path("data/ground_truth")


@evaluate_app.command("identity")
def identity(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    sweep: bool = typer.Option(False, "--sweep", help="Also re-run matching at several Splink thresholds."),
    thresholds: str = typer.Option(DEFAULT_THRESHOLDS, help="Comma-separated thresholds for --sweep."),
) -> None:
    """Pairwise precision/recall/F1 of identity resolution, and true vs found customers."""
    from crm.identity.evaluation import evaluate_warehouse

    warehouse, truth = _warehouse_and_truth()
    if not (truth / "record_map.parquet").exists():
        console.print(f"[red]No ground truth at {truth}[/red] (set CRM_GROUND_TRUTH_DIR).")
        raise typer.Exit(2)
    metrics = evaluate_warehouse(warehouse, truth)
    rows = []
    if sweep:
        from crm.identity.resolution import settings_for
        from crm.identity.sweep import threshold_sweep

        rows = threshold_sweep(
            warehouse, truth, [float(t) for t in thresholds.split(",") if t.strip()], settings_for(_settings())
        )
    if as_json:
        out = {"warehouse": str(warehouse), "ground_truth": str(truth), **metrics.as_dict()}
        if sweep:
            out["sweep"] = rows
        typer.echo(json.dumps(out, indent=2))
        return

    table = Table(title="Identity resolution vs ground truth (pairwise)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("precision", f"{metrics.precision:.4f}")
    table.add_row("recall", f"{metrics.recall:.4f}")
    table.add_row("F1", f"{metrics.f1:.4f}")
    table.add_row("true customers (persons)", f"{metrics.true_customers:,}")
    table.add_row("found customers", f"{metrics.found_customers:,}")
    table.add_row("records evaluated", f"{metrics.records_evaluated:,}")
    table.add_row("records not in the ground truth", f"{metrics.records_unmatched_in_truth:,}")
    table.add_row(
        "true pairs / found pairs / both",
        f"{metrics.true_pairs:,} / {metrics.found_pairs:,} / {metrics.true_positive_pairs:,}",
    )
    console.print(table)
    if sweep:
        st = Table(title="Threshold sweep (matching re-run in memory)")
        for col in ("threshold", "precision", "recall", "F1", "found customers", "probabilistic links"):
            st.add_column(col, justify="right")
        for r in rows:
            st.add_row(
                str(r["threshold"]),
                f"{r['precision']:.4f}",
                f"{r['recall']:.4f}",
                f"{r['f1']:.4f}",
                f"{r['found_customers']:,}",
                f"{r['probabilistic_edges']:,}",
            )
        console.print(st)


@evaluate_app.command("scores")
def scores(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    report: str = typer.Option(
        "", "--report", help="Markdown report path (default: <data dir>/reports/scores_evaluation.md)."
    ),
) -> None:
    """Churn backtest vs baselines and oracle, calibration by decile, 12-month revenue forecast vs truth."""
    from crm.scoring.report import SCORERS, evaluate_scores, markdown_report

    warehouse, truth = _warehouse_and_truth()
    result = evaluate_scores(
        warehouse,
        load_scoring_config(_settings().scoring_config),
        truth if (truth / "persons.parquet").exists() else None,
    )
    report_path = Path(report) if report else _settings().data_dir / "reports" / "scores_evaluation.md"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(markdown_report(result), encoding="utf-8")
    result["report"] = str(report_path)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return

    table = Table(
        title=f"Churn backtest: train {result['train_cutoff']}, evaluate {result['eval_cutoff']}, "
        f"H = {result['horizon_days']} days"
    )
    for col in ("scorer", "ROC-AUC", "PR-AUC", "Brier", "top-decile lift", "customers"):
        table.add_column(col, justify="left" if col == "scorer" else "right")
    for name in SCORERS:
        m = result["churn"].get(name)
        if m:
            table.add_row(
                name,
                f"{m['roc_auc']:.4f}",
                f"{m['pr_auc']:.4f}",
                f"{m['brier']:.4f}" if "brier" in m else "-",
                f"{m['top_decile_lift']:.2f}",
                f"{m['customers']:,}",
            )
    console.print(table)
    cal = Table(title="Calibration by decile (backtest)")
    for col in ("decile", "customers", "mean predicted", "observed"):
        cal.add_column(col, justify="right")
    for r in result["calibration"]:
        cal.add_row(str(r["decile"]), f"{r['customers']:,}", f"{r['mean_predicted']:.3f}", f"{r['observed_rate']:.3f}")
    console.print(cal)
    line = f"12-month revenue forecast: {result['revenue_forecast_12m']:,.0f}"
    if "revenue" in result:
        r = result["revenue"]
        line += f"; true: {r['true_12m']:,.0f} ({100 * r['relative_error']:+.1f} %)"
    console.print(line)
    console.print(f"Report written to {report_path}")
