"""Probabilistic matching with Splink (DuckDB backend, in memory, offline), trained on the company's own data.

Splink compares *profiles*: the distinct descriptions of a person found in the records (a customer
who raised twenty tickets from one address is one profile). The model is built from what the
company's records hold: a comparison for each kind of evidence present (names, birth date, street,
house number, place, email, phone, each external id) and blocking passes over the attributes
present, so that a single typo cannot hide a pair (surname + initial, first name + birth date,
phonetic surname + birth date, birth date + postcode, ...). A pass that would compare too many
pairs for the company's size is narrowed with another attribute, or left out.

Training (:func:`train_model`), at build time, on the company's profiles (a seeded sample of them
for a large company):

- u probabilities by random sampling of profile pairs (nearly all of them are two different people);
- m probabilities by expectation maximisation, one session per training pass, each blocking on
  attributes other than the ones it estimates (a pass on the birth date learns how names,
  addresses and places agree within one person, and so on);
- the prior (how many of all pairs are one person) from the data: the fixed point of the expected
  share of matches among the scored training pairs, stored as *duplicates per profile* so that
  it follows the company's size between two trainings.

A company too small to learn from (fewer than :data:`MIN_PROFILES_TO_TRAIN` profiles) gets the
documented fallback: m probabilities from :data:`FALLBACK_M` (judgement, typical of typed person
data), u probabilities and the prior still estimated from its own data. The model is a JSON file
under ``<data_dir>/models/identity/`` with its version; it is trained again when the company has
grown or shrunk by the configured share, or when the kinds of evidence it holds change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from crm.identity.records import frame_view

logger = logging.getLogger(__name__)

MODEL_FORMAT = 2
MODEL_FILE = "splink_model.json"
# Splink's own in-memory DuckDB, beside the warehouse's (capped apart): its pair tables spill to disk
# past this. At the medium company (219k profiles) 1.5 GB trains and scores as fast as 4 GB, with the
# same pairs and weights, and halves the step's peak (training 4.2 -> 2.2 GB); training samples at
# most MAX_TRAINING_PROFILES, so it does not grow with the company.
SPLINK_MEMORY_LIMIT = os.environ.get("CRM_SPLINK_MEMORY_LIMIT", "1536MB")

# Below this many profiles EM has too few pairs of one person to learn from: the fallback m is used.
MIN_PROFILES_TO_TRAIN = 500
# A training run looks at most this many profiles (a seeded sample of a larger company).
MAX_TRAINING_PROFILES = 200_000
U_SAMPLE_PAIRS = 5e6
EM_MAX_PAIRS = 2e6
# An attribute counts as present when this share of profiles (and at least MIN_PRESENT of them) hold it.
MIN_PRESENT_SHARE = 0.01
MIN_PRESENT = 20
# A blocking pass may compare at most this many pairs per profile (and at least MIN_PAIR_BUDGET pairs in all).
PAIRS_PER_PROFILE = 20
MIN_PAIR_BUDGET = 2_000_000
# Pairs weaker than this probability at the trained prior are not kept (far below any review).
STORE_PROBABILITY = 0.01
# Probabilities stay inside (0, 1): a level never seen among matches (or non-matches) is rare, not impossible.
MIN_PROBABILITY = 1e-5

PROFILE_KEY = "profile_key"


# ------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Level:
    """A comparison level: Splink SQL (``x_l``/``x_r``), what it means in words, and its kind."""

    sql: str
    kind: str  # exact | similar | sounds | initial | swapped | typo | close | partial
    label: str


@dataclass(frozen=True)
class ComparisonSpec:
    name: str
    noun: str  # plain words for evidence texts: "first name", "birth date"
    needs: tuple[str, ...]  # every one must be present
    null_sql: str
    levels: tuple[Level, ...]  # non-null levels before the final "differ" level
    fallback_m: tuple[float, ...]  # judgement m per level above, then the "differ" level
    # typical u per level above (two strangers), the prior belief a small company's data updates
    fallback_u: tuple[float, ...] = ()
    optional: tuple[str, ...] = ()  # levels using these columns are kept only when present

    def levels_for(self, present: set[str]) -> list[Level]:
        return [lvl for lvl in self.levels if all(c in present or c not in lvl.sql for c in self.optional)]


def _null(*columns: str) -> str:
    return " or ".join(f'"{c}_l" is null or "{c}_r" is null' for c in columns)


def _jw(column: str, threshold: float) -> str:
    return f"jaro_winkler_similarity({column}_l, {column}_r) >= {threshold}"


def _dl(column: str, distance: int) -> str:
    return f"damerau_levenshtein({column}_l, {column}_r) <= {distance}"


NAME_COMPARISONS = (
    ComparisonSpec(
        "first_name",
        "first name",
        ("first_name_canon",),
        _null("first_name_canon"),
        (
            Level("first_name_canon_l = first_name_canon_r", "exact", "same first name"),
            Level(
                "(length(first_name_canon_l) = 1 or length(first_name_canon_r) = 1) "
                "and first_initial_l = first_initial_r",
                "initial",
                "an initial that fits the first name",
            ),
            Level(_jw("first_name_canon", 0.9), "similar", "similar first names"),
            Level(
                "first_name_key_l = last_name_key_r or last_name_key_l = first_name_key_r",
                "swapped",
                "first name written as the surname",
            ),
        ),
        (0.88, 0.02, 0.06, 0.02, 0.02),
        fallback_u=(0.01, 0.002, 0.01, 0.0005),
        optional=("last_name_key",),
    ),
    ComparisonSpec(
        "last_name",
        "surname",
        ("last_name_key",),
        _null("last_name_key"),
        (
            Level("last_name_key_l = last_name_key_r", "exact", "same surname"),
            Level(_jw("last_name_key", 0.92), "similar", "similar surnames"),
            Level("last_name_phonetic_l = last_name_phonetic_r", "sounds", "surnames that sound alike"),
            Level(
                "last_name_key_l = first_name_key_r or first_name_key_l = last_name_key_r",
                "swapped",
                "surname written as the first name",
            ),
        ),
        (0.9, 0.05, 0.01, 0.02, 0.02),
        fallback_u=(0.002, 0.003, 0.003, 0.0005),
        optional=("last_name_phonetic", "first_name_key"),
    ),
)

COMPARISONS: tuple[ComparisonSpec, ...] = (
    *NAME_COMPARISONS,
    ComparisonSpec(
        "birth_date",
        "birth date",
        ("dob_key",),
        _null("dob_key"),
        (
            Level("dob_key_l = dob_key_r", "exact", "same birth date"),
            Level(_dl("dob_key", 1), "typo", "birth dates one digit apart"),
            Level(
                "substr(dob_key_l, 1, 4) = substr(dob_key_r, 1, 4) and substr(dob_key_l, 5, 2) = "
                "substr(dob_key_r, 7, 2) and substr(dob_key_l, 7, 2) = substr(dob_key_r, 5, 2)",
                "swapped",
                "birth dates with day and month swapped",
            ),
            Level(_dl("dob_key", 2), "close", "birth dates two digits apart"),
        ),
        (0.9, 0.05, 0.01, 0.02, 0.02),
        fallback_u=(5e-5, 5e-4, 5e-5, 2e-3),
    ),
    ComparisonSpec(
        "street",
        "street",
        ("address_key",),
        _null("address_key"),
        (
            Level("address_key_l = address_key_r", "exact", "same street"),
            Level(_jw("address_key", 0.9), "similar", "similar streets"),
        ),
        (0.85, 0.1, 0.05),
        fallback_u=(1e-3, 3e-3),
    ),
    ComparisonSpec(
        "house_number",
        "house number",
        ("street_number_key",),
        _null("street_number_key"),
        (
            Level("street_number_key_l = street_number_key_r", "exact", "same house number"),
            Level(_dl("street_number_key", 1), "typo", "house numbers one digit apart"),
        ),
        (0.88, 0.07, 0.05),
        fallback_u=(0.02, 0.05),
    ),
    ComparisonSpec(
        "address_line2",
        "second address line",
        ("address2_key",),
        _null("address2_key"),
        (
            Level("address2_key_l = address2_key_r", "exact", "same second address line"),
            Level(_jw("address2_key", 0.9), "similar", "similar second address lines"),
        ),
        (0.8, 0.1, 0.1),
        fallback_u=(1e-3, 3e-3),
    ),
    ComparisonSpec(
        # One comparison for postcode, town, mail domain and region: they say the same thing
        # (where someone is), so colleagues or neighbours must not count it three times.
        "place",
        "place",
        (),
        "",
        (
            Level("postcode_key_l = postcode_key_r and city_key_l = city_key_r", "exact", "same postcode and town"),
            Level("postcode_key_l = postcode_key_r", "exact", "same postcode"),
            Level(f"city_key_l = city_key_r and {_dl('postcode_key', 1)}", "typo", "same town, postcodes one apart"),
            Level("city_key_l = city_key_r", "exact", "same town"),
            Level(_dl("postcode_key", 1), "typo", "postcodes one character apart"),
            Level(_jw("city_key", 0.9), "similar", "similar town names"),
            Level("email_domain_l = email_domain_r", "exact", "same mail domain"),
            Level("region_key_l = region_key_r", "partial", "same region"),
        ),
        (0.55, 0.1, 0.05, 0.1, 0.03, 0.03, 0.04, 0.05, 0.05),
        fallback_u=(1e-3, 2e-4, 1e-3, 5e-3, 5e-3, 5e-3, 0.05, 0.15),
        optional=("postcode_key", "city_key", "email_domain", "region_key"),
    ),
    ComparisonSpec(
        "email",
        "email",
        ("email_match",),
        _null("email_match"),
        (
            Level("email_match_l = email_match_r", "exact", "same email"),
            # A typo changes letters; namesakes' addresses differ in digits and separators
            # (mohammed.smith92 / mohammed.smith.2) or follow their different first names.
            Level(
                f"email_signature_l = email_signature_r and {_dl('email_match', 2)} and "
                "(first_name_canon_l = first_name_canon_r or first_name_canon_l is null "
                "or first_name_canon_r is null)",
                "typo",
                "emails with a letter typo",
            ),
        ),
        (0.55, 0.06, 0.39),
        fallback_u=(1e-6, 1e-6),
        optional=("first_name_canon",),
    ),
    ComparisonSpec(
        "phone",
        "phone",
        ("phone_match",),
        _null("phone_match"),
        (
            Level("phone_match_l = phone_match_r", "exact", "same phone"),
            Level(_dl("phone_match", 1), "typo", "phones one digit apart"),
        ),
        (0.75, 0.05, 0.2),
        fallback_u=(1e-6, 1e-5),
    ),
)


# What the place comparison looks at: postcode, town, mail domain (colleagues share it), region.
PLACE_COLUMNS = ("postcode_key", "city_key", "email_domain", "region_key")


def _place_null(present: set[str]) -> str:
    cols = [c for c in PLACE_COLUMNS if c in present]
    return " and ".join(f'("{c}_l" is null or "{c}_r" is null)' for c in cols)


def id_comparison(column: str) -> ComparisonSpec:
    kind = column.removeprefix("id_")
    noun = kind.replace("_", " ")
    return ComparisonSpec(
        column,
        noun,
        (column,),
        _null(column),
        (
            Level(f"{column}_l = {column}_r", "exact", f"same {noun}"),
            Level(_dl(column, 1), "typo", f"{noun}s one character apart"),
        ),
        (0.9, 0.05, 0.05),
        fallback_u=(1e-6, 1e-5),
    )


# Blocking passes, most telling first. Each is a list of attributes that must be equal; a pass is
# used when all its attributes are present, narrowed (REFINE) when it would compare too many pairs.
BLOCKING_PASSES: tuple[tuple[str, ...], ...] = (
    ("last_name_key", "first_initial"),
    ("first_name_canon", "dob_key"),
    ("last_name_phonetic", "dob_key"),
    ("dob_key",),
    ("dob_key", "postcode_key"),
    ("last_name_phonetic", "postcode_key"),
    ("first_name_canon", "postcode_key"),
    ("address_key", "street_number_key"),
    ("street_prefix", "street_number_key"),
    ("last_name_key", "street_number_key"),
    ("postcode_key", "street_number_key"),
    ("email_local_letters",),
    ("last_name_key", "email_company_domain"),
    # letter typos at a webmail provider keep the surname, the domain and the non-letters
    ("last_name_key", "email_domain", "email_signature"),
    ("email_match",),
    ("phone_match",),
    ("last_name_key", "phone_area"),
)
REFINE = ("first_initial", "postcode_key", "city_key", "dob_key", "first_name_canon", "email_domain", "last_name_key")
# EM training passes: each learns every comparison it does not block on.
TRAINING_PASSES: tuple[tuple[str, ...], ...] = (
    ("dob_key",),
    ("last_name_key", "first_initial"),
    ("email_local_letters",),
    ("phone_match",),
    ("postcode_key",),
    ("address_key",),
)

# Derived per profile: blocking keys that are not evidence in themselves.
DERIVED = ("phone_area", "street_prefix")
STREET_PREFIX = 4


@dataclass
class Model:
    """A trained model: which comparisons and passes, the Splink settings (m, u), the prior."""

    version: str
    trained_at: str
    profiles_at_training: int
    duplicates_per_profile: float
    floor_weight: float
    attributes: list[str]
    comparisons: list[str]
    blocking: list[list[str]]
    fallback: bool
    splink: dict
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"format": MODEL_FORMAT, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict) -> Model:
        data = dict(data)
        if data.pop("format", None) != MODEL_FORMAT:
            raise ValueError("model file of another format")
        return cls(**data)

    def prior(self, profiles: int) -> float:
        """The chance that two random profiles are one person, for a company of this many profiles."""
        if profiles < 2:
            return 0.5
        return min(0.5, max(2.0 * self.duplicates_per_profile / (profiles - 1), 1e-12))

    def level_table(self) -> dict[str, list[dict]]:
        """comparison -> levels (gamma, label, kind, weight), for explanations."""
        out = {}
        for comparison in self.splink["comparisons"]:
            levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
            rows = []
            for position, lvl in enumerate(levels):
                m, u = lvl.get("m_probability"), lvl.get("u_probability")
                rows.append(
                    {
                        "gamma": len(levels) - 1 - position,
                        "label": lvl.get("label_for_charts", ""),
                        "weight": math.log2(m / u) if m and u else 0.0,
                    }
                )
            out[comparison["output_column_name"]] = rows
        return out


def present_attributes(profiles: pl.DataFrame) -> set[str]:
    """Attributes enough profiles hold to be worth comparing (and at least two different values)."""
    present = set()
    n = profiles.height
    need = max(2, min(MIN_PRESENT, n // 10), int(MIN_PRESENT_SHARE * n))
    for column in profiles.columns:
        if column == PROFILE_KEY:
            continue
        series = profiles[column]
        if series.len() - series.null_count() >= need and series.drop_nulls().n_unique() >= 2:
            present.add(column)
    return present


def chosen_comparisons(present: set[str]) -> list[ComparisonSpec]:
    out = []
    for spec in COMPARISONS:
        if spec.name == "place":
            if any(c in present for c in ("postcode_key", "city_key", "region_key")):
                out.append(spec)
        elif all(c in present for c in spec.needs):
            out.append(spec)
    out.extend(id_comparison(c) for c in sorted(present) if c.startswith("id_"))
    return out


def _splink_comparison(spec: ComparisonSpec, present: set[str]):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    null_sql = _place_null(present) if spec.name == "place" else spec.null_sql
    levels = [cll.CustomLevel(null_sql, label_for_charts="no value to compare").configure(is_null_level=True)]
    for lvl in spec.levels_for(present):
        levels.append(cll.CustomLevel(lvl.sql, label_for_charts=lvl.label))
    levels.append(cll.ElseLevel().configure(label_for_charts=f"{spec.noun}s differ"))
    return cl.CustomComparison(output_column_name=spec.name, comparison_levels=levels)


def _rule_sql(columns: list[str] | tuple[str, ...]) -> str:
    return " and ".join(f"l.{c} = r.{c}" for c in columns)


def splink_settings(specs: list[ComparisonSpec], present: set[str], blocking: list[list[str]]) -> dict:
    """The Splink settings (untrained) for these comparisons and blocking passes."""
    from splink import SettingsCreator

    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=PROFILE_KEY,
        comparisons=[_splink_comparison(spec, present) for spec in specs],
        blocking_rules_to_generate_predictions=[_rule_sql(cols) for cols in blocking] or ["1 = 0"],
        # the level of each comparison (gamma_*) is kept only with the matching columns
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        additional_columns_to_retain=[],
        # scores are kept as Bayes factors: the prior is applied later, for the company's size then
        probability_two_random_records_match=0.5,
    )
    return creator.get_settings("duckdb").as_dict()


# ------------------------------------------------------------------------------------ profiles


def with_derived_keys(profiles: pl.DataFrame) -> pl.DataFrame:
    """Blocking keys derived from a profile alone: the phone's area (all but 4 digits); the street's
    first letters. (The company mail domain depends on all profiles: it is part of the profile.)"""
    out = profiles
    if "address_key" in out.columns:
        # the street's first letters survive a typo further on ('maclaurinc rescent')
        out = out.with_columns(
            pl.col("address_key").str.replace_all(" ", "").str.slice(0, STREET_PREFIX).alias("street_prefix")
        )
    if "phone_match" in out.columns:
        out = out.with_columns(
            pl.col("phone_match").str.slice(0, pl.col("phone_match").str.len_chars() - 4).alias("phone_area")
        )
    return out


def _connect():
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    con.execute("set enable_progress_bar = false")
    # bounded memory: Splink's pair tables spill to disk instead of growing without limit
    con.execute(f"set memory_limit = '{SPLINK_MEMORY_LIMIT}'")
    con.execute(f"set temp_directory = '{Path(tempfile.gettempdir()) / 'crm_splink_spill'}'")
    return con


def count_pairs(con: duckdb.DuckDBPyConnection, table: str, columns: list[str] | tuple[str, ...]) -> int:
    """Pairs a blocking pass on these columns would compare (nulls never block together)."""
    cols = ", ".join(columns)
    not_null = " and ".join(f"{c} is not null" for c in columns)
    return int(
        con.execute(
            f"select coalesce(sum(n * (n - 1) / 2), 0) from "
            f"(select count(*)::hugeint as n from {table} where {not_null} group by {cols})"
        ).fetchall()[0][0]
    )


def _filled(con, table: str, columns: list[str], extra: str) -> float:
    """The share of profiles holding ``columns`` that also hold ``extra``."""
    held = " and ".join(f"{c} is not null" for c in columns)
    return float(
        con.execute(f"select coalesce(avg(({extra} is not null)::int), 0) from {table} where {held}").fetchall()[0][0]
    )


def _narrowed(con, table: str, columns: list[str], present: set[str], budget: float) -> tuple[list[str], int]:
    """The pass narrowed by the attribute that the profiles it serves hold most often (a postcode
    would hide every pair of addresses without one), until it fits the budget; at most twice."""
    pairs = count_pairs(con, table, columns)
    for _ in range(2):
        if pairs <= budget:
            break
        options = []
        for extra in REFINE:
            if extra in present and extra not in columns:
                narrowed = count_pairs(con, table, [*columns, extra])
                options.append((narrowed > budget, -_filled(con, table, columns, extra), narrowed, extra))
        if not options:
            break
        _, _, pairs, extra = min(options)
        columns = [*columns, extra]
    return columns, pairs


def choose_blocking(
    con, table: str, present: set[str], profiles: int, company_profiles: int | None = None
) -> tuple[list[list[str]], list[str]]:
    """The blocking passes for this company: those whose attributes are present, narrowed until each
    compares at most PAIRS_PER_PROFILE pairs per profile of the whole company. Returns (passes, notes).

    ``table`` may hold a uniform sample (``profiles``) of the company's ``company_profiles``. A pair
    is in the sample with probability n(n-1) / (N(N-1)), so a pass compares about N(N-1) / (n(n-1))
    times as many pairs on the whole company as on the sample (119x for a 200k sample of 2.2M): the
    budget is counted on the company, not on the sample, or the scoring of every profile compares
    hundreds of pairs per profile and spills tens of GB."""
    company = company_profiles or profiles
    scale = max(company * (company - 1), 1) / max(profiles * (profiles - 1), 1)
    budget = max(MIN_PAIR_BUDGET, PAIRS_PER_PROFILE * company) / scale
    chosen: list[list[str]] = []
    notes = []
    for candidate in BLOCKING_PASSES:
        if not all(c in present for c in candidate):
            continue
        columns, pairs = _narrowed(con, table, list(candidate), present, budget)
        if pairs > budget:
            estimate = "" if company == profiles else "about "
            notes.append(f"blocking on {'+'.join(candidate)} left out: {estimate}{round(pairs * scale):,} pairs")
            continue
        if columns not in chosen:
            chosen.append(columns)
    return chosen, notes


# ------------------------------------------------------------------------------------ training


def _floor(splink: dict, u_floor: float = MIN_PROBABILITY) -> dict:
    """Keep every m and u inside (0, 1): a level never seen is rare, not impossible. A level no
    sampled pair of strangers reached has u below one in the pairs sampled, not zero."""
    for comparison in splink["comparisons"]:
        for key in ("m_probability", "u_probability"):
            floor = u_floor if key == "u_probability" else MIN_PROBABILITY
            levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
            values = [lvl.get(key) for lvl in levels]
            values = [v if isinstance(v, (int, float)) and v > 0 else floor for v in values]
            values = [max(v, floor) for v in values]
            total = sum(values)
            for lvl, v in zip(levels, values, strict=True):
                lvl[key] = v / total
    return splink


def _set_fallback_m(splink: dict, specs: list[ComparisonSpec], present: set[str], only_untrained: set[str]) -> None:
    """The judgement m (FALLBACK_M) for the comparisons in ``only_untrained``."""
    by_name = {spec.name: spec for spec in specs}
    for comparison in splink["comparisons"]:
        name = comparison["output_column_name"]
        if name not in only_untrained:
            continue
        spec = by_name[name]
        kept = spec.levels_for(present)
        m_of = dict(zip([lvl.label for lvl in spec.levels], spec.fallback_m[:-1], strict=True))
        levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
        values = [m_of[lvl.label] for lvl in kept] + [spec.fallback_m[-1]]
        for lvl, m in zip(levels, values, strict=True):
            lvl["m_probability"] = m


FALLBACK_M = {spec.name: spec.fallback_m for spec in COMPARISONS}
# The typical u values count as this many sampled pairs of strangers: they decide for a company of
# a few dozen records, and fade out as the company's own sample grows (millions of pairs).
U_PRIOR_PAIRS = 20_000


def _shrink_u(splink: dict, specs: list[ComparisonSpec], present: set[str], pairs_sampled: float) -> None:
    """u = the company's sampled share, pulled towards the typical value by U_PRIOR_PAIRS pseudo-pairs."""
    by_name = {spec.name: spec for spec in specs}
    for comparison in splink["comparisons"]:
        spec = by_name[comparison["output_column_name"]]
        typical = dict(zip([lvl.label for lvl in spec.levels], spec.fallback_u, strict=True))
        kept = [typical[lvl.label] for lvl in spec.levels_for(present)]
        kept.append(max(0.5, 1.0 - sum(kept)))
        levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
        for lvl, prior_u in zip(levels, kept, strict=True):
            sampled = lvl.get("u_probability")
            sampled = sampled if isinstance(sampled, (int, float)) else 0.0
            lvl["u_probability"] = (U_PRIOR_PAIRS * prior_u + pairs_sampled * sampled) / (U_PRIOR_PAIRS + pairs_sampled)


