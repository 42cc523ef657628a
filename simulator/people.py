"""Persons, the accounts and reps they belong to, and how each system writes a person down.

A *person* is the real human (ground truth). Each source system holds *records* of persons, and a
record writes the person's name, email and phone its own way: the identity mess lives in
:func:`render_records`, which every source uses, so the rates are the same kind of thing everywhere
and the ground truth can classify every record against the person it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from simulator import behaviour
from simulator.config import SimulationConfig, rng_for
from simulator.profiles import profile
from simulator.refdata import (
    ACCENT_FOLD,
    ALT_DOMAINS,
    CITIES,
    COMPANY_DOMAIN_SUFFIX,
    COMPANY_SUFFIXES,
    COMPANY_TRADES,
    COMPANY_WORDS,
    FIRST_NAMES,
    LAST_NAMES,
    MOBILE_SECOND_DIGITS,
    NICKNAMES,
    OWN_COMPANY_DOMAIN,
    POSTCODE_LETTERS,
    PRIMARY_DOMAINS,
    SHARED_MAILBOXES,
)

B2B_EXTRA_CONTACTS = 1.6  # a B2B account has 2 + Poisson(1.6) persons
B2B_LANDLINE = 0.70  # B2B persons mostly give a direct office line
B2C_LANDLINE = 0.15
USES_SHARED_MAILBOX = 0.20  # of B2B persons: sometimes write info@company instead of their own address
PAYMENT_TERMS_B2B = np.array([14, 30, 30, 45, 60])
PERSONS_PER_REP = 2_500

# Email kinds, also the labels written to the ground truth.
EXACT, CASE, TYPO, OTHER, SHARED, MISSING = "exact", "case_or_space", "typo", "other_address", "shared", "missing"


@dataclass(frozen=True)
class RecordMess:
    """How often one record writes a person differently from the truth (per record, independent)."""

    email_case: float = 0.28  # same address, different case or surrounding spaces
    email_typo: float = 0.05
    email_other: float = 0.14  # a different address altogether (phone, name and place still match)
    email_shared: float = 0.5  # for persons who use a shared mailbox: share of their records that do
    email_missing: float = 0.0
    phone_missing: float = 0.05
    nickname: float = 0.08
    initial: float = 0.03
    upper_last: float = 0.03
    lower_all: float = 0.02
    accent_fold: float = 0.45  # of records of persons whose name has an accent
    place_variant: float = 0.10


@dataclass
class Population:
    persons: pl.DataFrame  # one row per person, row i = person_idx i
    accounts: pl.DataFrame  # one row per account, row i = account_idx i
    reps: pl.DataFrame  # one row per rep, row i = rep_idx i


def _weighted(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=size, p=w / w.sum())


def _bijection(x: np.ndarray, modulus: int) -> np.ndarray:
    """Scatter 0..modulus-1 onto itself, so sequential ranks give unique, random-looking numbers."""
    a = 7_919_973  # odd and not a multiple of 5: coprime with any power of ten
    return (x.astype(np.int64) * a + 104_729) % modulus


def _b2b_account_sizes(rng: np.random.Generator, n_b2b: int, extra: float = B2B_EXTRA_CONTACTS) -> np.ndarray:
    if n_b2b < 2:
        return np.zeros(0, dtype=np.int64)
    sizes = 2 + rng.poisson(extra, size=n_b2b // 2 + 1)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, n_b2b))
    sizes = sizes[: k + 1].copy()
    sizes[k] -= cs[k] - n_b2b
    if sizes[k] < 2 and k > 0:  # a company of one is not B2B: fold the remainder into the previous
        sizes[k - 1] += sizes[k]
        sizes = sizes[:k]
    return sizes


def _ascii_lower(col: str) -> pl.Expr:
    return pl.col(col).replace(ACCENT_FOLD).str.to_lowercase().str.replace_all("[^a-z]", "")


def _pick(pool, idx: np.ndarray) -> pl.Series:
    """Strings from a small pool by index (much cheaper than building numpy string arrays)."""
    return pl.Series(list(pool), dtype=pl.String).gather(pl.Series(idx))


def _unique_addresses(df: pl.DataFrame, local: str, domain: str) -> pl.Series:
    """local@domain, made unique by appending .2, .3 ... to later holders (row order decides).

    Only the few colliding rows are ranked; ranking all rows in a window is far slower.
    """
    addr = df.select(pl.col(local) + "@" + pl.col(domain)).to_series()
    rows = np.flatnonzero(addr.is_duplicated().to_numpy())
    if len(rows):
        rank = pl.int_range(pl.len()).over([local, domain])
        fixed = df[rows].select(
            pl.when(rank == 0).then(pl.col(local)).otherwise(pl.col(local) + "." + (rank + 1).cast(pl.String))
            + "@"
            + pl.col(domain)
        )
        addr.scatter(rows, fixed.to_series())
    return addr


def build_population(cfg: SimulationConfig) -> Population:
    rng = rng_for(cfg.seed, "population")
    n = cfg.customers

    # --- accounts: B2B companies of several persons, B2C households of one --------------------------
    shape = profile(cfg.profile)
    sizes = _b2b_account_sizes(rng, int(round(n * shape.b2b_share)), shape.b2b_extra_contacts)
    n_b2b_acc, n_b2b = len(sizes), int(sizes.sum())
    n_acc = n_b2b_acc + (n - n_b2b)
    slot_account = np.concatenate([np.repeat(np.arange(n_b2b_acc), sizes), n_b2b_acc + np.arange(n - n_b2b)])
    person_account = slot_account[rng.permutation(n)]
    acc_is_b2b = np.arange(n_acc) < n_b2b_acc

    acc_city = _weighted(rng, [c[2] for c in CITIES], n_acc)
    areas = [c[3] for c in CITIES]
    n_areas = np.array([len(a) for a in areas])
    area_offset = np.concatenate([[0], np.cumsum(n_areas)[:-1]])
    flat_areas = [a for arr in areas for a in arr]
    is_london = np.array([c[0] == "London" for c in CITIES])[acc_city]
    postcode = pl.DataFrame(
        {
            "a": _pick(flat_areas, area_offset[acc_city] + (rng.random(n_acc) * n_areas[acc_city]).astype(np.int64)),
            "d": 1 + (rng.random(n_acc) * np.where(is_london, 20, 30)).astype(np.int64),
            "i": rng.integers(1, 10, n_acc),
            "l1": _pick(POSTCODE_LETTERS, rng.integers(0, len(POSTCODE_LETTERS), n_acc)),
            "l2": _pick(POSTCODE_LETTERS, rng.integers(0, len(POSTCODE_LETTERS), n_acc)),
        }
    ).select(pl.concat_str("a", pl.col("d").cast(pl.String), pl.lit(" "), pl.col("i").cast(pl.String), "l1", "l2"))

    # --- reps: every region gets one before any gets two ------------------------------------------
    weight: dict[str, float] = {}
    for c in CITIES:
        weight[c[1]] = weight.get(c[1], 0.0) + c[2]
    regions = sorted(weight, key=lambda r: (-weight[r], r))
    city_region = np.array([regions.index(c[1]) for c in CITIES])
    n_reps = max(6, math.ceil(n / PERSONS_PER_REP))
    rep_region = np.arange(n_reps) % len(regions)
    rep_effect = behaviour.draw_rep_effects(rng, n_reps)

    # Owner rep: uniform among the reps of the account's region (every region has one once there
    # are as many reps as regions; before that, any rep).
    acc_region = city_region[acc_city]
    reps_in_region = np.bincount(rep_region, minlength=len(regions))
    u = rng.random(n_acc)
    k = (u * np.maximum(reps_in_region[acc_region], 1)).astype(np.int64)
    acc_owner = np.where(reps_in_region[acc_region] > 0, acc_region + k * len(regions), (u * n_reps).astype(np.int64))
    acc_terms = np.where(acc_is_b2b, PAYMENT_TERMS_B2B[rng.integers(0, len(PAYMENT_TERMS_B2B), n_acc)], 0)

    first_names, last_names = [f for f, _ in FIRST_NAMES], [name for name, _ in LAST_NAMES]
    first_w, last_w = [w for _, w in FIRST_NAMES], [w for _, w in LAST_NAMES]

    # --- companies (B2B accounts); B2C accounts are named after their person further down --------
    m = n_b2b_acc
    style = rng.integers(0, 3, m)
    company = (
        pl.DataFrame(
            {
                "account_idx": np.arange(m, dtype=np.int64),
                "style": style,
                "w1": _pick(COMPANY_WORDS, rng.integers(0, len(COMPANY_WORDS), m)),
                "trade": _pick(COMPANY_TRADES, rng.integers(0, len(COMPANY_TRADES), m)),
                "sur1": _pick(last_names, _weighted(rng, last_w, m)),
                "sur2": _pick(last_names, _weighted(rng, last_w, m)),
                "suffix": _pick(COMPANY_SUFFIXES, rng.integers(0, len(COMPANY_SUFFIXES), m)),
                "mailbox": _pick(SHARED_MAILBOXES, rng.integers(0, len(SHARED_MAILBOXES), m)),
            }
        )
        .with_columns(
            base_name=pl.when(pl.col("style") == 0)
            .then(pl.col("w1") + " " + pl.col("trade"))
            .when(pl.col("style") == 1)
            .then(pl.col("sur1") + " " + pl.col("trade"))
            .otherwise(pl.col("sur1") + " & " + pl.col("sur2")),
        )
        .with_columns(
            slug=pl.col("base_name").replace(ACCENT_FOLD).str.to_lowercase().str.replace_all("[^a-z]", ""),
            _suffix=pl.lit(COMPANY_DOMAIN_SUFFIX),
        )
    )
    # Same-named companies get numbered domains (harperlogistics2.example.com).
    slug_rank = company.select(pl.int_range(pl.len()).over("slug")).to_series()
    company = company.with_columns(
        company_domain=pl.col("slug")
        + pl.when(slug_rank > 0).then((slug_rank + 1).cast(pl.String)).otherwise(pl.lit(""))
        + pl.col("_suffix"),
        company_name=pl.col("base_name") + " " + pl.col("suffix"),
    ).select(
        "account_idx",
        "company_domain",
        "company_name",
        shared_mailbox=pl.col("mailbox") + "@" + pl.col("company_domain"),
    )
    accounts = pl.DataFrame(
        {
            "account_idx": np.arange(n_acc, dtype=np.int64),
            "segment": _pick(("B2C", "B2B"), acc_is_b2b.astype(np.int64)),
            "city": _pick([c[0] for c in CITIES], acc_city),
            "region": _pick(regions, acc_region),
            "postcode": postcode.to_series(),
            "owner_rep_idx": acc_owner.astype(np.int64),
            "payment_terms_days": acc_terms.astype(np.int64),
        }
    ).join(company, on="account_idx", how="left", maintain_order="left")

    # --- persons ----------------------------------------------------------------------------------
    is_b2b = acc_is_b2b[person_account]
    landline = rng.random(n) < np.where(is_b2b, B2B_LANDLINE, B2C_LANDLINE)
    b2c_pattern = _weighted(rng, [4, 2, 2, 1, 2, 1], n)  # see _add_emails for the patterns
    b2b_pattern = np.array([0, 2, 6])[_weighted(rng, [5, 3, 2], n)]
    latent = behaviour.draw_latent(rng, cfg, is_b2b, rep_effect[acc_owner[person_account]])
    persons = pl.DataFrame(
        {
            "person_idx": np.arange(n, dtype=np.int64),
            "person_id": np.arange(1, n + 1, dtype=np.int64),
            "account_idx": person_account.astype(np.int64),
            "first_name": _pick(first_names, _weighted(rng, first_w, n)),
            "last_name": _pick(last_names, _weighted(rng, last_w, n)),
            "landline": landline,
            "mobile_second": _pick(MOBILE_SECOND_DIGITS, rng.integers(0, len(MOBILE_SECOND_DIGITS), n)),
            "mobile_eight": _bijection(np.arange(n), 10**8),
            "pattern": np.where(is_b2b, b2b_pattern, b2c_pattern),
            "yy": rng.integers(60, 100, n) % 100,
            "b2c_domain": _pick(PRIMARY_DOMAINS, rng.integers(0, len(PRIMARY_DOMAINS), n)),
            "alt_domain": _pick(ALT_DOMAINS, rng.integers(0, len(ALT_DOMAINS), n)),
            "alt_num": rng.integers(1, 100, n),
            "alt_style": rng.integers(0, 2, n),
            "uses_shared": is_b2b & (rng.random(n) < USES_SHARED_MAILBOX),
            **latent,
        }
    ).join(accounts.drop("company_name"), on="account_idx", how="left", maintain_order="left")

    persons = _add_phones(persons)
    persons = _add_emails(persons)
    persons = persons.with_columns(rep_idx=pl.col("owner_rep_idx"))

    # B2C accounts are households named after their one person.
    acc_names = persons.filter(pl.col("segment") == "B2C").select(
        "account_idx", hh_name=pl.col("first_name") + " " + pl.col("last_name")
    )
    accounts = (
        accounts.join(acc_names, on="account_idx", how="left", maintain_order="left")
        .with_columns(account_name=pl.coalesce("company_name", "hh_name"))
        .drop("hh_name", "company_name")
    )

    reps = pl.DataFrame(
        {
            "rep_idx": np.arange(n_reps, dtype=np.int64),
            "first": _pick(first_names, _weighted(rng, first_w, n_reps)),
            "last": _pick(last_names, _weighted(rng, last_w, n_reps)),
            "region": _pick(regions, rep_region),
            "effect": rep_effect,
            "hired_days_before_start": rng.integers(60, 3_000, n_reps),
        }
    ).with_columns(
        full_name=pl.col("first") + " " + pl.col("last"),
        _l=_ascii_lower("first") + "." + _ascii_lower("last"),
        _d=pl.lit(OWN_COMPANY_DOMAIN),
    )
    reps = reps.with_columns(email=_unique_addresses(reps, "_l", "_d")).drop("first", "last", "_l", "_d")
    return Population(persons=persons, accounts=accounts, reps=reps)


def _add_phones(persons: pl.DataFrame) -> pl.DataFrame:
    city = pl.DataFrame(
        {
            "city": [c[0] for c in CITIES],
            "area_code": [c[4] for c in CITIES],
            "lead": [c[5] for c in CITIES],
            "local_len": [c[6] for c in CITIES],
        }
    )
    df = persons.join(city, on="city", how="left", maintain_order="left").with_columns(
        land_rank=pl.when(pl.col("landline")).then(pl.int_range(pl.len()).over(["city", "landline"]))
    )
    capacity = pl.lit(10).pow(pl.col("local_len") - 1)
    df = df.with_columns(
        landline=pl.col("landline") & (pl.col("land_rank") < capacity),
        land_digits=((pl.col("land_rank").cast(pl.Int64) * 7_919_973 + 104_729) % capacity)
        .cast(pl.String)
        .str.zfill(pl.col("local_len") - 1),
        eight=pl.col("mobile_eight").cast(pl.String).str.zfill(8),
    )
    return (
        df.with_columns(
            phone_area=pl.when(pl.col("landline"))
            .then(pl.col("area_code"))
            .otherwise(pl.lit("07") + pl.col("mobile_second") + pl.col("eight").str.slice(0, 2)),
            phone_local=pl.when(pl.col("landline"))
            .then(pl.col("lead") + pl.col("land_digits"))
            .otherwise(pl.col("eight").str.slice(2)),
        )
        .with_columns(
            phone_e164=pl.lit("+44") + pl.col("phone_area").str.slice(1) + pl.col("phone_local"),
        )
        .drop("area_code", "lead", "local_len", "land_rank", "land_digits", "eight", "mobile_second", "mobile_eight")
    )


def _add_emails(persons: pl.DataFrame) -> pl.DataFrame:
    fn, ln = _ascii_lower("first_name"), _ascii_lower("last_name")
    df = persons.with_columns(_fn=fn, _ln=ln).with_columns(
        _local=pl.when(pl.col("pattern") == 0)
        .then(pl.col("_fn") + "." + pl.col("_ln"))
        .when(pl.col("pattern") == 1)
        .then(pl.col("_fn") + pl.col("_ln"))
        .when(pl.col("pattern") == 2)
        .then(pl.col("_fn").str.slice(0, 1) + pl.col("_ln"))
        .when(pl.col("pattern") == 3)
        .then(pl.col("_fn") + "_" + pl.col("_ln"))
        .when(pl.col("pattern") == 4)
        .then(pl.col("_fn") + "." + pl.col("_ln") + pl.col("yy").cast(pl.String).str.zfill(2))
        .when(pl.col("pattern") == 5)
        .then(pl.col("_ln") + "." + pl.col("_fn"))
        .otherwise(pl.col("_fn").str.slice(0, 1) + "." + pl.col("_ln")),
        _domain=pl.coalesce("company_domain", "b2c_domain"),
        _alt_local=pl.when(pl.col("alt_style") == 0)
        .then(pl.col("_fn") + pl.col("_ln") + pl.col("alt_num").cast(pl.String))
        .otherwise(pl.col("_fn").str.slice(0, 1) + "." + pl.col("_ln") + pl.col("alt_num").cast(pl.String)),
    )
    df = df.with_columns(email=_unique_addresses(df, "_local", "_domain"))
    df = df.with_columns(alt_email=_unique_addresses(df, "_alt_local", "alt_domain"))
    return df.drop(
        "_fn",
        "_ln",
        "_local",
        "_domain",
        "_alt_local",
        "pattern",
        "yy",
        "b2c_domain",
        "alt_domain",
        "alt_num",
        "alt_style",
    )


def format_phone(area: pl.Expr, local: pl.Expr, fmt: int) -> pl.Expr:
    """Five ways people write one UK number; all parse to the same E.164 with region GB."""
    n = local.str.len_chars()
    spaced = (
        pl.when(n == 8)
        .then(local.str.slice(0, 4) + " " + local.str.slice(4))
        .when(n == 7)
        .then(local.str.slice(0, 3) + " " + local.str.slice(3))
        .otherwise(local)
    )
    dashed = (
        pl.when(n == 8)
        .then(local.str.slice(0, 4) + "-" + local.str.slice(4))
        .otherwise(local.str.slice(0, 3) + "-" + local.str.slice(3))
    )
    return [
        area + " " + spaced,  # 020 7946 0018
        pl.lit("+44 ") + area.str.slice(1) + " " + spaced,  # +44 20 7946 0018
        pl.lit("(") + area + ") " + dashed,  # (020) 7946-0018
        pl.lit("+44") + area.str.slice(1) + local,  # +442079460018
        area + local,  # 02079460018
    ][fmt]


PHONE_FORMAT_WEIGHTS = (0.32, 0.25, 0.15, 0.18, 0.10)

_LOCAL = pl.col("email").str.split_exact("@", 1).struct.field("field_0")
_DOMAIN = pl.col("email").str.split_exact("@", 1).struct.field("field_1")
_TYPO_AT = (1 + (pl.col("_u") * (_LOCAL.str.len_chars() - 2).clip(lower_bound=1)).cast(pl.Int64)).cast(pl.Int64)
EMAIL_VARIANTS: dict[str, list[pl.Expr]] = {
    CASE: [
        pl.col("email").str.to_uppercase(),
        _LOCAL.str.to_titlecase() + "@" + _DOMAIN,
        pl.lit(" ") + pl.col("email"),
        pl.col("email") + " ",
        _LOCAL + "@" + _DOMAIN.str.to_uppercase(),
    ],
    TYPO: [
        _LOCAL.str.slice(0, _TYPO_AT) + _LOCAL.str.slice(_TYPO_AT + 1) + "@" + _DOMAIN,  # a letter dropped
        _LOCAL.str.slice(0, _TYPO_AT + 1) + _LOCAL.str.slice(_TYPO_AT) + "@" + _DOMAIN,  # a letter doubled
        _LOCAL.str.slice(0, _TYPO_AT)  # two letters swapped
        + _LOCAL.str.slice(_TYPO_AT + 1, 1)
        + _LOCAL.str.slice(_TYPO_AT, 1)
        + _LOCAL.str.slice(_TYPO_AT + 2)
        + "@"
        + _DOMAIN,
        _LOCAL + "@" + _DOMAIN.str.replace("example", "exmaple", literal=True),  # a domain typo
    ],
    OTHER: [pl.col("alt_email")],
    SHARED: [pl.col("shared_mailbox")],
}


def _patch(series: pl.Series, base: pl.DataFrame, rows: np.ndarray, expr: pl.Expr) -> None:
    """Overwrite ``series`` at ``rows`` with ``expr`` evaluated on those rows only."""
    if len(rows):
        series.scatter(rows, base[rows].select(expr).to_series())


def render_records(
    persons: pl.DataFrame, person_idx: np.ndarray, rng: np.random.Generator, mess: RecordMess
) -> pl.DataFrame:
    """One record per entry of ``person_idx``: the person as a system wrote them down.

    Returns first_name, last_name, email, phone, city, postcode as written, plus ``email_kind``
    (how the email relates to the truth), kept only for bookkeeping, never written to a source.
    Each variant is computed only on the rows that get it, then patched in.
    """
    n = len(person_idx)
    base = persons.select(
        "person_idx",
        "first_name",
        "last_name",
        "email",
        "alt_email",
        "shared_mailbox",
        "uses_shared",
        "phone_area",
        "phone_local",
        "city",
        "postcode",
    )[person_idx]

    u = rng.random(n)
    edges = np.cumsum([mess.email_case, mess.email_typo, mess.email_other, mess.email_missing])
    kind = np.select([u < edges[0], u < edges[1], u < edges[2], u < edges[3]], [CASE, TYPO, OTHER, MISSING], EXACT)
    shared = base["uses_shared"].to_numpy() & (rng.random(n) < mess.email_shared)
    kind = np.where(shared, SHARED, kind)
    sub = rng.integers(0, 5, n)  # which variant of the kind
    base = base.with_columns(_u=pl.Series(rng.random(n)))
    email = base["email"].clone()
    for k, variants in EMAIL_VARIANTS.items():
        for v, expr in enumerate(variants):
            _patch(email, base, np.flatnonzero((kind == k) & (sub % len(variants) == v)), expr)
    email.scatter(np.flatnonzero(kind == MISSING), None)

    name_u = rng.random(n)
    cuts = np.cumsum([mess.nickname, mess.initial, mess.upper_last, mess.lower_all])
    name_kind = np.searchsorted(cuts, name_u, side="right")  # 0 nickname .. 3 lower, 4 as is
    fold = rng.random(n) < mess.accent_fold
    first, last = base["first_name"].clone(), base["last_name"].clone()
    _patch(first, base, np.flatnonzero(fold), pl.col("first_name").replace(ACCENT_FOLD))
    _patch(last, base, np.flatnonzero(fold), pl.col("last_name").replace(ACCENT_FOLD))
    _patch(first, base, np.flatnonzero(name_kind == 0), pl.col("first_name").replace(NICKNAMES))
    _patch(first, base, np.flatnonzero(name_kind == 1), pl.col("first_name").str.slice(0, 1) + ".")
    upper = np.flatnonzero(name_kind == 2)
    _patch(last, base.with_columns(last_name=last), upper, pl.col("last_name").str.to_uppercase())
    lower = np.flatnonzero(name_kind == 3)
    _patch(first, base.with_columns(first_name=first), lower, pl.col("first_name").str.to_lowercase())
    _patch(last, base.with_columns(last_name=last), lower, pl.col("last_name").str.to_lowercase())

    phone_fmt = _weighted(rng, PHONE_FORMAT_WEIGHTS, n)
    phone = pl.Series("phone", [None] * n, dtype=pl.String)
    for f in range(len(PHONE_FORMAT_WEIGHTS)):
        written = format_phone(pl.col("phone_area"), pl.col("phone_local"), f)
        _patch(phone, base, np.flatnonzero(phone_fmt == f), written)
    # An "other address" record must stay linkable: it always carries the phone.
    phone.scatter(np.flatnonzero((rng.random(n) < mess.phone_missing) & (kind != OTHER)), None)

    place = np.where(rng.random(n) < mess.place_variant, rng.integers(0, 3, n), -1)
    city, postcode = base["city"].clone(), base["postcode"].clone()
    _patch(city, base, np.flatnonzero(place == 0), pl.col("city").str.to_uppercase())
    _patch(postcode, base, np.flatnonzero(place == 1), pl.col("postcode").str.replace(" ", "", literal=True))
    _patch(postcode, base, np.flatnonzero(place == 2), pl.col("postcode").str.to_lowercase())
    return pl.DataFrame(
        {
            "person_idx": base["person_idx"],
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": phone,
            "city": city,
            "postcode": postcode,
            "email_kind": pl.Series(kind, dtype=pl.String),
        }
    )
