"""Profiles: the distinct descriptions of a person among the records, which the model compares.

A profile is one combination of match keys; every record with that exact description shares it
(twenty tickets from one requester are one profile). Its key is a digest of the description, so
the same description has the same key in every run: a nightly run scores only profiles it has
never scored, and the pairs scored before stay valid.
"""

from __future__ import annotations

import hashlib

import polars as pl

from crm.identity.records import id_columns

PROFILE_KEY = "profile_key"

MATCH_COLUMNS = (
    "first_name_key",
    "first_name_canon",
    "first_initial",
    "last_name_key",
    "last_name_phonetic",
    "dob_key",
    "street_number_key",
    "address_key",
    "address2_key",
    "city_key",
    "postcode_key",
    "region_key",
    "email_match",
    "email_local_letters",
    "email_signature",
    "email_domain",
    "email_company_domain",
    "phone_match",
)


def match_columns(records: pl.DataFrame) -> list[str]:
    return [*(c for c in MATCH_COLUMNS if c in records.columns), *id_columns(records)]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def build_profiles(records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(profiles: profile_key + match keys, one row each; members: record_id -> profile_key).

    Records that hold no match key at all (an order reference and nothing else) have no profile.
    """
    columns = match_columns(records)
    # the column names are part of the description, so a new kind of evidence makes new profiles
    text = pl.concat_str([pl.lit(c + "=") + pl.col(c).fill_null("\x00") for c in columns], separator="\x1f").alias(
        "_description"
    )
    described = records.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in columns)).select(
        "record_id", *columns, text
    )
    unique = described["_description"].unique()
    keys = pl.DataFrame(
        {"_description": unique, PROFILE_KEY: [_digest(t) for t in unique.to_list()]},
        schema={"_description": pl.Utf8, PROFILE_KEY: pl.Utf8},
    )
    described = described.join(keys, on="_description", how="left")
    profiles = (
        described.group_by(PROFILE_KEY)
        .agg(*(pl.col(c).first() for c in columns))
        .select(PROFILE_KEY, *columns)
        .sort(PROFILE_KEY)
    )
    return profiles, described.select("record_id", PROFILE_KEY)
