"""Identity resolution: which source records are one real customer, with ids stable across runs.

Runs between dbt's staging views and its intermediate models (see assets.py). Steps:

1. **Records**: every sales contact (and every order customer reference without a contact row),
   every marketing address (contacts and addresses seen only in events) and every support ticket's
   requester, read from the staging views; emails, phones (E.164 via ``phonenumbers``), names,
   cities and postcodes normalised in Python (:mod:`.normalise`).
2. **Deterministic links**: equal normalised email (role accounts such as info@ excluded); equal
   E.164 phone when the records holding it do not disagree on the surname (a company switchboard
   shared by colleagues is not one person); the source ids themselves (a contact's versions, an
   order's customer reference and the contact it names are one record).
3. **Probabilistic links** with Splink (:mod:`.splink_matching`) between deterministic clusters.
4. **Steward overrides** (seed ``seeds.identity_overrides`` + table ``identity.steward_overrides``):
   forced merges are edges that always win, forced splits are constraints no edge may break.
5. **Clusters** (:mod:`.clustering`) and **stable ids** (:mod:`.stable_ids`); merges and splits
   against the previous run are appended to ``identity.customer_id_changes``.

Tables written (schema ``identity``): ``records`` (one row per source record with its
customer_id; replaced each run), ``customer_ids`` (every id ever issued, with status),
``customer_id_changes`` (append-only), ``match_pairs`` (the probabilistic links of this run, for
audit), ``runs`` (one row per run), ``steward_overrides`` (created empty for people to fill).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import polars as pl

from crm.identity import normalise as norm
from crm.identity.clustering import (
    PRIORITY_DETERMINISTIC,
    PRIORITY_PROBABILISTIC,
    PRIORITY_STEWARD,
    cluster_records,
)
from crm.identity.matching import MatchSettings, load_model, predict_pairs
from crm.identity.stable_ids import assign_stable_ids, parse_customer_seq

logger = logging.getLogger(__name__)

SCHEMA = "identity"
STAGING = "staging"
SEEDS = "seeds"

# A phone shared by more records than this with different surnames is a switchboard, not a person.
MAX_PHONE_GROUP_WITHOUT_NAMES = 20


@dataclass(frozen=True)
class IdentitySettings:
    phone_region: str = norm.DEFAULT_PHONE_REGION
    probabilistic: bool = True
    match: MatchSettings = field(default_factory=MatchSettings)


@dataclass
class IdentityRunSummary:
    run_id: str
    records: int
    customers: int
    new_customer_ids: int
    deterministic_edges: int
    probabilistic_edges: int
    steward_merges_applied: int
    steward_splits: int
    steward_overrides_ignored: int
    merges: int
    splits: int
    retired: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def as_metadata(self) -> dict:
        out = asdict(self)
        out.pop("stage_seconds")
        out.update({f"seconds_{k}": round(v, 2) for k, v in self.stage_seconds.items()})
        return out


# --------------------------------------------------------------------------------------------
# 1. records
# --------------------------------------------------------------------------------------------

_RECORDS_SQL = f"""
with contacts as (
    select * from {STAGING}.stg_sales__contacts
),
order_refs as (
    select customer_ref, min(order_date) as first_order_at, max(order_date) as last_order_at
    from {STAGING}.stg_sales__orders
    where customer_ref is not null
    group by customer_ref
),
marketing as (
    select * from {STAGING}.stg_marketing__contacts
),
event_emails as (
    -- from raw, not the deduplicating staging view (a window over every event): the address is
    -- cleaned exactly as the view's clean_email macro does, duplicates do not change min/max
    select email, min(occurred_at) as first_at, max(occurred_at) as last_at
    from (
        select
            case when lower(trim(email)) like '%_@_%._%' and trim(email) not like '% %'
                then lower(trim(email)) end as email,
            occurred_at
        from raw.marketing_events
    ) as cleaned
    where email is not null
    group by email
)
select 'sales_contacts' as source, contact_key as source_key, email, phone_raw, first_name, last_name,
       cast(null as varchar) as full_name, city, postcode, created_at, updated_at
