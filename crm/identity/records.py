"""The person records identity resolution works on: read from dbt's staging views, normalised in Python.

One record per (source, source system, source key):

- ``sales_contacts``: every sales contact, and every customer reference of an order that has no
  contact row (an orders-only company: the order's own description of its customer, from the
  latest order that says something);
- ``marketing_contacts``: every marketing contact, and every address seen only in marketing events;
- ``support_tickets``: every ticket's requester.

A record's key is ``<source>:<source system>:<source key>``: two shops may both have a contact 17,
and they are two records. What each record says about its person (names, email, phone, birth
date, address, external ids) is normalised here (:mod:`.normalise`) into display values and the
*match keys* that the rules and the model compare.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from crm.identity import normalise as norm

STAGING = "staging"

# What a record may say about its person, as read from staging (text; normalised below).
PERSON_FIELDS = (
    "email",
    "phone_raw",
    "first_name",
    "last_name",
    "full_name",
    "birth_date",
    "street_number",
    "address_line1",
    "address_line2",
    "city",
    "postcode",
    "region",
    "country",
    "external_ids",
)

_ORDER_ATTRIBUTES = ",\n".join(
    f"arg_max({field}, order_date) filter (where {field} is not null) as {field}" for field in PERSON_FIELDS
)

_ATTRIBUTES = ", ".join(PERSON_FIELDS)

RECORDS_SQL = f"""
with contacts as (
    select * from {STAGING}.stg_sales__contacts
),
order_refs as (
    select
        customer_system as source_system, customer_ref as source_key,
        min(order_date) as first_order_at, max(order_date) as last_order_at,
        {_ORDER_ATTRIBUTES}
    from {STAGING}.stg_sales__orders as orders
    where customer_ref is not null
      and not exists (
          select 1 from contacts
          where contacts.source_system = orders.customer_system and contacts.contact_key = orders.customer_ref
      )
    group by customer_system, customer_ref
),
marketing as (
    select * from {STAGING}.stg_marketing__contacts
),
event_emails as (
    -- from raw, not the deduplicating staging view (a window over every event): the address is
    -- cleaned exactly as the view's clean_email macro does, duplicates do not change min/max.
    -- First per address as written, then cleaned: the cleaning runs once per address, not per event.
    select source_system, email, min(first_at) as first_at, max(last_at) as last_at
    from (
        select
            source_system,
            case when lower(trim(email)) like '%_@_%._%' and trim(email) not like '% %'
                then lower(trim(email)) end as email,
            first_at,
            last_at
        from (
            select
                coalesce(_source_system, 'unnamed') as source_system, email,
                min(occurred_at) as first_at, max(occurred_at) as last_at
            from raw.marketing_events
            where email is not null
            group by 1, 2
        ) as per_address
    ) as cleaned
    where email is not null
    group by source_system, email
)
select 'sales_contacts' as source, source_system, contact_key as source_key,
       email, phone_raw, first_name, last_name, full_name, birth_date, street_number, address_line1,
       address_line2, city, postcode, region, country, external_ids, created_at, updated_at
from contacts
union all
select 'sales_contacts', source_system, source_key, {_ATTRIBUTES}, first_order_at, last_order_at
from order_refs
union all
select 'marketing_contacts', source_system, contact_key, {_ATTRIBUTES},
       coalesce(email_consent_at, updated_at), updated_at
from marketing
union all
select 'marketing_contacts', source_system, email, email, null, null, null, null, null, null, null, null,
       null, null, null, null, null, first_at, last_at
from event_emails
where not exists (
    select 1 from marketing
    where marketing.source_system = event_emails.source_system and marketing.contact_key = event_emails.email
)
union all
select 'support_tickets', source_system, ticket_key, requester_email, requester_phone_raw, first_name,
       last_name, coalesce(full_name, requester_name), birth_date, street_number, address_line1, address_line2,
       city, postcode, region, country, external_ids, created_at, updated_at
