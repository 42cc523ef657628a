"""Benchmark of the warehouse step: identity resolution + dbt build, wall time and peak memory.

    CRM_WAREHOUSE_PATH=/tmp/crm-bench/medium/warehouse/crm.duckdb \\
        .venv/bin/python benchmarks/bench_identity.py --ground-truth /tmp/crm-bench/medium/ground_truth

Runs on a warehouse whose raw.* tables are already loaded (e.g. by
``benchmarks/bench_pipeline.py --scale medium --stages generate,ingest``). Each stage runs in its own
process so its peak memory (max RSS from wait4, children included for dbt) is its own:

- ``dbt_staging``: ``dbt build`` of seeds and staging views (+ tests);
- ``identity``: identity resolution (normalisation, rules and guard, training the model when the
  company has none or has grown, Splink scoring of new descriptions, clusters, stable ids); run
  it twice to see a nightly run after the first; ``--reresolve`` scores every pair again;
- ``dbt_warehouse``: ``dbt build`` of intermediate models and marts (+ tests and unit tests).

With ``--ground-truth`` the pairwise precision/recall is printed too. Results are printed as JSON.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm.settings import load_settings  # noqa: E402 (after the path: run as a script)
from pipelines.defs.warehouse.assets import DBT_PROJECT_DIR, STEPS, dbt_executable, prepare_manifest  # noqa: E402


def _warehouse() -> Path:
    """The warehouse of the sources config (CRM_CONFIG; CRM_WAREHOUSE_PATH moves it)."""
    return load_settings().warehouse_path


def _measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)})
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss / 1024


def _identity_stage(reresolve: bool) -> None:
    from crm.identity.resolution import run_identity_resolution, settings_for

    settings = load_settings()
    con = settings.connect_warehouse()
    try:
        # as the build runs it: the model trained on the company and kept under the data folder
        summary = run_identity_resolution(con, settings_for(settings, reresolve=reresolve))
    finally:
        con.close()
    print(
        json.dumps(
            {
                "mode": summary.mode,
                "model_trained": summary.model_trained,
                "profiles": summary.profiles,
                "new_profiles_scored": summary.new_profiles_scored,
                **{k: round(v, 2) for k, v in summary.stage_seconds.items()},
            }
        ),
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ground-truth", type=Path, default=None)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--reresolve", action="store_true", help="Score every pair again (a full re-resolution).")
    parser.add_argument("--only-identity", action="store_true", help="Run the identity stage alone (staging built).")
    args = parser.parse_args()
    if args.stage == "identity":
        _identity_stage(args.reresolve)
        return
    prepare_manifest()
    dbt = dbt_executable()
    target = ["--vars", json.dumps({"warehouse_path": str(_warehouse())})]

    def dbt_step(name: str) -> list[str]:
        select, exclude = STEPS[name]
        return [dbt, "build", "--quiet", "--select", select, *(["--exclude", exclude] if exclude else []), *target]

    identity = [sys.executable, __file__, "--stage", "identity", *(["--reresolve"] if args.reresolve else [])]
    stages = [
        ("dbt_staging", dbt_step("dbt_staging"), DBT_PROJECT_DIR),
        ("identity", identity, Path.cwd()),
        ("dbt_warehouse", dbt_step("dbt_warehouse"), DBT_PROJECT_DIR),
    ]
    if args.only_identity:
        stages = [("identity", identity, Path.cwd())]
    results = []
    for name, cmd, cwd in stages:
        wall, rss = _measure(cmd, cwd)
        results.append({"stage": name, "wall_s": round(wall, 1), "peak_rss_mib": round(rss)})
        print(f"{name:14s} {wall:7.1f}s  {rss:8.0f} MiB", file=sys.stderr, flush=True)
    out = {
        "warehouse": str(_warehouse()),
        "stages": results,
        "identity_plus_dbt_s": round(sum(r["wall_s"] for r in results), 1),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "cpus": os.cpu_count(),
    }
    if args.ground_truth:
        from crm.identity.evaluation import evaluate_warehouse

        out["identity_metrics"] = evaluate_warehouse(_warehouse(), args.ground_truth).as_dict()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
