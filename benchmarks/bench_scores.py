"""The scores at scale: point-in-time features, training (backtest + published model), nightly scoring.

    .venv/bin/python benchmarks/bench_scores.py --built /tmp/crm-bench/large-built --repeats 1

``--built`` holds a built ``warehouse/crm.duckdb`` (marts present). It is only read: the warehouse is
copied into ``--workdir`` and every stage writes there. Each repeat runs in a fresh subprocess so the
peak memory (max RSS of that process, DuckDB included) belongs to the stages alone:

- features: ``build_features`` at the scoring cut-off T (one of the three cut-offs a retraining needs);
- training: ``train_and_register`` forced (features at T-2H, T-H; labels; backtest model, BG/NBD
  baseline, published model at T-H; skops file, card, registry);
- scoring: ``score_and_publish`` (features at T, probabilities + reasons, BG/NBD + Gamma-Gamma,
  loyalty, benefits, actions, rep books, drift; tables replaced).

Medians over ``--repeats``; results print as a table and go to benchmarks/results/scores_<customers>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _one_run(warehouse: Path, models: Path) -> dict:
    from crm.scoring.service import connect_warehouse, score_and_publish, train_and_register
    from crm.settings import load_scoring_config
    from models_ml.features import build_features, last_data_day

    config = load_scoring_config()
    con = connect_warehouse(warehouse)
    try:
        as_of = last_data_day(con)
        started = time.perf_counter()
        features = build_features(con, as_of)
        t_features = time.perf_counter() - started
        started = time.perf_counter()
        trained = train_and_register(con, config, models, force=True)
        t_training = time.perf_counter() - started
        started = time.perf_counter()
        scored = score_and_publish(con, config, models)
        t_scoring = time.perf_counter() - started
        customers = con.execute("select count(*) from marts.customers").fetchall()[0][0]
    finally:
        con.close()
    return {
        "customers": customers,
        "scored": scored.customers,
        "feature_rows": features.height,
        "features_s": t_features,
        "training_s": t_training,
        "scoring_s": t_scoring,
        "total_s": t_features + t_training + t_scoring,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "backtest_roc_auc": trained.metrics["model"]["roc_auc"],
        "training_rows": trained.metrics["training_rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--built", type=Path, help="folder with warehouse/crm.duckdb")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one_run(args.child / "crm.duckdb", args.child / "models")))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-scores-", dir=args.workdir))
    try:
        shutil.copyfile(args.built / "warehouse" / "crm.duckdb", workdir / "crm.duckdb")
        runs = []
        for i in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(workdir)],
                capture_output=True,
                text=True,
                check=False,
                cwd=ROOT,
            )
            if out.returncode != 0:
                raise SystemExit(f"run {i + 1} failed:\n{out.stderr[-3000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {k: statistics.median(r[k] for r in runs) for k in ("features_s", "training_s", "scoring_s", "total_s")}
    summary.update(
        peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
        repeats=len(runs),
        built=str(args.built),
        **{k: runs[0][k] for k in ("customers", "scored", "feature_rows", "backtest_roc_auc", "training_rows")},
    )
    print(f"{'stage':<12}{'median s':>10}")
    for stage in ("features", "training", "scoring", "total"):
        print(f"{stage:<12}{summary[stage + '_s']:>10.1f}")
    print(
        f"peak memory {summary['peak_rss_mib']:.0f} MiB; customers {summary['customers']:,}, "
        f"scored {summary['scored']:,}; training rows {summary['training_rows']:,}; repeats {len(runs)}"
    )
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"scores_{summary['customers']}.json").write_text(
        json.dumps({"summary": summary, "runs": runs}, indent=2)
    )


if __name__ == "__main__":
    main()
