"""Deterministic evidence: equal strong identifiers link records, unless the value is shared by strangers.

Strong identifiers are the normalised email (role mailboxes such as info@ and placeholders such as
test@test.com excluded by :mod:`.normalise`), the E.164 phone and every declared external id
(``id_<kind>``). Before any of them links anything, the **value guard** looks at who holds each
value across the whole company: a value held by records with many different surnames, or by more
distinct descriptions of a person than a customer may hold, is a shared mailbox, a switchboard or
a placeholder nobody listed (``0000000000``, ``N/A``). Such a value is refused as evidence (for
the rules and for the model alike) and listed for a steward in ``identity.guarded_values``.

A phone shared by two or three people with different surnames (a household, a small office) is
not refused: it links only the records that also agree on the surname.
"""

from __future__ import annotations

import polars as pl

from crm.identity.records import id_columns

# A value held by records with more different surnames than this is shared, not personal.
MAX_SURNAMES_PER_VALUE = 3
# A phone held by more records than this, none of them naming a surname, proves nothing.
MAX_PHONE_GROUP_WITHOUT_NAMES = 20

# A mail domain whose addresses carry more surnames than this (and this share of all records) is public.
MIN_PUBLIC_DOMAIN_HOLDERS = 20
PUBLIC_DOMAIN_SHARE = 0.005

# What a person looks like to the guard: two records with these equal describe one way of being someone.
DESCRIPTION_KEYS = ("first_name_key", "last_name_key", "email", "phone_key", "dob_key", "postcode_key", "address_key")

GUARDED_SCHEMA = {"value_kind": pl.Utf8, "value": pl.Utf8, "records": pl.Int64, "reason": pl.Utf8}


def evidence_columns(records: pl.DataFrame) -> dict[str, str]:
    """value kind -> the column holding it."""
    return {
        "email": "email_match",
        "phone": "phone_key",
        **{f"external_id:{c.removeprefix('id_')}": c for c in id_columns(records)},
    }


def description_expr(records: pl.DataFrame) -> pl.Expr:
    return pl.struct([c for c in DESCRIPTION_KEYS if c in records.columns])


def guard_values(records: pl.DataFrame, max_cluster_size: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records with refused values removed from the match keys, the refused values with the reason).

    ``phone_match`` is added: the phone as evidence for the model, absent when the records holding
    it disagree on the surname (they are linked by the phone rule only where the surname agrees).
    """
    guarded = []
    for kind, column in evidence_columns(records).items():
        # lazy, so that only the columns the guard reads are filtered (the records are the company)
        held = (
            records.lazy()
            .filter(pl.col(column).is_not_null())
            .group_by(column)
            .agg(
                pl.len().alias("records"),
                pl.col("last_name_key").drop_nulls().n_unique().alias("surnames"),
                description_expr(records).n_unique().alias("descriptions"),
            )
            .filter((pl.col("surnames") > MAX_SURNAMES_PER_VALUE) | (pl.col("descriptions") > max_cluster_size))
            .collect()
        )
        if held.height:
            guarded.append(
                held.select(
                    pl.lit(kind).alias("value_kind"),
                    pl.col(column).alias("value"),
                    pl.col("records").cast(pl.Int64),
                    pl.format(
                        "held by {} records naming {} different surnames and {} different descriptions of a person: "
                        "a shared or placeholder value, not used to link anyone",
                        "records",
                        "surnames",
                        "descriptions",
                    ).alias("reason"),
                )
            )
            refused = pl.col(column).is_in(held[column].implode())
            extra = []
            if kind == "email":
                # its letters and signature would bring the strangers together for the model
                extra = ["email_local", "email_local_letters", "email_signature"]
            records = records.with_columns(
                *(pl.when(~refused | pl.col(column).is_null()).then(pl.col(c)).alias(c) for c in [column, *extra])
            )
    # A mail domain held by many people is a webmail provider; a company's own domain says where someone works.
    if "email_domain" in records.columns:
        holders = pl.col("last_name_key").drop_nulls().n_unique().over("email_domain")
        public = holders > max(MIN_PUBLIC_DOMAIN_HOLDERS, PUBLIC_DOMAIN_SHARE * records.height)
        records = records.with_columns(
            pl.when(pl.col("email_match").is_not_null() & ~public)
            .then(pl.col("email_domain"))
            .alias("email_company_domain")
        )
    surnames = pl.col("last_name_key").drop_nulls().n_unique().over("phone_key")
    records = records.with_columns(
        pl.when(pl.col("phone_key").is_not_null() & (surnames <= 1)).then(pl.col("phone_key")).alias("phone_match")
    )
    table = pl.concat(guarded) if guarded else pl.DataFrame(schema=GUARDED_SCHEMA)
    return records, table.sort("value_kind", "value")


def _star_edges(groups: pl.DataFrame, key: list[str], rule: str) -> pl.DataFrame:
    """Connect every record of a group to the group's smallest record."""
    return (
        groups.with_columns(pl.col("record_id").min().over(key).alias("anchor"))
        .filter(pl.col("record_id") != pl.col("anchor"))
        .select(pl.col("anchor").alias("a"), pl.col("record_id").alias("b"), pl.lit(rule).alias("rule"))
    )


EDGE_SCHEMA = {"a": pl.Int64, "b": pl.Int64, "rule": pl.Utf8}


def deterministic_edges(records: pl.DataFrame) -> pl.DataFrame:
    """Edges (a, b, rule) from equal emails, equal external ids and equal phones (with the surname guard)."""
    parts = [pl.DataFrame(schema=EDGE_SCHEMA)]
    if "email_match" in records.columns:
        with_email = records.select("record_id", "email_match").filter(pl.col("email_match").is_not_null())
        parts.append(_star_edges(with_email, ["email_match"], "email"))
    for kind, column in evidence_columns(records).items():
        if kind.startswith("external_id:"):
            held = records.select("record_id", column).filter(pl.col(column).is_not_null())
            parts.append(_star_edges(held, [column], kind))

    phone = "phone_key" if "phone_key" in records.columns else "phone_e164"
    phones = records.select("record_id", pl.col(phone).alias("phone"), "last_name_key").filter(
        pl.col("phone").is_not_null()
    )
    phones = phones.with_columns(
        pl.col("last_name_key").n_unique().over("phone").alias("names"),
        pl.col("last_name_key").null_count().over("phone").alias("nulls"),
        pl.len().over("phone").alias("size"),
    ).with_columns(
        # distinct surnames, not counting a missing one
        (pl.col("names") - (pl.col("nulls") > 0).cast(pl.UInt32)).alias("surnames")
    )
    agreeing = phones.filter(
        (pl.col("surnames") <= 1) & ((pl.col("surnames") == 1) | (pl.col("size") <= MAX_PHONE_GROUP_WITHOUT_NAMES))
    )
    parts.append(_star_edges(agreeing, ["phone"], "phone"))
    # a shared phone with several surnames: link only the records with the same surname
    disagreeing = phones.filter((pl.col("surnames") > 1) & pl.col("last_name_key").is_not_null())
    parts.append(_star_edges(disagreeing, ["phone", "last_name_key"], "phone"))
    return (
        pl.concat([p.cast(EDGE_SCHEMA) for p in parts])
        .unique(subset=["a", "b"], keep="first", maintain_order=True)
        .sort(["a", "b"])
    )