def _trained_comparisons(linker) -> set[str]:
    names = set()
    for comparison in linker._settings_obj.comparisons:
        levels = [lvl for lvl in comparison.comparison_levels if not lvl.is_null_level]
        if any(lvl._trained_m_probabilities for lvl in levels):
            names.add(comparison.output_column_name)
    return names


def _score_table(linker, threshold_weight: float | None):
    return linker.inference.predict(threshold_match_weight=threshold_weight, warning_mode="never")


def estimate_duplicates_per_profile(weights: np.ndarray, profiles: int) -> float:
    """The prior from the data: the share of matches among all pairs (lambda) such that the expected
    number of matches among the scored pairs, given each pair's Bayes factor, is lambda x all pairs.
    Pairs no pass compares are taken as different people. Returned as duplicates per profile."""
    if profiles < 2 or len(weights) == 0:
        return 0.0
    total = profiles * (profiles - 1) / 2.0
    factors = np.exp2(np.clip(weights, -60, 60))
    lam = min(0.5, max(len(weights) / total, 1.0 / total))
    for _ in range(200):
        posterior = lam * factors / (lam * factors + 1.0 - lam)
        new = min(0.5, max(float(posterior.sum()) / total, 1e-12))
        if abs(new - lam) <= 1e-9 * lam:
            lam = new
            break
        lam = new
    return lam * (profiles - 1) / 2.0


