"""Identity resolution: which source records are one real customer, with ids stable across runs.

Runs between dbt's staging views and its intermediate models (see pipelines/defs/identity). Steps:

1. **Records** (:mod:`.records`): every person record of every source system, normalised.
2. **Value guard and deterministic links** (:mod:`.rules`): equal emails, phones (where the
   surnames agree) and external ids link records, unless the value is shared by strangers.
3. **Probabilistic links** (:mod:`.matching`) between *profiles* (:mod:`.profiles`), scored by a
   Splink model trained on the company's own records. The scored pairs are kept in the warehouse:
   a nightly run scores only the profiles it has never seen, against all the others and each
   other; a full re-resolution (``reresolve``, a new model) scores every pair again. Both give
   the same pairs, and so the same clusters.
4. **Steward overrides** (seed ``seeds.identity_overrides``, table ``identity.steward_overrides``,
   dashboard decisions ``identity.steward_decisions``): forced merges are edges that always win,
   forced splits are constraints no edge may break.
5. **Clusters** (:mod:`.clustering`) under the size guard, **stable ids** (:mod:`.stable_ids`);
   merges and splits against the previous run are appended to ``identity.customer_id_changes``.

Tables written (schema ``identity``):

- ``records``: one row per source record with its ``customer_id`` and why it is there
  (``match_rule``, ``match_probability``, ``match_weight``, ``match_evidence``); replaced each run;
- ``suspected_duplicates``: pairs just under the threshold in different customers, with the
  evidence in plain words, for the steward's review; replaced each run;
- ``guarded_values``: values and merges the size guard refused; replaced each run;
- ``match_pairs``: the probabilistic links of this run (for audit); replaced each run;
- ``customer_ids`` (every id ever issued), ``customer_id_changes`` (append-only), ``runs``;
- ``match_edges``, ``scored_profiles``, ``match_state``: the scored pairs the next run builds on
  (a nightly run adds the pairs of its new profiles and drops those of vanished ones);
- ``source_records``, ``prepared_records``, ``prepared_state``: every record as read and as
  normalised, which the next run keeps for the records that did not change (:mod:`.prepared`);
- ``steward_overrides`` (created empty for people to fill), ``steward_decisions``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from crm.identity import explain, prepared
from crm.identity import normalise as norm
from crm.identity.clustering import (
    PRIORITY_DETERMINISTIC,
    PRIORITY_PROBABILISTIC,
    PRIORITY_STEWARD,
    cluster_records,
)
from crm.identity.matching import Model, load_model, needs_training, save_model, score_pairs, self_weight, train_model
from crm.identity.profiles import PROFILE_KEY, build_profiles
from crm.identity.records import frame_view, prepare_records, query_pl
from crm.identity.rules import deterministic_edges, guard_values
from crm.identity.stable_ids import assign_stable_ids, parse_customer_seq

logger = logging.getLogger(__name__)

SCHEMA = "identity"
SEEDS = "seeds"

DEFAULT_THRESHOLD = 0.95
DEFAULT_REVIEW_THRESHOLD = 0.5
DEFAULT_MAX_CLUSTER_SIZE = 50
DEFAULT_RETRAIN_GROWTH = 0.25

# How each record joined its cluster, strongest first (an edge's priority in the clustering).
RULE_STEWARD = "steward"
RULE_SAME_DESCRIPTION = "same_description"
RULE_PROBABILISTIC = "probabilistic"


@dataclass(frozen=True)
class IdentitySettings:
    phone_region: str = norm.DEFAULT_PHONE_REGION
    probabilistic: bool = True
    threshold: float = DEFAULT_THRESHOLD
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE
    retrain_growth: float = DEFAULT_RETRAIN_GROWTH
    # Where the trained model lives (<data_dir>/models/identity); None: trained in memory each run.
    model_dir: Path | None = None
    # Score every pair again (a full re-resolution) instead of only the new profiles.
    reresolve: bool = False
    # Train the model again even when the company has not changed much.
    retrain: bool = False
    seed: int = 42


@dataclass
class IdentityRunSummary:
    run_id: str
    mode: str  # full | incremental
    records: int
    profiles: int
    new_profiles_scored: int
    customers: int
    new_customer_ids: int
    deterministic_edges: int
    probabilistic_edges: int
    suspected_duplicates: int
    guarded_values: int
    steward_merges_applied: int
    steward_splits: int
    steward_overrides_ignored: int
    merges: int
    splits: int
    retired: int
    model_version: str
    model_trained: bool
    seconds: float
    notes: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # records normalised in this run (the others were kept from the last run, see crm.identity.prepared)
    records_normalised: int = 0

    def as_metadata(self) -> dict:
        out = asdict(self)
        out.pop("stage_seconds")
        out["notes"] = "; ".join(self.notes) or "none"
        out.update({f"seconds_{k}": round(v, 2) for k, v in self.stage_seconds.items()})
        return out


def settings_for(sources, **overrides) -> IdentitySettings:
    """The identity settings of a sources config (:class:`crm.settings.Settings`): its `identity:`
    block, the model kept under its data folder; ``overrides`` win."""
    wanted = sources.identity
    values = dict(
        phone_region=wanted.phone_region,
        threshold=wanted.match_threshold,
        review_threshold=wanted.review_threshold,
        max_cluster_size=wanted.max_cluster_size,
        retrain_growth=wanted.retrain_growth,
        model_dir=Path(sources.data_dir) / "models" / "identity",
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return IdentitySettings(**values)


def _logit2(p: float) -> float:
    return math.log2(p / (1.0 - p))


# --------------------------------------------------------------------------------------------
# steward overrides
# --------------------------------------------------------------------------------------------

_OVERRIDE_COLUMNS = """
    action varchar, left_source varchar, left_key varchar, right_source varchar, right_key varchar,
    reason varchar, requested_by varchar, requested_at timestamp
