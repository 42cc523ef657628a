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
    described = pl.any_horizontal(pl.col(c).is_not_null() for c in columns)
    keys = _profile_keys(records, columns, described)
    # the rows of the described records, and of each profile's first record: gathered, not joined,
    # so the company's records are not copied on the way
    rows = records.with_row_index("_row").lazy().filter(described).select("_row").collect().to_series()
    members = pl.DataFrame([records["record_id"].gather(rows), keys])
    first = rows.filter(keys.is_first_distinct())
    profiles = (
        records.select(*columns)
        .gather(first)
        .with_columns(keys.filter(keys.is_first_distinct()))
        .select(PROFILE_KEY, *columns)
        .sort(PROFILE_KEY)
    )
    return profiles, members


# Records are described and digested this many at a time: a million customers' descriptions, as
# text and as Python strings, would take several GB at once.
DIGEST_CHUNK = 100_000


def _profile_keys(records: pl.DataFrame, columns: list[str], described: pl.Expr) -> pl.Series:
    """The profile key of each described record, in record order."""
    # the column names are part of the description, so a new kind of evidence makes new profiles
    parts = []
    for i, column in enumerate(columns):
        parts += [pl.lit(("\x1f" if i else "") + column + "="), pl.col(column).fill_null("\x00")]
    text = pl.concat_str(parts)
    keys = []
    for start in range(0, records.height, DIGEST_CHUNK):
        chunk = records.slice(start, DIGEST_CHUNK).lazy().filter(described).select(text).collect().to_series()
        keys.append(pl.Series(PROFILE_KEY, [_digest(t) for t in chunk.to_list()], dtype=pl.Utf8))
    return pl.concat(keys) if keys else pl.Series(PROFILE_KEY, [], dtype=pl.Utf8)