def train_model(profiles: pl.DataFrame, *, seed: int = 42) -> Model:
    """Train the model on the company's profiles (``profile_key`` + match keys)."""
    from splink import DuckDBAPI, Linker

    profiles = with_derived_keys(profiles)
    n = profiles.height
    sample = profiles.sample(n=MAX_TRAINING_PROFILES, seed=seed) if n > MAX_TRAINING_PROFILES else profiles
    present = present_attributes(sample)
    specs = chosen_comparisons(present)
    notes: list[str] = []
    con = _connect()
    try:
        con.register("_profiles_arrow", sample.to_arrow())
        con.execute("create table profiles as select * from _profiles_arrow")
        con.unregister("_profiles_arrow")
        blocking, blocking_notes = choose_blocking(con, "profiles", present, sample.height, n)
        notes += blocking_notes
        settings = splink_settings(specs, present, blocking)
        db_api = DuckDBAPI(connection=con)
        linker = Linker(db_api.register("profiles"), settings, log_level=logging.ERROR)
        fallback = sample.height < MIN_PROFILES_TO_TRAIN
        if specs and blocking:
            pairs = min(U_SAMPLE_PAIRS, max(sample.height * (sample.height - 1) / 2, 1))
            linker.training.estimate_u_using_random_sampling(max_pairs=pairs, seed=seed)
            u_floor = max(MIN_PROBABILITY, 0.5 / pairs)
            trained: set[str] = set()
            if not fallback:
                trained = _run_em(linker, con, present, specs, notes)
            splink = json.loads(json.dumps(linker.misc.save_model_to_json()))
            _shrink_u(splink, specs, present, pairs)
            splink = _floor(splink, u_floor)
            untrained = {spec.name for spec in specs} - trained
            if untrained:
                _set_fallback_m(splink, specs, present, untrained)
                notes.append(
                    ("fallback m (too few profiles to train) for " if fallback else "fallback m for ")
                    + ", ".join(sorted(untrained))
                )
            splink = _floor(splink, u_floor)
            weights = _training_weights(con, db_api, splink)
            duplicates = estimate_duplicates_per_profile(weights, sample.height)
        else:
            splink, duplicates = settings, 0.0
            notes.append("no evidence to compare records on: every record stays its own customer")
    finally:
        con.close()
    model = Model(
        version="",
        trained_at=datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        profiles_at_training=n,
        duplicates_per_profile=duplicates,
        floor_weight=0.0,
        attributes=sorted(present),
        comparisons=[spec.name for spec in specs],
        blocking=blocking,
        fallback=fallback,
        splink=splink,
        notes=notes,
    )
    lam = model.prior(sample.height)
    # keep pairs that could matter at any size until the next training (prior at most halved)
    model.floor_weight = _logit2(STORE_PROBABILITY) - _logit2(min(0.5, lam * 2))
    model.version = hashlib.sha256(json.dumps(model.to_json(), sort_keys=True).encode()).hexdigest()[:12]
    return model