"""


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


OVERRIDE_TABLES = ((SCHEMA, "steward_overrides"), (SCHEMA, "steward_decisions"), (SEEDS, "identity_overrides"))


def load_overrides(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Steward overrides from the seed (seeds.identity_overrides), the table people edit
    (identity.steward_overrides) and the dashboard's decisions (identity.steward_decisions, see
    :mod:`crm.identity.steward`); any of them may be missing.

    A record is named by ``(source, source_key)``, or, where two systems feed one source and the
    key alone is ambiguous, by ``("<source>:<source system>", source_key)``.
    """
    parts = [
        "select cast(action as varchar) as action, cast(left_source as varchar) as left_source, "
        "cast(left_key as varchar) as left_key, cast(right_source as varchar) as right_source, "
        f"cast(right_key as varchar) as right_key from {schema}.{table}"
        for schema, table in OVERRIDE_TABLES
        if _table_exists(con, schema, table)
    ]
    if not parts:
        parts = [
            "select cast(null as varchar) as action, cast(null as varchar) as left_source, "
            "cast(null as varchar) as left_key, cast(null as varchar) as right_source, "
            "cast(null as varchar) as right_key where false"
        ]
    return query_pl(con, " union all ".join(parts)).with_columns(
        pl.col("action").str.strip_chars().str.to_lowercase(),
        (pl.col("left_source").str.strip_chars() + ":" + pl.col("left_key").str.strip_chars()).alias("left"),
        (pl.col("right_source").str.strip_chars() + ":" + pl.col("right_key").str.strip_chars()).alias("right"),
    )


def _override_lookup(records: pl.DataFrame) -> dict[str, int]:
    """How an override may name a record -> record id: its full key, or ``source:source_key`` when
    that is unambiguous (one system feeds the source, or the key is unique across them)."""
    lookup = dict(zip(records["record_key"].to_list(), records["record_id"].to_list(), strict=True))
    short = records.select((pl.col("source") + ":" + pl.col("source_key")).alias("k"), "record_id")
    unique = short.filter(pl.len().over("k") == 1)
    for key, record_id in unique.iter_rows():
        lookup.setdefault(key, record_id)
    return lookup


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------

RECORD_COLUMNS = """
    record_key varchar, source varchar, source_system varchar, source_key varchar, customer_id varchar,
    email varchar, phone_e164 varchar, first_name varchar, last_name varchar, birth_date varchar,
    address_line1 varchar, address_line2 varchar, city varchar, postcode varchar, region varchar,
    country varchar, external_ids varchar, record_created_at timestamp, record_updated_at timestamp,
    match_rule varchar, match_probability double, match_weight double, match_evidence varchar,
    resolved_at timestamp, run_id varchar
"""


def ensure_identity_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(f"create table if not exists {SCHEMA}.steward_overrides ({_OVERRIDE_COLUMNS})")
    con.execute(f"create table if not exists {SCHEMA}.steward_decisions ({_OVERRIDE_COLUMNS})")
    con.execute(
        f"""create table if not exists {SCHEMA}.customer_ids (
            customer_id varchar primary key, created_run_id varchar, created_at timestamp,
            status varchar, retired_at timestamp, superseded_by varchar)"""
    )
    con.execute(
        f"""create table if not exists {SCHEMA}.customer_id_changes (
            run_id varchar, changed_at timestamp, change_type varchar, customer_id varchar,
            related_customer_id varchar, records_moved bigint)"""
    )
    _ensure_records_table(con)
    con.execute(
        f"""create table if not exists {SCHEMA}.match_pairs (
            record_key_l varchar, record_key_r varchar, match_probability double, match_weight double,
            run_id varchar)"""
    )
    con.execute(f"alter table {SCHEMA}.match_pairs add column if not exists match_weight double")
    con.execute(
        f"""create table if not exists {SCHEMA}.suspected_duplicates (
            record_key_l varchar, record_key_r varchar, customer_id_l varchar, customer_id_r varchar,
            match_probability double, match_weight double, evidence varchar, run_id varchar)"""
    )
    con.execute(
        f"""create table if not exists {SCHEMA}.guarded_values (
            value_kind varchar, value varchar, records bigint, reason varchar, run_id varchar)"""
    )
    con.execute(
        f"""create table if not exists {SCHEMA}.match_edges (
            profile_key_l varchar, profile_key_r varchar, match_weight double, gammas varchar)"""
    )
    con.execute(f"create table if not exists {SCHEMA}.scored_profiles (profile_key varchar)")
    con.execute(
        f"""create table if not exists {SCHEMA}.match_state (
            model_version varchar, profiles bigint, edges bigint, updated_at timestamp)"""
    )
    con.execute(
        f"""create table if not exists {SCHEMA}.runs (
            run_id varchar, resolved_at timestamp, records bigint, customers bigint, new_customer_ids bigint,
            deterministic_edges bigint, probabilistic_edges bigint, merges bigint, splits bigint,
            retired bigint, seconds double)"""
    )
    for column, dtype in (
        ("mode", "varchar"),
        ("profiles", "bigint"),
        ("new_profiles_scored", "bigint"),
        ("model_version", "varchar"),
        ("notes", "varchar"),
    ):
        con.execute(f"alter table {SCHEMA}.runs add column if not exists {column} {dtype}")