from {STAGING}.stg_support__tickets
"""

RECORD_SCHEMA = {
    "source": pl.Utf8,
    "source_system": pl.Utf8,
    "source_key": pl.Utf8,
    **{field: pl.Utf8 for field in PERSON_FIELDS},
    "created_at": pl.Datetime("us"),
    "updated_at": pl.Datetime("us"),
}


def query_pl(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """A query's result as a polars frame, handed over through a Parquet file.

    Through Arrow, a result is built whole in DuckDB's memory and converted into polars': at a
    million customers the records took 1.5 GB on DuckDB's side and 1.3 GB on polars', and DuckDB's
    allocator kept its part after the conversion. DuckDB writes Parquet streaming, in little memory,
    and polars reads it straight into its own."""
    with tempfile.TemporaryDirectory(prefix="crm_identity_") as folder:
        path = Path(folder) / "result.parquet"
        con.execute(f"copy ({sql}) to '{path}' (format parquet)", params or None)
        return pl.read_parquet(path)


@contextmanager
def frame_view(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> Iterator[None]:
    """``frame`` as the temp view ``name`` of ``con`` while the block runs, handed over through a
    Parquet file (see :func:`query_pl`: Arrow would copy a company's records into DuckDB's memory)."""
    with tempfile.TemporaryDirectory(prefix="crm_identity_") as folder:
        path = Path(folder) / f"{name}.parquet"
        frame.write_parquet(path)
        con.execute(f"create or replace temp view {name} as select * from read_parquet('{path}')")
        try:
            yield
        finally:
            con.execute(f"drop view if exists {name}")


def load_source_records(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The records as staging holds them, one row per (source, source_system, source_key)."""
    frame = query_pl(con, RECORDS_SQL)
    if frame.height == 0:
        return pl.DataFrame(schema=RECORD_SCHEMA)
    return frame.select(
        *(pl.col(c).cast(t) for c, t in RECORD_SCHEMA.items() if c not in ("created_at", "updated_at")),
        pl.col("created_at").cast(pl.Datetime("us")),
        pl.col("updated_at").cast(pl.Datetime("us")),
    )


def _map(series: pl.Series, fn, dtype=pl.Utf8) -> pl.Series:
    """Apply a scalar function once per distinct value."""
    uniques = series.drop_nulls().unique()
    lookup = pl.DataFrame(
        {"v": uniques, "out": [fn(v) for v in uniques.to_list()]}, schema={"v": series.dtype, "out": dtype}
    )
    return pl.DataFrame({"v": series}).join(lookup, on="v", how="left", maintain_order="left")["out"]


# The match keys a record can carry; which of them the model compares depends on what the company has.
NAME_KEYS = ("first_name_key", "first_name_canon", "first_initial", "last_name_key", "last_name_phonetic")
EMAIL_KEYS = ("email", "email_match", "email_local", "email_local_letters", "email_signature", "email_domain")
PLACE_KEYS = ("street_number_key", "address_key", "address2_key", "city_key", "postcode_key", "region_key")
EVIDENCE_KEYS = (*NAME_KEYS, "dob_key", *PLACE_KEYS, *EMAIL_KEYS, "phone_key")
ID_PREFIX = "id_"


def id_columns(records: pl.DataFrame) -> list[str]:
    """The external-id columns (``id_<kind>``) the records carry."""
    return sorted(c for c in records.columns if c.startswith(ID_PREFIX))


def _external_ids(raw: pl.Series) -> tuple[pl.Series, pl.DataFrame]:
    """(normalised JSON per record, one column id_<kind> per kind of external id)."""
    uniques = raw.drop_nulls().unique().to_list()
    parsed = {value: norm.parse_external_ids(value) for value in uniques}
    kinds = sorted({kind for ids in parsed.values() for kind in ids})
    lookup = pl.DataFrame(
        {
            "v": uniques,
            "external_ids": [json.dumps(parsed[v], sort_keys=True) if parsed[v] else None for v in uniques],
            **{f"{ID_PREFIX}{kind}": [parsed[v].get(kind) for v in uniques] for kind in kinds},
        },
        schema={"v": pl.Utf8, "external_ids": pl.Utf8, **{f"{ID_PREFIX}{k}": pl.Utf8 for k in kinds}},
    )
    joined = pl.DataFrame({"v": raw}).join(lookup, on="v", how="left", maintain_order="left")
    return joined["external_ids"], joined.drop("v", "external_ids")


def keyed_records(raw: pl.DataFrame) -> pl.DataFrame:
    """The source records with their record key (``rk``), one row per key, in key order."""
    return (
        raw.with_columns((pl.col("source") + ":" + pl.col("source_system") + ":" + pl.col("source_key")).alias("rk"))
        .unique(subset=["rk"], keep="first")
        .sort("rk")
    )


def prepare_records(
    raw: pl.DataFrame, phone_region: str = norm.DEFAULT_PHONE_REGION, *, day_first: bool = True
) -> pl.DataFrame:
    """Normalise the fields and add match keys; records are numbered 0..n-1 in record-key order."""
    return number_records(normalise_records(keyed_records(raw), phone_region, day_first=day_first))