def _logit2(p: float) -> float:
    return math.log2(p / (1.0 - p))


def _run_em(linker, con, present: set[str], specs: list[ComparisonSpec], notes: list[str]) -> set[str]:
    """One EM session per training pass whose attributes are present; returns the comparisons trained."""
    for columns in TRAINING_PASSES:
        if not all(c in present for c in columns):
            continue
        if count_pairs(con, "profiles", columns) < 50:
            continue
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                _rule_sql(columns), estimate_without_term_frequencies=True, max_pairs=EM_MAX_PAIRS
            )
        except Exception as exc:  # noqa: BLE001 - Splink raises plain exceptions when EM cannot start
            notes.append(f"EM on {'+'.join(columns)} failed: {exc}")
    return _trained_comparisons(linker)


def _training_weights(con, db_api, splink: dict) -> np.ndarray:
    """The Bayes-factor weights of every pair the blocking passes compare among the training profiles."""
    from splink import Linker

    linker = Linker(db_api.register("profiles"), splink, log_level=logging.ERROR)
    table = _score_table(linker, None)
    weights = con.execute(f"select match_weight from {table.physical_name}").fetchnumpy()["match_weight"]
    return np.asarray(weights, dtype=float)


# ------------------------------------------------------------------------------------- storage


def save_model(model: Model, model_dir: Path) -> Path:
    """Write the model as the current one, and a copy named by its version (for audit)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(model.to_json(), indent=1, sort_keys=True) + "\n"
    (model_dir / f"splink_model-{model.version}.json").write_text(text)
    current = model_dir / MODEL_FILE
    tmp = current.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(current)
    return current


def load_model(model_dir: Path | None) -> Model | None:
    if model_dir is None or not (Path(model_dir) / MODEL_FILE).exists():
        return None
    try:
        return Model.from_json(json.loads((Path(model_dir) / MODEL_FILE).read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("identity model at %s unreadable (%s): training a new one", model_dir, exc)
        return None


def needs_training(model: Model | None, profiles: pl.DataFrame, growth: float) -> str | None:
    """Why the model must be trained again, or None when it still fits the company."""
    if model is None:
        return "no model yet"
    n = profiles.height
    if model.profiles_at_training and abs(n / model.profiles_at_training - 1) > growth:
        return f"the company went from {model.profiles_at_training:,} to {n:,} profiles"
    sample = profiles.sample(n=MAX_TRAINING_PROFILES, seed=0) if n > MAX_TRAINING_PROFILES else profiles
    present = present_attributes(with_derived_keys(sample))
    if {spec.name for spec in chosen_comparisons(present)} != set(model.comparisons):
        return "the kinds of evidence in the records changed"
    return None


# ------------------------------------------------------------------------------------- scoring

EDGE_SCHEMA = {"profile_key_l": pl.Utf8, "profile_key_r": pl.Utf8, "match_weight": pl.Float64, "gammas": pl.Utf8}


def score_pairs(
    model: Model,
    profiles: pl.DataFrame,
    new_keys: pl.Series | None = None,
    *,
    min_weight: float | None = None,
    all_pairs_to: Path | None = None,
) -> pl.DataFrame:
    """Scored pairs of profiles (Bayes-factor weight at least the model's floor).

    ``new_keys`` None: every pair the blocking passes compare. Otherwise only pairs with at least one
    new profile (new x existing, new x new): the nightly run.

    ``all_pairs_to``: every scored pair is written to this Parquet file (in no order), and only the
    pairs of at least ``min_weight`` are returned: a company's pairs, tens of millions, reach the
    warehouse without being held in memory.
    """
    from splink import DuckDBAPI, Linker

    empty = pl.DataFrame(schema=EDGE_SCHEMA)
    if not model.blocking or not model.comparisons or profiles.height < 2:
        return empty
    profiles = with_derived_keys(profiles)
    columns = [PROFILE_KEY, *[c for c in profiles.columns if c != PROFILE_KEY]]
    profiles = profiles.select(columns)
    con = _connect()
    try:
        db_api = DuckDBAPI(connection=con)
        gamma_cols = [f"gamma_{name}" for name in model.comparisons]
        if new_keys is None:
            with frame_view(con, "_p", profiles):
                con.execute("create table profiles as select * from _p")
            linker = Linker(db_api.register("profiles"), model.splink, log_level=logging.ERROR)
            tables = [_score_table(linker, model.floor_weight)]
        else:
            if new_keys.len() == 0:
                return empty
            is_new = pl.col(PROFILE_KEY).is_in(new_keys.implode())
            con.register("_new", profiles.filter(is_new).to_arrow())
            con.register("_old", profiles.filter(~is_new).to_arrow())
            con.execute("create table new_profiles as select * from _new")
            con.execute("create table old_profiles as select * from _old")
            new = db_api.register("new_profiles")
            old = db_api.register("old_profiles")
            linker = Linker(new, model.splink, log_level=logging.ERROR)
            tables = [
                linker.inference.predict_within(new, threshold_match_weight=model.floor_weight, warning_mode="never")
            ]
            if profiles.height > new_keys.len():
                tables.append(
                    linker.inference.predict_between(
                        new, old, threshold_match_weight=model.floor_weight, warning_mode="never"
                    )
                )
        gammas = " || ',' || ".join(f"cast({c} as varchar)" for c in gamma_cols)
        scored = " union all ".join(
            f"select least({PROFILE_KEY}_l, {PROFILE_KEY}_r) as profile_key_l, "
            f"greatest({PROFILE_KEY}_l, {PROFILE_KEY}_r) as profile_key_r, "
            f"match_weight, {gammas} as gammas from {table.physical_name}"
            for table in tables
        )
        if all_pairs_to is not None:
            con.execute(f"copy ({scored}) to '{all_pairs_to}' (format parquet)")
        if min_weight is not None:
            scored = f"select * from ({scored}) where match_weight >= {float(min_weight)!r}"
        out = pl.from_arrow(con.sql(scored).to_arrow_table()).cast(EDGE_SCHEMA)
    finally:
        con.close()
    return out.unique(subset=["profile_key_l", "profile_key_r"], keep="first").sort("profile_key_l", "profile_key_r")


def self_weight(model: Model, profiles: pl.DataFrame) -> pl.Series:
    """Each profile compared with itself: the weight of agreeing on everything it holds. Records
    with the same description are one person exactly when this alone passes the threshold."""
    table = model.level_table()
    specs = {spec.name: spec for spec in COMPARISONS}
    total = pl.lit(0.0)
    for name in model.comparisons:
        levels = table[name]
        exact = levels[0]["weight"] if levels else 0.0
        spec = specs.get(name) or id_comparison(name)
        if name == "place":
            held = [c for c in ("postcode_key", "city_key", "region_key") if c in profiles.columns]
            # the best place level the profile can reach with itself
            reach = pl.lit(0.0)
            for level, row in zip(spec.levels_for(set(model.attributes)), levels, strict=False):
                needed = [c for c in PLACE_COLUMNS if c in level.sql]
                if (
                    not needed
                    or not all(c in profiles.columns for c in needed)
                    or level.kind not in ("exact", "partial")
                ):
                    continue
                have = pl.all_horizontal(pl.col(c).is_not_null() for c in needed)
                reach = pl.when((reach == 0.0) & have).then(pl.lit(row["weight"])).otherwise(reach)
            total = total + (reach if held else pl.lit(0.0))
        else:
            column = spec.needs[0]
            if column in profiles.columns:
                total = total + pl.when(pl.col(column).is_not_null()).then(pl.lit(exact)).otherwise(0.0)
    return profiles.select(total.alias("self_weight"))["self_weight"]