def _ensure_records_table(con: duckdb.DuckDBPyConnection) -> None:
    """identity.records in today's shape. A table from before several systems per source existed is
    rebuilt with its rows kept (keys gain the system when the source had only one)."""
    con.execute(f"create table if not exists {SCHEMA}.records ({RECORD_COLUMNS})")
    columns = {
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = 'records'",
            [SCHEMA],
        ).fetchall()
    }
    wanted = [line.strip().split(" ")[0] for line in RECORD_COLUMNS.strip().split(",") if line.strip()]
    if set(wanted) <= columns:
        return
    kept = ", ".join(c if c in columns else f"null as {c}" for c in wanted)
    con.execute(f"create temp table _old_records as select {kept} from {SCHEMA}.records")
    con.execute(f"drop table {SCHEMA}.records")
    con.execute(f"create table {SCHEMA}.records ({RECORD_COLUMNS})")
    con.execute(f"insert into {SCHEMA}.records by name select * from _old_records")
    con.execute("drop table _old_records")


def steward_override_violations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(action, left record, right record) of every steward decision the current clusters break:
    a forced merge whose records have different customers, or a forced split whose records share one."""
    return con.execute(
        f"""
        with o as (
            select action, left_source || ':' || left_key as l, right_source || ':' || right_key as r
            from {SCHEMA}.steward_overrides
            union all
            select action, left_source || ':' || left_key, right_source || ':' || right_key
            from {SCHEMA}.steward_decisions
        ),
        named as (
            select record_key as k, customer_id from {SCHEMA}.records
            union all
            select source || ':' || source_key, any_value(customer_id) from {SCHEMA}.records
            group by source, source_key having count(*) = 1
        )
        select o.action, o.l, o.r
        from o
        join named a on a.k = o.l
        join named b on b.k = o.r
        where (o.action = 'merge' and a.customer_id <> b.customer_id)
           or (o.action = 'split' and a.customer_id = b.customer_id)
        """
    ).fetchall()


# --------------------------------------------------------------------------------------------
# the pure part: records in, clusters out
# --------------------------------------------------------------------------------------------


@dataclass
class Matching:
    """Everything the clustering needs, computed from the records and the model."""

    records: pl.DataFrame  # prepared records, value guard applied
    guarded: pl.DataFrame
    det_edges: pl.DataFrame
    profiles: pl.DataFrame
    members: pl.DataFrame  # record_id -> profile_key
    model: Model | None
    edges: pl.DataFrame  # scored profile pairs (profile_key_l, profile_key_r, match_weight, gammas)
    prior: float = 0.0
    notes: list[str] = field(default_factory=list)
    # the pairs scored in this run when it scored only new profiles (None: every pair was scored),
    # with the profiles scored for the first time and those scored before that are gone
    fresh_edges: pl.DataFrame | None = None
    new_profiles: pl.Series | None = None
    vanished_profiles: pl.Series | None = None
    # a full scoring's every pair (``edges`` holds only those the clustering reads), until written
    all_pairs_file: Path | None = None
    # every profile's key, once ``profiles`` is cut down to those the suspected pairs show
    profile_keys: pl.Series | None = None

    def all_profile_keys(self) -> pl.Series:
        return self.profile_keys if self.profile_keys is not None else self.profiles[PROFILE_KEY]


@dataclass
class Resolution:
    records: pl.DataFrame  # records with cluster, match_rule, match_probability, match_weight, match_evidence
    det_edges: pl.DataFrame
    prob_edges: pl.DataFrame  # record pairs (a, b, match_weight, match_probability) at or above the threshold
    suspected: pl.DataFrame  # record pairs under the threshold in different clusters
    refused: pl.DataFrame  # merges the size guard refused
    steward_merges_applied: int
    steward_splits: int
    steward_ignored: int
    stage_seconds: dict[str, float]


def prepare_matching(raw: pl.DataFrame, settings: IdentitySettings) -> Matching:
    """Records, value guard, deterministic edges and profiles (no model yet)."""
    return matching_from_records(prepare_records(raw, settings.phone_region), settings)


def matching_from_records(records: pl.DataFrame, settings: IdentitySettings) -> Matching:
    """Value guard, deterministic edges and profiles of prepared records (:func:`prepare_records`)."""
    records, guarded = guard_values(records, settings.max_cluster_size)
    det = deterministic_edges(records)
    profiles, members = build_profiles(records)
    return Matching(records, guarded, det, profiles, members, None, _empty_edges())


def _empty_edges() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"profile_key_l": pl.Utf8, "profile_key_r": pl.Utf8, "match_weight": pl.Float64, "gammas": pl.Utf8}
    )


def resolve(matching: Matching, overrides: pl.DataFrame | None, settings: IdentitySettings) -> Resolution:
    """Cluster the records (pure: no database)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    records = matching.records
    n = records.height
    det = matching.det_edges
    lam = matching.prior
    use_model = matching.model is not None and settings.probabilistic and lam > 0
    threshold_w = _logit2(settings.threshold) - _logit2(lam) if use_model else math.inf
    review_w = _logit2(settings.review_threshold) - _logit2(lam) if use_model else math.inf

    members = matching.members
    representative = members.group_by(PROFILE_KEY).agg(pl.col("record_id").min().alias("rep"))
    # records with one description are one person when that description alone passes the threshold
    same = _empty_record_edges()
    if use_model and matching.profiles.height:
        strong = matching.profiles.select(PROFILE_KEY, self_weight(matching.model, matching.profiles).alias("w"))
        strong = strong.filter(pl.col("w") >= threshold_w)
        same = (
            members.join(strong, on=PROFILE_KEY)
            .join(representative, on=PROFILE_KEY)
            .filter(pl.col("record_id") != pl.col("rep"))
            .select(pl.col("rep").alias("a"), pl.col("record_id").alias("b"), pl.col("w").alias("match_weight"))
        )
    scored = matching.edges if use_model else _empty_edges()
    prior_weight = _logit2(lam) if use_model else 0.0
    scored = (
        scored.join(representative.rename({PROFILE_KEY: "profile_key_l", "rep": "a"}), on="profile_key_l")
        .join(representative.rename({PROFILE_KEY: "profile_key_r", "rep": "b"}), on="profile_key_r")
        .with_columns(
            (1.0 / (1.0 + pl.lit(2.0).pow(-(pl.col("match_weight") + prior_weight)))).alias("match_probability")
        )
    )
    prob = scored.filter(pl.col("match_weight") >= threshold_w)
    timings["edges"] = time.perf_counter() - t

    t = time.perf_counter()
    merges: list[tuple[int, int]] = []
    splits: list[tuple[int, int]] = []
    ignored = 0
    if overrides is not None and overrides.height:
        key_to_id = _override_lookup(records)
        for action, left, right in overrides.select("action", "left", "right").iter_rows():
            a, b = key_to_id.get(left), key_to_id.get(right)
            if a is None or b is None or action not in ("merge", "split"):
                ignored += 1
                continue
            (merges if action == "merge" else splits).append((a, b))
    edge_parts = [
        det.select("a", "b", pl.lit(PRIORITY_DETERMINISTIC).alias("priority"), pl.lit(1e9).alias("weight"), "rule"),
        same.select(
            "a",
            "b",
            pl.lit(PRIORITY_DETERMINISTIC).alias("priority"),
            pl.col("match_weight").alias("weight"),
            pl.lit(RULE_SAME_DESCRIPTION).alias("rule"),
        ),
        prob.select(
            "a",
            "b",
            pl.lit(PRIORITY_PROBABILISTIC).alias("priority"),
            pl.col("match_weight").alias("weight"),
            pl.lit(RULE_PROBABILISTIC).alias("rule"),
        ),
        pl.DataFrame(
            {
                "a": [m[0] for m in merges],
                "b": [m[1] for m in merges],
                "priority": [PRIORITY_STEWARD] * len(merges),
                "weight": [1e12] * len(merges),
                "rule": [RULE_STEWARD] * len(merges),
            }
        ),
    ]
    schema = {"a": pl.Int64, "b": pl.Int64, "priority": pl.Int64, "weight": pl.Float64, "rule": pl.Utf8}
    edges = pl.concat([p.cast(schema) for p in edge_parts])
    units = _units(records, members, same)
    result = cluster_records(
        n,
        edges["a"].to_numpy(),
        edges["b"].to_numpy(),
        edges["priority"].to_numpy(),
        edges["weight"].to_numpy(),
        cannot_link=splits,
        units=units,
        max_size=settings.max_cluster_size,
    )
    skipped_merges = sum(1 for _, _, p in result.skipped_edges if p == PRIORITY_STEWARD)
    if skipped_merges:
        logger.warning("%d steward merges contradict steward splits and were not applied", skipped_merges)
    labels = pl.Series("cluster", result.labels, dtype=pl.Int64)
    timings["clustering"] = time.perf_counter() - t

    t = time.perf_counter()
    refused = _refused_merges(result.skipped_edges, labels, records, units, settings.max_cluster_size)
    out = records.with_columns(labels)
    out = explain.attach_evidence(out, edges, scored, matching, lam)
    suspected = scored.filter((pl.col("match_weight") >= review_w) & (pl.col("match_weight") < threshold_w))
    suspected = suspected.filter(labels.gather(suspected["a"]) != labels.gather(suspected["b"]))
    timings["explain"] = time.perf_counter() - t
    return Resolution(
        records=out,
        det_edges=det,
        prob_edges=prob,
        suspected=suspected,
        refused=refused,
        steward_merges_applied=len(merges) - skipped_merges,
        steward_splits=len(splits),
        steward_ignored=ignored,
        stage_seconds=timings,
    )