def number_records(records: pl.DataFrame) -> pl.DataFrame:
    """Prepared records (any order, no ``record_id``) in record-key order, numbered 0..n-1, with the
    columns in the order :func:`prepare_records` gives (the external-id columns last, sorted)."""
    if not records["record_key"].is_sorted():  # read in key order, it is not copied again
        records = records.sort("record_key")
    ids = id_columns(records)
    others = [c for c in records.columns if c not in ids and c != "record_id"]
    return records.select(pl.Series("record_id", np.arange(records.height, dtype=np.int64)), *others, *ids)


def normalise_records(
    df: pl.DataFrame, phone_region: str = norm.DEFAULT_PHONE_REGION, *, day_first: bool = True
) -> pl.DataFrame:
    """Keyed source records (:func:`keyed_records`) normalised, with their match keys; no ``record_id``.

    Each record's output depends on that record alone (never on the others), which lets a nightly
    run normalise only the records that are new or changed and keep the rest from the last run.
    """
    split_first = _map(df["full_name"], lambda s: norm.split_full_name(s)[0])
    split_last = _map(df["full_name"], lambda s: norm.split_full_name(s)[1])
    first = df.select(pl.coalesce(pl.col("first_name"), split_first))[:, 0]
    last = df.select(pl.coalesce(pl.col("last_name"), split_last))[:, 0]
    emails = df.select(**norm.email_features(pl.col("email")))
    external_ids, ids = _external_ids(df["external_ids"])
    dob_key = _map(df["birth_date"], lambda v: norm.birth_date_key(v, day_first=day_first))
    line1 = _map(df["address_line1"], norm.address_key)
    # a house number written inside the first line counts as the house number ('12 forbes street')
    number = df.select(
        pl.coalesce(
            _map(df["street_number"], norm.street_number_key),
            _map(line1, lambda key: norm.split_house_number(key)[0]),
        )
    )[:, 0]
    street = _map(line1, lambda key: norm.split_house_number(key)[1])
    # the house number, when a source keeps it apart, belongs to the first address line
    full_line1 = df.select(
        pl.when(pl.col("street_number").is_not_null() & pl.col("address_line1").is_not_null())
        .then(pl.col("street_number") + " " + pl.col("address_line1"))
        .otherwise(pl.coalesce("address_line1", "street_number"))
    )[:, 0]
    out = pl.DataFrame(
        {
            "record_key": df["rk"],
            "source": df["source"],
            "source_system": df["source_system"],
            "source_key": df["source_key"],
            "email": emails["email"],
            "phone_e164": norm.phones_to_e164(df["phone_raw"], phone_region),
            "first_name": _map(first, norm.display_name),
            "last_name": _map(last, norm.display_name),
            "birth_date": _map(dob_key, norm.display_birth_date),
            "address_line1": _map(full_line1, norm.clean_text),
            "address_line2": _map(df["address_line2"], norm.clean_text),
            "city": _map(df["city"], norm.display_name),
            "postcode": _map(df["postcode"], norm.display_postcode),
            "region": _map(df["region"], norm.clean_text),
            "country": _map(df["country"], norm.clean_text),
            "external_ids": external_ids,
            "record_created_at": df["created_at"],
            "record_updated_at": df["updated_at"],
            "dob_key": dob_key,
            "street_number_key": number,
            "address_key": street,
            "address2_key": _map(df["address_line2"], norm.address_key),
            "region_key": _map(df["region"], norm.city_key),
        }
    )
    out = out.with_columns(
        pl.col("phone_e164").alias("phone_key"),
        _map(out["first_name"], norm.name_key).alias("first_name_key"),
        _map(out["last_name"], norm.name_key).alias("last_name_key"),
        _map(out["city"], norm.city_key).alias("city_key"),
        _map(out["postcode"], norm.postcode_key).alias("postcode_key"),
        *(emails[c] for c in ("email_local", "email_local_letters", "email_signature", "email_domain", "email_match")),
    )
    out = out.with_columns(
        _map(out["first_name_key"], norm.first_name_canonical).alias("first_name_canon"),
        _map(out["last_name_key"], norm.phonetic_key).alias("last_name_phonetic"),
    )
    # the initial of the formal name: 'Ted' and 'Edward' block together
    out = out.with_columns(pl.col("first_name_canon").str.slice(0, 1).alias("first_initial"))
    return pl.concat([out, ids], how="horizontal") if ids.width else out


def has_evidence(records: pl.DataFrame) -> pl.Expr:
    """True for a record that says anything about its person (a bare order reference does not)."""
    columns = [c for c in (*EVIDENCE_KEYS, *id_columns(records)) if c in records.columns]
    return pl.any_horizontal(pl.col(c).is_not_null() for c in columns) if columns else pl.lit(False)