from contacts
union all
select 'sales_contacts', customer_ref, null, null, null, null, null, null, null, first_order_at, last_order_at
from order_refs
where not exists (select 1 from contacts where contacts.contact_key = order_refs.customer_ref)
union all
select 'marketing_contacts', email, email, phone_raw, first_name, last_name, null, null, null,
       coalesce(email_consent_at, updated_at), updated_at
from marketing
union all
select 'marketing_contacts', email, email, null, null, null, null, null, null, first_at, last_at
from event_emails
where not exists (select 1 from marketing where marketing.email = event_emails.email)
union all
select 'support_tickets', ticket_key, requester_email, requester_phone_raw, null, null, requester_name,
       null, null, created_at, updated_at
from {STAGING}.stg_support__tickets
"""


def query_pl(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """A query's result as a polars frame (duckdb 2.x: through Arrow)."""
    rel = con.sql(sql, params=params) if params else con.sql(sql)
    return pl.from_arrow(rel.to_arrow_table())


def load_source_records(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The raw-ish records from the staging views, one row per (source, source_key)."""
    return query_pl(con, _RECORDS_SQL)


def _map(series: pl.Series, fn, dtype=pl.Utf8) -> pl.Series:
    """Apply a scalar function once per distinct value."""
    uniques = series.drop_nulls().unique()
    lookup = pl.DataFrame(
        {"v": uniques, "out": [fn(v) for v in uniques.to_list()]}, schema={"v": series.dtype, "out": dtype}
    )
    return pl.DataFrame({"v": series}).join(lookup, on="v", how="left", maintain_order="left")["out"]


def prepare_records(raw: pl.DataFrame, phone_region: str = norm.DEFAULT_PHONE_REGION) -> pl.DataFrame:
    """Normalise the fields and add match keys; records are numbered 0..n-1 in (source, key) order."""
    df = raw.unique(subset=["source", "source_key"], keep="first").sort(["source", "source_key"])
    split_first = _map(df["full_name"], lambda s: norm.split_full_name(s)[0])
    split_last = _map(df["full_name"], lambda s: norm.split_full_name(s)[1])
    names = df.select(
        pl.coalesce(pl.col("first_name"), split_first).alias("first"),
        pl.coalesce(pl.col("last_name"), split_last).alias("last"),
    )
    first, last = names["first"], names["last"]
    emails = df.select(**norm.email_features(pl.col("email")))
    email = emails["email"]
    out = pl.DataFrame(
        {
            "record_id": np.arange(df.height, dtype=np.int64),
            "source": df["source"],
            "source_key": df["source_key"],
            "email": email,
            "phone_e164": norm.phones_to_e164(df["phone_raw"], phone_region),
            "first_name": _map(first, norm.display_name),
            "last_name": _map(last, norm.display_name),
            "city": _map(df["city"], norm.display_name),
            "postcode": _map(df["postcode"], norm.display_postcode),
            "record_created_at": df["created_at"],
            "record_updated_at": df["updated_at"],
        }
    )
    out = out.with_columns(
        (pl.col("source") + ":" + pl.col("source_key")).alias("record_key"),
        _map(out["first_name"], norm.name_key).alias("first_name_key"),
        _map(out["last_name"], norm.name_key).alias("last_name_key"),
        emails["email_local"],
        _map(out["city"], norm.city_key).alias("city_key"),
        _map(out["postcode"], norm.postcode_key).alias("postcode_key"),
    )
    # a phone held by records with different surnames is a switchboard: no evidence of one person
    surnames = pl.col("last_name_key").drop_nulls().n_unique().over("phone_e164")
    out = out.with_columns(
        pl.when(pl.col("phone_e164").is_not_null() & (surnames <= 1)).then(pl.col("phone_e164")).alias("phone_match")
    )
    return out.with_columns(
        pl.col("first_name_key").str.slice(0, 1).alias("first_initial"),
        _map(out["first_name_key"], norm.first_name_canonical).alias("first_name_canon"),
        emails["email_domain"],
        emails["email_local_letters"],
        emails["email_signature"],
        emails["email_match"],
    )


# --------------------------------------------------------------------------------------------
# 2. deterministic links
# --------------------------------------------------------------------------------------------


def _star_edges(groups: pl.DataFrame, key: list[str], rule: str) -> pl.DataFrame:
    """Connect every record of a group to the group's smallest record."""
    return (
        groups.with_columns(pl.col("record_id").min().over(key).alias("anchor"))
        .filter(pl.col("record_id") != pl.col("anchor"))
        .select(pl.col("anchor").alias("a"), pl.col("record_id").alias("b"), pl.lit(rule).alias("rule"))
    )


def deterministic_edges(records: pl.DataFrame) -> pl.DataFrame:
    """Edges (a, b, rule) from equal emails and equal phones (with the surname guard)."""
    with_email = records.filter(pl.col("email").is_not_null() & pl.col("email_match").is_not_null()).select(
        "record_id", "email"
    )
    email_edges = _star_edges(with_email, ["email"], "email")

    phones = records.filter(pl.col("phone_e164").is_not_null()).select("record_id", "phone_e164", "last_name_key")
    phones = phones.with_columns(
        pl.col("last_name_key").n_unique().over("phone_e164").alias("names"),
        pl.col("last_name_key").null_count().over("phone_e164").alias("nulls"),
        pl.len().over("phone_e164").alias("size"),
    ).with_columns(
        # distinct surnames, not counting a missing one
        (pl.col("names") - (pl.col("nulls") > 0).cast(pl.UInt32)).alias("surnames")
    )
    agreeing = phones.filter(
        (pl.col("surnames") <= 1) & ((pl.col("surnames") == 1) | (pl.col("size") <= MAX_PHONE_GROUP_WITHOUT_NAMES))
    )
    phone_edges = _star_edges(agreeing, ["phone_e164"], "phone")
    # a shared phone with several surnames: link only the records with the same surname
    disagreeing = phones.filter((pl.col("surnames") > 1) & pl.col("last_name_key").is_not_null())
    phone_name_edges = _star_edges(disagreeing, ["phone_e164", "last_name_key"], "phone")
    return (
        pl.concat([email_edges, phone_edges, phone_name_edges])
        .unique(subset=["a", "b"], keep="first", maintain_order=True)
        .sort(["a", "b"])
    )


# --------------------------------------------------------------------------------------------
# 3. probabilistic links
# --------------------------------------------------------------------------------------------

PROFILE_COLUMNS = ["first_name_key", "last_name_key", "email", "phone_e164", "city_key", "postcode_key"]
DERIVED_MATCH_COLUMNS = [
    "email_local",
    "first_initial",
    "first_name_canon",
    "email_domain",
    "email_local_letters",
    "email_signature",
    "email_match",
    "phone_match",
]


def build_profiles(records: pl.DataFrame, det_labels: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Distinct match tuples within each deterministic cluster.

    Returns (profiles with profile_id, det_cluster, match columns; record_id -> profile_id map).
    Records with no match field at all (a ticket with no requester) are left out: nothing to match on.
    """
    df = records.with_columns(pl.Series("det_cluster", det_labels)).filter(
        pl.any_horizontal(pl.col(c).is_not_null() for c in PROFILE_COLUMNS)
    )
    keys = ["det_cluster", *PROFILE_COLUMNS]
    profiles = (
        df.group_by(keys)
        .agg(pl.col("record_id").min().alias("profile_id"), *(pl.col(c).first() for c in DERIVED_MATCH_COLUMNS))
        .sort("profile_id")
    )
    members = df.join(profiles.select(*keys, pl.col("profile_id")), on=keys, how="inner", nulls_equal=True)
    return profiles, members.select("record_id", "profile_id")


def probabilistic_edges(
    records: pl.DataFrame, det_labels: np.ndarray, settings: MatchSettings, threshold: float | None = None
) -> pl.DataFrame:
    """Edges (a, b, match_probability) between records of different deterministic clusters."""
    empty = pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "match_probability": pl.Float64})
    model = load_model(settings.model_path)
    if model is None:
        logger.warning("No Splink model at %s: probabilistic matching skipped", settings.model_path)
        return empty
    profiles, _ = build_profiles(records, det_labels)
    pairs = predict_pairs(profiles, model, settings.threshold if threshold is None else threshold)
    if pairs.height == 0:
        return empty
    # a profile's id is its smallest record id: link those representative records
    return pairs.select(
        pl.col("profile_id_l").alias("a"), pl.col("profile_id_r").alias("b"), pl.col("match_probability")
    )


# --------------------------------------------------------------------------------------------
# 4. steward overrides
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
    :mod:`crm.identity.steward`); any of them may be missing."""
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


# --------------------------------------------------------------------------------------------
# 5. the run
# --------------------------------------------------------------------------------------------


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
    con.execute(
        f"""create table if not exists {SCHEMA}.records (
            record_key varchar, source varchar, source_key varchar, customer_id varchar, email varchar,
            phone_e164 varchar, first_name varchar, last_name varchar, city varchar, postcode varchar,
            record_created_at timestamp, record_updated_at timestamp, match_rule varchar,
            match_probability double, resolved_at timestamp, run_id varchar)"""
    )
    con.execute(
        f"""create table if not exists {SCHEMA}.match_pairs (
            record_key_l varchar, record_key_r varchar, match_probability double, run_id varchar)"""
    )
    con.execute(
        f"""create table if not exists {SCHEMA}.runs (
            run_id varchar, resolved_at timestamp, records bigint, customers bigint, new_customer_ids bigint,
            deterministic_edges bigint, probabilistic_edges bigint, merges bigint, splits bigint,
            retired bigint, seconds double)"""
    )


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
        )
        select o.action, o.l, o.r
        from o
        join {SCHEMA}.records a on a.record_key = o.l
        join {SCHEMA}.records b on b.record_key = o.r
        where (o.action = 'merge' and a.customer_id <> b.customer_id)
           or (o.action = 'split' and a.customer_id = b.customer_id)
        """
    ).fetchall()


@dataclass
class Resolution:
    records: pl.DataFrame  # records with cluster, match_rule, match_probability
    det_edges: pl.DataFrame
    prob_edges: pl.DataFrame
    steward_merges_applied: int
    steward_splits: int
    steward_ignored: int
    stage_seconds: dict[str, float]


def resolve(
    records: pl.DataFrame,
    overrides: pl.DataFrame | None,
    settings: IdentitySettings,
    prob_edges: pl.DataFrame | None = None,
) -> Resolution:
    """Cluster prepared records (pure: no database). ``prob_edges`` may be given precomputed."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    n = records.height
    det = deterministic_edges(records)
    det_labels = cluster_records(
        n, det["a"].to_numpy(), det["b"].to_numpy(), np.full(det.height, PRIORITY_DETERMINISTIC)
    ).labels
    timings["deterministic"] = time.perf_counter() - t

    t = time.perf_counter()
    if prob_edges is None:
        prob_edges = (
            probabilistic_edges(records, det_labels, settings.match)
            if settings.probabilistic and n > 1
            else pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "match_probability": pl.Float64})
        )
    else:
        prob_edges = prob_edges.filter(pl.col("match_probability") >= settings.match.threshold)
    timings["probabilistic"] = time.perf_counter() - t

    t = time.perf_counter()
    key_to_id = dict(zip(records["record_key"].to_list(), records["record_id"].to_list(), strict=True))
    merges: list[tuple[int, int]] = []
    splits: list[tuple[int, int]] = []
    ignored = 0
    if overrides is not None:
        for action, left, right in overrides.select("action", "left", "right").iter_rows():
            a, b = key_to_id.get(left), key_to_id.get(right)
            if a is None or b is None or action not in ("merge", "split"):
                ignored += 1
                continue
            (merges if action == "merge" else splits).append((a, b))
    src = np.concatenate(
        [det["a"].to_numpy(), prob_edges["a"].to_numpy(), np.array([m[0] for m in merges], dtype=np.int64)]
    )
    dst = np.concatenate(
        [det["b"].to_numpy(), prob_edges["b"].to_numpy(), np.array([m[1] for m in merges], dtype=np.int64)]
    )
    pri = np.concatenate(
        [
            np.full(det.height, PRIORITY_DETERMINISTIC),
            np.full(prob_edges.height, PRIORITY_PROBABILISTIC),
            np.full(len(merges), PRIORITY_STEWARD),
        ]
    )
    weight = np.concatenate([np.ones(det.height), prob_edges["match_probability"].to_numpy(), np.ones(len(merges))])
    result = cluster_records(n, src, dst, pri, weight, cannot_link=splits)
    skipped_merges = sum(1 for _, _, p in result.skipped_edges if p == PRIORITY_STEWARD)
    if skipped_merges:
        logger.warning("%d steward merges contradict steward splits and were not applied", skipped_merges)
    labels = result.labels

    # how each record joined its cluster: its strongest edge inside the final cluster
    edges = pl.DataFrame(
        {
            "a": src,
            "b": dst,
            "priority": pri,
            "weight": weight,
            "rule": [*det["rule"].to_list(), *(["probabilistic"] * prob_edges.height), *(["steward"] * len(merges))],
        },
        schema={"a": pl.Int64, "b": pl.Int64, "priority": pl.Int64, "weight": pl.Float64, "rule": pl.Utf8},
    )
    lab = pl.Series(labels)
    edges = edges.filter(lab.gather(edges["a"]) == lab.gather(edges["b"])) if edges.height else edges
    ends = pl.concat(
        [
            edges.select(pl.col("a").alias("record_id"), "priority", "weight", "rule"),
            edges.select(pl.col("b").alias("record_id"), "priority", "weight", "rule"),
        ]
    )
    best = (
        ends.sort(["record_id", "priority", "weight"], descending=[False, False, True])
        .group_by("record_id", maintain_order=True)
        .first()
    )
    prob_max = (
        ends.filter(pl.col("rule") == "probabilistic")
        .group_by("record_id")
        .agg(pl.col("weight").max().alias("match_probability"))
    )
    out = (
        records.with_columns(pl.Series("cluster", labels, dtype=pl.Int64))
        .join(best.select("record_id", pl.col("rule").alias("match_rule")), on="record_id", how="left")
        .join(prob_max, on="record_id", how="left")
        .with_columns(pl.col("match_rule").fill_null("none"))
    )
    timings["clustering"] = time.perf_counter() - t
    return Resolution(
        records=out,
        det_edges=det,
        prob_edges=prob_edges,
        steward_merges_applied=len(merges) - skipped_merges,
        steward_splits=len(splits),
        steward_ignored=ignored,
        stage_seconds=timings,
    )