def _empty_record_edges() -> pl.DataFrame:
    return pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "match_weight": pl.Float64})


def _units(records: pl.DataFrame, members: pl.DataFrame, same: pl.DataFrame) -> np.ndarray:
    """The size guard's unit of each record: a distinct description of a person. Records that share
    a profile strong enough to be one person count once; any other record counts alone."""
    unit = np.arange(records.height, dtype=np.int64)
    if same.height:
        unit[same["b"].to_numpy()] = same["a"].to_numpy()
    return unit


def _refused_merges(skipped, labels: pl.Series, records: pl.DataFrame, units: np.ndarray, limit: int) -> pl.DataFrame:
    """The merges the size guard refused, one row per pair of customers kept apart."""
    rows = {}
    lab = labels.to_numpy()
    keys = records["record_key"].to_list()
    for a, b, priority in skipped:
        if priority == PRIORITY_STEWARD or lab[a] == lab[b]:
            continue
        pair = (min(lab[a], lab[b]), max(lab[a], lab[b]))
        if pair in rows:
            continue
        size = len(set(units[lab == lab[a]].tolist()) | set(units[lab == lab[b]].tolist()))
        if size <= limit:
            continue  # kept apart by a steward split, not by size
        rule = "a deterministic rule" if priority == PRIORITY_DETERMINISTIC else "the model"
        rows[pair] = (
            "cluster",
            f"{keys[a]} + {keys[b]}",
            size,
            f"merge refused: {size} distinct descriptions of a person would exceed max_cluster_size {limit} "
            f"(linked by {rule})",
        )
    return pl.DataFrame(
        list(rows.values()),
        schema={"value_kind": pl.Utf8, "value": pl.Utf8, "records": pl.Int64, "reason": pl.Utf8},
        orient="row",
    )


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _replace_steward_decisions(con: duckdb.DuckDBPyConnection, decisions: pl.DataFrame) -> None:
    """The dashboard's decisions (crm.identity.steward) as this run applies them."""
    con.register("_decisions", decisions.to_arrow())
    try:
        con.execute(f"delete from {SCHEMA}.steward_decisions")
        con.execute(f"insert into {SCHEMA}.steward_decisions by name select * from _decisions")
    finally:
        con.unregister("_decisions")


