"""Probabilistic matching with Splink (DuckDB backend, in memory, offline).

Splink compares *profiles* (distinct combinations of the match fields; a customer who raised
twenty tickets from one address is one profile) and only pairs that the deterministic rules left
in different clusters: every blocking rule carries ``l.det_cluster <> r.det_cluster``.

The model (m and u probabilities, prior) is trained on the simulated medium company and shipped as
``splink_model.json`` next to this file, so a nightly run scores without retraining and a small
company (too small to train on) gets the same model. ``train_model`` retrains it; the match
threshold was chosen from the precision/recall sweep recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

DEFAULT_MODEL_PATH = Path(__file__).with_name("splink_model.json")
DEFAULT_THRESHOLD = 0.95
SPLINK_MEMORY_LIMIT = os.environ.get("CRM_SPLINK_MEMORY_LIMIT", "4GB")

MATCH_COLUMNS = (
    "first_name_canon",
    "first_initial",
    "last_name_key",
    "email",
    "email_local_letters",
    "email_match",
    "email_signature",
    "email_domain",
    "email_company_domain",
    "phone_e164",
    "phone_match",
    "city_key",
    "postcode_key",
)

# Candidate pairs: equal on one of these, and not already in one deterministic cluster. Names alone
# never make a block: the simulated names are common (a full name is shared by ~7 people).
BLOCKING_KEYS: tuple[tuple[str, ...], ...] = (
    ("email_local_letters",),
    ("last_name_key", "email_company_domain"),
    # letter typos at a webmail provider keep the surname, the domain and the non-letters
    ("last_name_key", "email_domain", "email_signature"),
    ("first_initial", "last_name_key", "postcode_key"),
    ("email",),
    ("phone_e164",),
)

logger = logging.getLogger(__name__)

# Rules whose matches are (nearly) all true, for estimating the prior; recall = the share of true
# pairs they find (deterministic rules found ~92% of true pairs on the simulated companies).
PRIOR_RULES = ["l.email_match = r.email_match", "l.phone_match = r.phone_match and l.last_name_key = r.last_name_key"]
PRIOR_RECALL = 0.9
MIN_PROFILES_FOR_PRIOR = 500


@dataclass(frozen=True)
class MatchSettings:
    threshold: float = DEFAULT_THRESHOLD
    model_path: Path | None = DEFAULT_MODEL_PATH


def _blocking_rules() -> list[str]:
    rules = []
    for keys in BLOCKING_KEYS:
        eq = " and ".join(f"l.{k} = r.{k}" for k in keys)
        rules.append(f"{eq} and l.det_cluster <> r.det_cluster")
    return rules


def _comparisons() -> list:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def null(col: str):
        return cll.CustomLevel(f'"{col}_l" is null or "{col}_r" is null').configure(is_null_level=True)

    return [
        cl.CustomComparison(
            output_column_name="first_name",
            comparison_levels=[
                null("first_name_canon"),
                # no term-frequency adjustment on names: measured, it adds nothing here, and on a
                # small company the live frequencies make every name look common
                cll.ExactMatchLevel("first_name_canon"),
                cll.CustomLevel(
                    "(length(first_name_canon_l) = 1 or length(first_name_canon_r) = 1) "
                    "and first_initial_l = first_initial_r",
                    label_for_charts="Initial matches the name",
                ),
                cll.JaroWinklerLevel("first_name_canon", 0.88),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="last_name_key",
            comparison_levels=[
                null("last_name_key"),
                cll.ExactMatchLevel("last_name_key"),
                cll.JaroWinklerLevel("last_name_key", 0.92),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="email",
            comparison_levels=[
                # role mailboxes (info@, office@) are null here: an equal one is no evidence
                null("email_match"),
                cll.ExactMatchLevel("email_match"),
                # A typo changes letters; namesakes' addresses differ in digits and separators
                # (mohammed.smith92 / mohammed.smith.2) or follow their different first names.
                cll.CustomLevel(
                    "email_signature_l = email_signature_r and damerau_levenshtein(email_match_l, email_match_r) <= 2"
                    " and (first_name_canon_l = first_name_canon_r or first_name_canon_l is null"
                    " or first_name_canon_r is null)",
                    label_for_charts="Letter typo (same digits, separators and first name)",
                ),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="place",
            comparison_levels=[
                cll.CustomLevel(
                    "(postcode_key_l is null or postcode_key_r is null)"
                    " and (email_domain_l is null or email_domain_r is null)"
                    " and (city_key_l is null or city_key_r is null)"
                ).configure(is_null_level=True),
                cll.ExactMatchLevel("postcode_key"),
                # One comparison for postcode, mail domain and city: colleagues share all three, so
                # they must not count three times. Term frequencies on the domain: a shared company
                # domain says more than a shared webmail one.
                cll.ExactMatchLevel("email_domain").configure(
                    tf_adjustment_column="email_domain", tf_adjustment_weight=1.0
                ),
                cll.ExactMatchLevel("city_key"),
                cll.ElseLevel(),
            ],
        ),
        # a phone shared by people with different surnames (a switchboard) is null here
        cl.ExactMatch("phone_match"),
    ]


# m probabilities (P(level | same person)) set by judgement, not by EM: with names this common
# (a full name is shared by ~7 people in the simulated company) EM drifts to a "same name" class
# instead of a "same person" class. u probabilities and the prior are estimated from the data;
# the threshold is chosen from the precision/recall sweep (docs/benchmarks.md).
PRIOR_M: dict[str, list[float]] = {
    # levels after the null level, in order
    "first_name": [0.91, 0.06, 0.02, 0.01],
    "last_name_key": [0.98, 0.015, 0.005],
    "email": [0.55, 0.06, 0.39],
    "place": [0.50, 0.25, 0.10, 0.15],
    "phone_match": [0.80, 0.20],
}


def apply_prior_m(model: dict) -> dict:
    for comparison in model["comparisons"]:
        levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
        for lvl, m in zip(levels, PRIOR_M[comparison["output_column_name"]], strict=True):
            lvl["m_probability"] = m
    return model


def splink_settings() -> dict:
    """The untrained model: comparisons and blocking rules (as a settings dict)."""
    from splink import SettingsCreator

    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="profile_id",
        comparisons=_comparisons(),
        blocking_rules_to_generate_predictions=_blocking_rules(),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=[],
    )
    return creator.get_settings("duckdb").as_dict()


# A mail domain held by more profiles than this is a webmail provider: blocking on it (with the
# surname) would compare every namesake at that provider, quadratic in the company's size.
MAX_COMPANY_DOMAIN_PROFILES = 200


def _with_company_domain(profiles: pl.DataFrame) -> pl.DataFrame:
    size = pl.len().over("email_domain")
    return profiles.with_columns(
        pl.when(pl.col("email_domain").is_not_null() & (size <= MAX_COMPANY_DOMAIN_PROFILES))
        .then(pl.col("email_domain"))
        .alias("email_company_domain")
    )


def _register(profiles: pl.DataFrame):
    from splink import DuckDBAPI

    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    # bounded memory: Splink's pair tables spill to disk instead of growing without limit
    con.execute(f"set memory_limit = '{SPLINK_MEMORY_LIMIT}'")
    con.execute(f"set temp_directory = '{Path(tempfile.gettempdir()) / 'crm_splink_spill'}'")
    db_api = DuckDBAPI(connection=con)
    cols = ["profile_id", "det_cluster", *MATCH_COLUMNS]
    frame = _with_company_domain(profiles).select(cols).to_arrow()
    df = db_api.register(frame, dataset_display_name="profiles")
    return con, db_api, df


def train_model(profiles: pl.DataFrame, out_path: Path | None = None, *, seed: int = 42) -> dict:
    """Estimate u and the prior on the given profiles (thousands of records), set m from PRIOR_M."""
    from splink import Linker

    con, _, df = _register(profiles)
    try:
        linker = Linker(df, splink_settings(), log_level=logging.WARNING)
        linker.training.estimate_probability_two_random_records_match(PRIOR_RULES, recall=PRIOR_RECALL)
        linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=seed)
        model = apply_prior_m(linker.misc.save_model_to_json())
    finally:
        con.close()
    if out_path:
        Path(out_path).write_text(json.dumps(model, indent=2, sort_keys=True) + "\n")
    return model


def load_model(path: Path | None = DEFAULT_MODEL_PATH) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    model = json.loads(Path(path).read_text())
    # blocking rules are this module's, whatever the file says (they carry the det_cluster guard)
    model["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": r, "sql_dialect": "duckdb"} for r in _blocking_rules()
    ]
    return model


def predict_pairs(profiles: pl.DataFrame, model: dict, threshold: float) -> pl.DataFrame:
    """Scored candidate pairs at or above ``threshold``: (profile_id_l, profile_id_r, match_probability)."""
    from splink import Linker

    empty = pl.DataFrame(schema={"profile_id_l": pl.Int64, "profile_id_r": pl.Int64, "match_probability": pl.Float64})
    if profiles.height < 2:
        return empty
    con, _, df = _register(profiles)
    try:
        linker = Linker(df, model, log_level=logging.WARNING)
        if profiles.height >= MIN_PROFILES_FOR_PRIOR:
            # The prior (chance that two random records are one person) scales with 1/size of the
            # company: re-estimate it on this data so one threshold means the same at every scale.
            linker.training.estimate_probability_two_random_records_match(PRIOR_RULES, recall=PRIOR_RECALL)
        pred = linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")
        table = con.execute(
            f"select profile_id_l, profile_id_r, match_probability from {pred.physical_name}"
        ).to_arrow_table()
    finally:
        con.close()
    out = pl.from_arrow(table)
    if out.height == 0:
        return empty
    return out.select(
        pl.col("profile_id_l").cast(pl.Int64),
        pl.col("profile_id_r").cast(pl.Int64),
        pl.col("match_probability").cast(pl.Float64),
    )
