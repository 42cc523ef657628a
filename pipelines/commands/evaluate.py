"""`crm evaluate ...`: measure the warehouse against the simulator's ground truth.

`crm evaluate identity` compares ``identity.records`` (found customers) with the ground truth's
``record_map.parquet`` (true persons) and prints pairwise precision, recall and F1 plus the numbers
of true and found customers. ``--sweep`` re-runs the matching in memory (read-only) at several
Splink thresholds, which is how the default threshold was chosen (docs/benchmarks.md).
"""

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

evaluate_app = typer.Typer(no_args_is_help=True, help="Measure the warehouse against the ground truth.")
console = Console()

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_THRESHOLDS = "0.5,0.8,0.9,0.95,0.99,0.995,0.999"


@evaluate_app.callback()
def _evaluate() -> None:
    """Measure the warehouse against the simulator's ground truth (CRM_WAREHOUSE_PATH, CRM_GROUND_TRUTH_DIR)."""


def _path_from_env(var: str, default: str) -> Path:
    path = Path(os.environ.get(var) or default)
    return path if path.is_absolute() else PROJECT_ROOT / path


@evaluate_app.command("identity")
def identity(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    sweep: bool = typer.Option(False, "--sweep", help="Also re-run matching at several Splink thresholds."),
    thresholds: str = typer.Option(DEFAULT_THRESHOLDS, help="Comma-separated thresholds for --sweep."),
) -> None:
    """Pairwise precision/recall/F1 of identity resolution, and true vs found customers."""
    from pipelines.defs.warehouse.evaluation import evaluate_warehouse

    warehouse = _path_from_env("CRM_WAREHOUSE_PATH", "data/warehouse/crm.duckdb")
    truth = _path_from_env("CRM_GROUND_TRUTH_DIR", "data/ground_truth")
    if not warehouse.exists():
        console.print(f"[red]No warehouse at {warehouse}[/red] (run `crm build`, or set CRM_WAREHOUSE_PATH).")
        raise typer.Exit(2)
    if not (truth / "record_map.parquet").exists():
        console.print(f"[red]No ground truth at {truth}[/red] (set CRM_GROUND_TRUTH_DIR).")
        raise typer.Exit(2)
    metrics = evaluate_warehouse(warehouse, truth)
    rows = []
    if sweep:
        from pipelines.defs.warehouse.identity_sweep import threshold_sweep

        rows = threshold_sweep(warehouse, truth, [float(t) for t in thresholds.split(",") if t.strip()])
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
    table.add_row("true pairs / found pairs / both", f"{metrics.true_pairs:,} / {metrics.found_pairs:,} / "
                  f"{metrics.true_positive_pairs:,}")
    console.print(table)
    if sweep:
        st = Table(title="Threshold sweep (matching re-run in memory)")
        for col in ("threshold", "precision", "recall", "F1", "found customers", "probabilistic links"):
            st.add_column(col, justify="right")
        for r in rows:
            st.add_row(str(r["threshold"]), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                       f"{r['found_customers']:,}", f"{r['probabilistic_edges']:,}")
        console.print(st)