def _model_for(matching: Matching, settings: IdentitySettings, notes: list[str]) -> tuple[Model | None, bool]:
    """The model to score with: the stored one while it fits the company, else a freshly trained one."""
    if not settings.probabilistic or matching.profiles.height < 2:
        return None, False
    model = load_model(settings.model_dir)
    reason = (
        "retraining was asked for"
        if settings.retrain
        else needs_training(model, matching.profiles, settings.retrain_growth)
    )
    if reason is None:
        return model, False
    logger.info("training the identity model: %s", reason)
    model = train_model(matching.profiles, seed=settings.seed)
    notes.append(f"model {model.version} trained ({reason})")
    if settings.model_dir is not None:
        save_model(model, settings.model_dir)
    return model, True


def _score(
    con: duckdb.DuckDBPyConnection, matching: Matching, model: Model, settings: IdentitySettings, trained: bool
) -> tuple[pl.DataFrame, str, int]:
    """(scored pairs among the current profiles, mode, profiles scored in this run). A nightly run
    also sets ``matching.fresh_edges``, ``new_profiles`` and ``vanished_profiles``."""
    state = con.execute(f"select model_version from {SCHEMA}.match_state").fetchall()
    current = matching.profiles[PROFILE_KEY]
    # The clustering looks only at pairs at or above the review threshold (the suspected duplicates)
    # and the match threshold, for this company's prior. The weaker pairs are kept in the warehouse
    # for the next run, and not held here: a full run streams every pair to a file on the way
    # (matching.all_pairs_file), a nightly run does not read the weak pairs kept from earlier runs.
    lam = model.prior(matching.profiles.height)
    weakest = min(_logit2(settings.review_threshold), _logit2(settings.threshold)) - _logit2(lam)
    if settings.reresolve or trained or not state or state[0][0] != model.version:
        matching.all_pairs_file = Path(tempfile.mkdtemp(prefix="crm_identity_pairs_")) / "pairs.parquet"
        edges = score_pairs(model, matching.profiles, min_weight=weakest, all_pairs_to=matching.all_pairs_file)
        return edges, "full", current.len()
    scored = query_pl(con, f"select profile_key from {SCHEMA}.scored_profiles")[PROFILE_KEY]
    new_keys = current.filter(~current.is_in(scored.implode()))
    matching.new_profiles = new_keys
    matching.vanished_profiles = scored.filter(~scored.is_in(current.implode()))
    kept = query_pl(
        con,
        f"select e.* from {SCHEMA}.match_edges e "
        "semi join _current_profiles l on l.profile_key = e.profile_key_l "
        "semi join _current_profiles r on r.profile_key = e.profile_key_r "
        "where e.match_weight >= ?",
        [weakest],
    )
    fresh = score_pairs(model, matching.profiles, new_keys)
    edges = pl.concat([kept.cast(fresh.schema), fresh]).unique(subset=["profile_key_l", "profile_key_r"])
    matching.fresh_edges = fresh
    return edges.sort("profile_key_l", "profile_key_r"), "incremental", new_keys.len()