def _replace_steward_decisions(con: duckdb.DuckDBPyConnection, decisions: pl.DataFrame) -> None:
    """The dashboard's decisions (crm.identity.steward) as this run applies them."""
    con.register("_decisions", decisions.to_arrow())
    try:
        con.execute(f"delete from {SCHEMA}.steward_decisions")
        con.execute(f"insert into {SCHEMA}.steward_decisions by name select * from _decisions")
    finally:
        con.unregister("_decisions")


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

    con.execute("set enable_progress_bar = false")
    ensure_identity_tables(con)
    if steward_decisions is not None:
        _replace_steward_decisions(con, steward_decisions)
    t = time.perf_counter()
    records = prepare_records(load_source_records(con), settings.phone_region)
    timings["load_normalise"] = time.perf_counter() - t

    resolution = resolve(records, load_overrides(con), settings)
    timings.update(resolution.stage_seconds)

    t = time.perf_counter()
    previous = query_pl(con, f"select record_key, customer_id from {SCHEMA}.records")
    max_seq = con.execute(f"select max(customer_id) from {SCHEMA}.customer_ids").fetchall()[0][0]
    next_seq = parse_customer_seq(max_seq) + 1 if max_seq else 1
    ids = assign_stable_ids(resolution.records.select("record_key", "cluster"), previous, next_seq)
    out = resolution.records.join(ids.assignments.select("cluster", "customer_id"), on="cluster", how="left")
    timings["stable_ids"] = time.perf_counter() - t

    t = time.perf_counter()
    final = out.select(
        "record_key",
        "source",
        "source_key",
        "customer_id",
        "email",
        "phone_e164",
        "first_name",
        "last_name",
        "city",
        "postcode",
        "record_created_at",
        "record_updated_at",
        "match_rule",
        pl.col("match_probability").cast(pl.Float64),
        pl.lit(now).cast(pl.Datetime("us")).alias("resolved_at"),
        pl.lit(run_id).alias("run_id"),
    )
    key_of = resolution.records.select("record_id", "record_key")
    pairs = (
        resolution.prob_edges.join(key_of.rename({"record_id": "a", "record_key": "record_key_l"}), on="a")
        .join(key_of.rename({"record_id": "b", "record_key": "record_key_r"}), on="b")
        .select("record_key_l", "record_key_r", "match_probability", pl.lit(run_id).alias("run_id"))
    )
    new_ids = ids.assignments.filter(pl.col("is_new")).select(
        "customer_id", pl.lit(run_id).alias("created_run_id"), pl.lit(now).cast(pl.Datetime("us")).alias("created_at")
    )
    changes = ids.changes.select(
        pl.lit(run_id).alias("run_id"), pl.lit(now).cast(pl.Datetime("us")).alias("changed_at"), pl.all()
    )
    retired = (
        changes.filter(pl.col("change_type") != "split")
        .group_by("customer_id")
        .agg(pl.col("related_customer_id").first().alias("superseded_by"))
    )
    counts = {k: changes.filter(pl.col("change_type") == k).height for k in ("merge", "split", "retire")}
    con.execute("begin transaction")
    try:
        con.register("_final", final.to_arrow())
        con.execute(f"delete from {SCHEMA}.records")
        con.execute(f"insert into {SCHEMA}.records by name select * from _final")
        con.register("_pairs", pairs.to_arrow())
        con.execute(f"delete from {SCHEMA}.match_pairs")
        con.execute(f"insert into {SCHEMA}.match_pairs by name select * from _pairs")
        con.register("_new_ids", new_ids.to_arrow())
        con.execute(
            f"insert into {SCHEMA}.customer_ids (customer_id, created_run_id, created_at, status) "
            "select customer_id, created_run_id, created_at, 'active' from _new_ids"
        )
        con.register("_retired", retired.to_arrow())
        con.execute(
            f"""update {SCHEMA}.customer_ids set status = 'retired', retired_at = ?, superseded_by = r.superseded_by
                from _retired r where {SCHEMA}.customer_ids.customer_id = r.customer_id
                  and {SCHEMA}.customer_ids.status = 'active'""",
            [now],
        )
        con.register("_changes", changes.to_arrow())
        con.execute(f"insert into {SCHEMA}.customer_id_changes by name select * from _changes")
        customers = ids.assignments.height
        con.execute(
            f"insert into {SCHEMA}.runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                now,
                final.height,
                customers,
                new_ids.height,
                resolution.det_edges.height,
                resolution.prob_edges.height,
                counts["merge"],
                counts["split"],
                counts["retire"],
                time.perf_counter() - started,
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for name in ("_final", "_pairs", "_new_ids", "_retired", "_changes"):
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)
    timings["write"] = time.perf_counter() - t
    return IdentityRunSummary(
        run_id=run_id,
        records=final.height,
        customers=ids.assignments.height,
        new_customer_ids=new_ids.height,
        deterministic_edges=resolution.det_edges.height,
        probabilistic_edges=resolution.prob_edges.height,
        steward_merges_applied=resolution.steward_merges_applied,
        steward_splits=resolution.steward_splits,
        steward_overrides_ignored=resolution.steward_ignored,
        merges=counts["merge"],
        splits=counts["split"],
        retired=counts["retire"],
        seconds=time.perf_counter() - started,
        stage_seconds=timings,
    )
