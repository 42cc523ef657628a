"""Ground truth: who every record really is, the true future, every malformed row, the mess report.

The mess rates are measured on the records exactly as they were written to the sources (the same
frames the writers serialised), classified against the person each record came from, so the
report states what is in the files rather than the probabilities the generator aimed for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from simulator.behaviour import NO_TIME, PARAMS
from simulator.config import SimulationConfig, day_name, dt_expr

PHONE_FORMATS = {
    "international_spaced": r"^\+44 \d",
    "e164": r"^\+44\d+$",
    "parentheses": r"^\(0\d+\) ",
    "national_spaced": r"^0\d+ \d",
    "national_digits": r"^0\d+$",
}


def persons_frame(cfg: SimulationConfig, persons: pl.DataFrame, dropout_t: np.ndarray) -> pl.DataFrame:
    return persons.with_columns(dropout_t=pl.Series(dropout_t)).select(
        "person_id",
        "first_name",
        "last_name",
        "email",
        "alt_email",
        phone="phone_e164",
        city="city",
        postcode="postcode",
        segment="segment",
        account_idx="account_idx",
        purchase_rate="purchase_rate",
        base_purchase_rate="base_rate",
        rep_effect="rep_effect",
        dropout_prob="dropout_prob",
        spend_shape="spend_shape",
        spend_scale="spend_scale",
        first_purchase_at=dt_expr("t0", cfg),
        true_dropout_at=pl.when(pl.col("dropout_t") < NO_TIME).then(dt_expr("dropout_t", cfg)),
        rep_id=pl.col("rep_idx") + 1,
    )


def classify_emails(records: pl.DataFrame, persons: pl.DataFrame) -> pl.DataFrame:
    """Adds ``email_class`` comparing the written email with the person's addresses."""
    truth = persons.select("person_idx", _true="email", _alt="alt_email", _shared="shared_mailbox")
    norm = pl.col("email").str.strip_chars().str.to_lowercase()
    return (
        records.join(truth, on="person_idx", how="left", maintain_order="left")
        .with_columns(
            email_class=pl.when(pl.col("email").is_null() | (pl.col("email") == ""))
            .then(pl.lit("missing"))
            .when(pl.col("email") == pl.col("_true"))
            .then(pl.lit("exact"))
            .when(norm == pl.col("_true"))
            .then(pl.lit("case_or_space"))
            .when(norm == pl.col("_alt"))
            .then(pl.lit("other_address"))
            .when(norm == pl.col("_shared"))
            .then(pl.lit("shared_mailbox"))
            .otherwise(pl.lit("typo"))
        )
        .drop("_true", "_alt", "_shared")
    )


def phone_format(col: str = "phone") -> pl.Expr:
    expr = pl.lit(None, dtype=pl.String)
    for name, pattern in reversed(PHONE_FORMATS.items()):
        expr = pl.when(pl.col(col).str.contains(pattern)).then(pl.lit(name)).otherwise(expr)
    return expr


def _shares(series: pl.Series) -> dict[str, float]:
    n = len(series)
    counts = series.value_counts(sort=True)
    return {str(k): round(v / n, 4) for k, v in sorted(counts.iter_rows(), key=lambda r: str(r[0]))} if n else {}


def identity_rates(records: pl.DataFrame, persons: pl.DataFrame, n_persons: int) -> dict:
    """records: source, person_idx, first_name, last_name, email, phone (as written)."""
    systems = records.group_by("person_idx").agg(n_systems=pl.col("source").n_unique())
    multi = systems.filter(pl.col("n_systems") >= 2)["person_idx"]
    cross = classify_emails(records.filter(pl.col("person_idx").is_in(multi.implode())), persons)
    names = records.join(persons.select("person_idx", _f="first_name", _l="last_name"), on="person_idx", how="left")
    name_variant = ((names["first_name"] != names["_f"]) | (names["last_name"] != names["_l"])).fill_null(True)
    phones = records.filter(pl.col("phone").is_not_null()).select(fmt=phone_format())
    email_shares = _shares(cross["email_class"])
    return {
        "persons_in_2plus_systems_share": round(len(multi) / n_persons, 4),
        "persons_per_system_count": {
            s: int(records.filter(pl.col("source") == s)["person_idx"].n_unique())
            for s in sorted(records["source"].unique())
        },
        "cross_system_records": cross.height,
        "cross_system_email_shares": email_shares,
        "email_written_differently_share": email_shares.get("case_or_space", 0.0),
        "email_typo_share": email_shares.get("typo", 0.0),
        "email_other_address_share": email_shares.get("other_address", 0.0),
        "email_shared_mailbox_share": email_shares.get("shared_mailbox", 0.0),
        "name_variant_share": round(float(name_variant.mean()), 4),
        "phone_format_shares": _shares(phones["fmt"].fill_null("other")),
        "phone_formats_count": int(phones["fmt"].drop_nulls().n_unique()),
    }


def write_truth(
    truth_dir: Path,
    cfg: SimulationConfig,
    persons: pl.DataFrame,
    record_map: pl.DataFrame,
    future: pl.DataFrame,
    malformed: pl.DataFrame,
    report: dict,
) -> None:
    truth_dir.mkdir(parents=True, exist_ok=True)
    persons.write_parquet(truth_dir / "persons.parquet", statistics=False)
    record_map.write_parquet(truth_dir / "record_map.parquet", statistics=False)
    future.write_parquet(truth_dir / "future_orders.parquet", statistics=False)
    malformed.write_parquet(truth_dir / "malformed.parquet", statistics=False)
    (truth_dir / "mess_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def schema_days(cfg: SimulationConfig, marketing_day: int, support_day: int) -> dict[str, object]:
    return {
        "marketing_schema_change_day": day_name(cfg, marketing_day),
        "support_schema_change_day": day_name(cfg, support_day),
    }


def process_parameters() -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in PARAMS.__dict__.items()}