def run_identity_resolution(
    con: duckdb.DuckDBPyConnection,
    settings: IdentitySettings | None = None,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
    steward_decisions: pl.DataFrame | None = None,
) -> IdentityRunSummary:
    """Resolve identities in the warehouse behind ``con`` and write the identity.* tables."""
    settings = settings or IdentitySettings()
    run_id = run_id or uuid.uuid4().hex[:12]
    now = now or datetime.now(UTC).replace(tzinfo=None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    con.execute("set enable_progress_bar = false")
    ensure_identity_tables(con)
    if steward_decisions is not None:
        _replace_steward_decisions(con, steward_decisions)
    kept_records: prepared.PreparedDelta | None = None
    matching: Matching | None = None
    set_aside = Path(tempfile.mkdtemp(prefix="crm_identity_shown_")) / "shown.parquet"
    try:
        t = time.perf_counter()
        # only new and changed records are normalised; reresolve normalises every record again
        records, kept_records = prepared.prepare(con, None, settings.phone_region, full=settings.reresolve)
        timings["normalise"] = time.perf_counter() - t
        t = time.perf_counter()
        matching = matching_from_records(records, settings)
        del records
        # the match keys are in the profiles now: the records keep what the links and identity.records
        # show, and what only identity.records shows waits in a file until the write
        matching.records.select(
            "record_id", *(c for c in RECORD_SET_ASIDE if c in matching.records.columns)
        ).write_parquet(set_aside)
        matching.records = matching.records.select(
            c for c in matching.records.columns if c == "record_id" or c in RECORD_KEPT or c.startswith("id_")
        )
        timings["guard_profiles"] = time.perf_counter() - t
        t = time.perf_counter()
        model, trained = _model_for(matching, settings, notes)
        timings["train"] = time.perf_counter() - t
        t = time.perf_counter()
        mode, new_scored = "full", 0
        con.register("_current_profiles", matching.profiles.select(PROFILE_KEY).to_arrow())
        try:
            if model is not None and model.comparisons and model.blocking:
                matching.edges, mode, new_scored = _score(con, matching, model, settings, trained)
                matching.model = model
                matching.prior = model.prior(matching.profiles.height)
                notes.extend(n for n in model.notes if n.startswith(("no evidence", "fallback")))
            elif matching.records.height:
                notes.append(
                    "no identity evidence to compare (no names, emails, phones, addresses, birth dates or ids): "
                    "one customer per source key, except records that share an email, phone or id"
                    if model is None or not model.comparisons
                    else "not enough evidence to compare records: only deterministic links"
                )
        finally:
            con.unregister("_current_profiles")
        timings["score"] = time.perf_counter() - t

        resolution = resolve(matching, load_overrides(con), settings)
        timings.update(resolution.stage_seconds)
        # the match keys have done their work: only what identity.records shows stays in memory
        resolution.records = resolution.records.select(
            "record_id", "cluster", *RECORD_KEPT, "match_probability", "match_weight", "match_evidence"
        )
        matching.records = matching.records.clear()
        # from here on only the suspected pairs' profiles are shown: the others' match keys go
        matching.profile_keys = matching.profiles[PROFILE_KEY]
        shown = pl.concat([resolution.suspected["profile_key_l"], resolution.suspected["profile_key_r"]])
        matching.profiles = matching.profiles.filter(pl.col(PROFILE_KEY).is_in(shown.implode()))

        t = time.perf_counter()
        previous = _previous_assignments(con, resolution.records.select("record_key", "source", "source_key"))
        max_seq = con.execute(f"select max(customer_id) from {SCHEMA}.customer_ids").fetchall()[0][0]
        next_seq = parse_customer_seq(max_seq) + 1 if max_seq else 1
        ids = assign_stable_ids(resolution.records.select("record_key", "cluster"), previous, next_seq)
        customer_ids = resolution.records.select("cluster").join(
            ids.assignments.select("cluster", "customer_id"), on="cluster", how="left", maintain_order="left"
        )["customer_id"]
        out = resolution.records.with_columns(customer_ids)  # the records' columns are shared, not copied
        timings["stable_ids"] = time.perf_counter() - t

        t = time.perf_counter()
        tables = _output_tables(out, resolution, matching, ids, run_id, now)
        counts = {k: ids.changes.filter(pl.col("change_type") == k).height for k in ("merge", "split", "retire")}
        summary = IdentityRunSummary(
            run_id=run_id,
            mode=mode,
            records=out.height,
            profiles=matching.all_profile_keys().len(),
            new_profiles_scored=new_scored,
            customers=ids.assignments.height,
            new_customer_ids=tables["new_ids"].height,
            deterministic_edges=resolution.det_edges.height,
            probabilistic_edges=resolution.prob_edges.height,
            suspected_duplicates=tables["suspected"].height,
            guarded_values=tables["guarded"].height,
            steward_merges_applied=resolution.steward_merges_applied,
            steward_splits=resolution.steward_splits,
            steward_overrides_ignored=resolution.steward_ignored,
            merges=counts["merge"],
            splits=counts["split"],
            retired=counts["retire"],
            model_version=model.version if model else "none",
            model_trained=trained,
            seconds=0.0,
            notes=notes,
            stage_seconds=timings,
            records_normalised=kept_records.normalised,
        )
        _write(con, tables, matching, model, summary, now, started, kept_records, set_aside)
        timings["write"] = time.perf_counter() - t
        summary.seconds = time.perf_counter() - started
        for note in notes:
            logger.info("identity: %s", note)
        return summary
    finally:
        shutil.rmtree(set_aside.parent, ignore_errors=True)
        if kept_records is not None:
            kept_records.discard()
        if matching is not None and matching.all_pairs_file is not None:
            shutil.rmtree(matching.all_pairs_file.parent, ignore_errors=True)


def _previous_assignments(con: duckdb.DuckDBPyConnection, current: pl.DataFrame) -> pl.DataFrame:
    """(record_key, customer_id) of the last run. Records of a run from before keys named the source
    system (``sales_contacts:101``) are matched to today's records by source and key."""
    has_legacy = con.execute(
        f"select count(*) from {SCHEMA}.records where source_system is null and customer_id is not null"
    ).fetchall()[0][0]
    if not has_legacy:
        return query_pl(con, f"select record_key, customer_id from {SCHEMA}.records where customer_id is not null")
    previous = query_pl(
        con, f"select record_key, source, source_system, source_key, customer_id from {SCHEMA}.records"
    ).filter(pl.col("customer_id").is_not_null())
    legacy = previous.filter(pl.col("source_system").is_null())
    unique = current.filter(pl.len().over("source", "source_key") == 1)
    adopted = legacy.select("source", "source_key", "customer_id").join(
        unique.select("source", "source_key", "record_key"), on=["source", "source_key"]
    )
    return pl.concat(
        [
            previous.filter(pl.col("source_system").is_not_null()).select("record_key", "customer_id"),
            adopted.select("record_key", "customer_id"),
        ]
    )


# What identity.records shows of a record besides its customer, match probability and weight, and
# the evidence (see _output_tables).
RECORD_SHOWN = (
    "record_key",
    "source",
    "source_system",
    "source_key",
    "email",
    "phone_e164",
    "first_name",
    "last_name",
    "birth_date",
    "address_line1",
    "address_line2",
    "city",
    "postcode",
    "region",
    "country",
    "external_ids",
    "record_created_at",
    "record_updated_at",
    "match_rule",
)
# Of those, what the run itself reads (keys, the evidence's email and phone, the rule it sets). The
# others are set aside in a file once the profiles hold the match keys, and joined back at the write
# (held to the end, they took ~0.6 GB at a million customers).
RECORD_KEPT = ("record_key", "source", "source_system", "source_key", "email", "phone_e164", "match_rule")
RECORD_SET_ASIDE = tuple(c for c in RECORD_SHOWN if c not in RECORD_KEPT)


def _output_tables(out, resolution: Resolution, matching: Matching, ids, run_id: str, now: datetime) -> dict:
    stamp = pl.lit(now).cast(pl.Datetime("us"))
    final = out.select(
        "record_id",
        "customer_id",
        *RECORD_KEPT,
        pl.col("match_probability").cast(pl.Float64),
        pl.col("match_weight").cast(pl.Float64),
        "match_evidence",
        stamp.alias("resolved_at"),
        pl.lit(run_id).alias("run_id"),
    )
    key_of = out.select("record_id", "record_key", "customer_id")
    pairs = (
        resolution.prob_edges.join(key_of.rename({"record_id": "a", "record_key": "record_key_l"}), on="a")
        .join(key_of.rename({"record_id": "b", "record_key": "record_key_r"}), on="b")
        .select("record_key_l", "record_key_r", "match_probability", "match_weight", pl.lit(run_id).alias("run_id"))
    )
    suspected = explain.suspected_duplicates(resolution.suspected, matching, key_of).with_columns(
        pl.lit(run_id).alias("run_id")
    )
    guarded = pl.concat([matching.guarded, resolution.refused]).with_columns(pl.lit(run_id).alias("run_id"))
    new_ids = ids.assignments.filter(pl.col("is_new")).select(
        "customer_id", pl.lit(run_id).alias("created_run_id"), stamp.alias("created_at")
    )
    changes = ids.changes.select(pl.lit(run_id).alias("run_id"), stamp.alias("changed_at"), pl.all())
    retired = (
        changes.filter(pl.col("change_type") != "split")
        .group_by("customer_id")
        .agg(pl.col("related_customer_id").first().alias("superseded_by"))
    )
    return {
        "final": final,
        "pairs": pairs,
        "suspected": suspected,
        "guarded": guarded,
        "new_ids": new_ids,
        "changes": changes,
        "retired": retired,
    }


def _replace_records(con: duckdb.DuckDBPyConnection, final: pl.DataFrame, set_aside: Path) -> None:
    """identity.records: the run's columns joined to the ones set aside (RECORD_SET_ASIDE), by record id."""
    with frame_view(con, "_frame", final):
        con.execute(f"delete from {SCHEMA}.records")
        con.execute(
            f"""insert into {SCHEMA}.records by name
                select * exclude (record_id) from (
                    select * from _frame join read_parquet('{set_aside}') using (record_id) order by record_id
                )"""
        )


def _replace(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    with frame_view(con, "_frame", frame):
        con.execute(f"delete from {SCHEMA}.{table}")
        con.execute(f"insert into {SCHEMA}.{table} by name select * from _frame")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from {SCHEMA}.{table}").fetchall()[0][0]


def _keep_scored_pairs(con: duckdb.DuckDBPyConnection, matching: Matching) -> None:
    """identity.match_edges and identity.scored_profiles as the current profiles' pairs: replaced after
    a full scoring; after a nightly one, the vanished profiles' rows dropped and the new ones added."""
    if matching.fresh_edges is None:
        con.execute(f"delete from {SCHEMA}.match_edges")
        if matching.all_pairs_file is not None and matching.all_pairs_file.exists():
            con.execute(
                f"insert into {SCHEMA}.match_edges by name select * from read_parquet('{matching.all_pairs_file}')"
            )
        _replace(con, "scored_profiles", matching.all_profile_keys().to_frame())
        return
    con.register("_vanished", pl.DataFrame({PROFILE_KEY: matching.vanished_profiles}).to_arrow())
    con.register("_new", pl.DataFrame({PROFILE_KEY: matching.new_profiles}).to_arrow())
    con.register("_fresh", matching.fresh_edges.to_arrow())
    try:
        if matching.vanished_profiles.len():
            con.execute(
                f"""delete from {SCHEMA}.match_edges
                    where profile_key_l in (select profile_key from _vanished)
                       or profile_key_r in (select profile_key from _vanished)"""
            )
            con.execute(
                f"delete from {SCHEMA}.scored_profiles where profile_key in (select profile_key from _vanished)"
            )
        con.execute(f"insert into {SCHEMA}.match_edges by name select * from _fresh")
        con.execute(f"insert into {SCHEMA}.scored_profiles select profile_key from _new")
    finally:
        for name in ("_vanished", "_new", "_fresh"):
            con.unregister(name)


def _write(
    con,
    tables: dict,
    matching: Matching,
    model: Model | None,
    summary: IdentityRunSummary,
    now,
    started,
    kept_records: prepared.PreparedDelta | None,
    set_aside: Path,
):
    con.execute("begin transaction")
    try:
        _replace_records(con, tables["final"], set_aside)
        _replace(con, "match_pairs", tables["pairs"])
        _replace(con, "suspected_duplicates", tables["suspected"])
        _replace(con, "guarded_values", tables["guarded"])
        if kept_records is not None:
            prepared.write_prepared(con, kept_records)
        if model is not None and model.comparisons and model.blocking:
            _keep_scored_pairs(con, matching)
            con.execute(f"delete from {SCHEMA}.match_state")
            con.execute(
                f"insert into {SCHEMA}.match_state values (?, ?, ?, ?)",
                [model.version, matching.all_profile_keys().len(), _count(con, "match_edges"), now],
            )
        con.register("_new_ids", tables["new_ids"].to_arrow())
        con.execute(
            f"insert into {SCHEMA}.customer_ids (customer_id, created_run_id, created_at, status) "
            "select customer_id, created_run_id, created_at, 'active' from _new_ids"
        )
        con.register("_retired", tables["retired"].to_arrow())
        con.execute(
            f"""update {SCHEMA}.customer_ids set status = 'retired', retired_at = ?, superseded_by = r.superseded_by
                from _retired r where {SCHEMA}.customer_ids.customer_id = r.customer_id
                  and {SCHEMA}.customer_ids.status = 'active'""",
            [now],
        )
        con.register("_changes", tables["changes"].to_arrow())
        con.execute(f"insert into {SCHEMA}.customer_id_changes by name select * from _changes")
        con.execute(
            f"""insert into {SCHEMA}.runs (run_id, resolved_at, records, customers, new_customer_ids,
                deterministic_edges, probabilistic_edges, merges, splits, retired, seconds, mode, profiles,
                new_profiles_scored, model_version, notes) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                summary.run_id,
                now,
                summary.records,
                summary.customers,
                summary.new_customer_ids,
                summary.deterministic_edges,
                summary.probabilistic_edges,
                summary.merges,
                summary.splits,
                summary.retired,
                time.perf_counter() - started,
                summary.mode,
                summary.profiles,
                summary.new_profiles_scored,
                summary.model_version,
                "; ".join(summary.notes),
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for name in ("_new_ids", "_retired", "_changes"):
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)
