"""Normalisation of contact fields for identity resolution and the golden record.

Pure functions (no Dagster, no database): emails lower-cased and trimmed, phones to E.164 with the
``phonenumbers`` library, names and postcodes cleaned, plus the *match keys* (accent-free,
lower-case) that matching compares. dbt's staging models do the SQL-expressible part (trim, case);
what needs a library lives here and runs in the identity asset.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
import polars as pl

DEFAULT_PHONE_REGION = "GB"

_WS = re.compile(r"\s+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_SKELETON = re.compile(r"[^0-9+]")
_NON_ALNUM = re.compile(r"[^0-9a-z]")
_NAME_NOISE = re.compile(r"[^a-z' -]")

# Role accounts shared by many people: an equal address is no proof of one person.
ROLE_EMAIL_LOCAL_PARTS = frozenset(
    {
        "info",
        "sales",
        "admin",
        "office",
        "contact",
        "support",
        "hello",
        "accounts",
        "billing",
        "team",
        "enquiries",
        "noreply",
        "no-reply",
        "mail",
        "orders",
        "service",
        "help",
    }
)


def clean_text(value: str | None) -> str | None:
    """Trim and collapse inner whitespace; empty -> None."""
    if value is None:
        return None
    out = _WS.sub(" ", str(value)).strip()
    return out or None


def normalise_email(value: str | None) -> str | None:
    """Lower-case and trim; None when it is not shaped like an address."""
    text = clean_text(value)
    if text is None:
        return None
    text = text.lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:") :]
    text = text.strip("<>").strip()
    return text if _EMAIL.match(text) else None


def email_local_part(email: str | None) -> str | None:
    """The part before '@' without dots and '+tags' (ann.lee+news -> annlee), for fuzzy matching."""
    if not email or "@" not in email:
        return None
    local = email.split("@", 1)[0].split("+", 1)[0].replace(".", "")
    return local or None


def phone_skeleton(value: str | None) -> str | None:
    """Digits and a leading '+' only: the cache key for phone parsing ('020 7946-0018' -> '02079460018')."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    skel = _PHONE_SKELETON.sub("", text)
    skel = skel[0] + skel[1:].replace("+", "") if skel else skel
    return skel if sum(c.isdigit() for c in skel) >= 6 else None


def phone_skeleton_expr(value: pl.Expr) -> pl.Expr:
    """Vectorised :func:`phone_skeleton`."""
    text = value.str.strip_chars().str.replace(r"^00", "+").str.replace_all(r"[^0-9+]", "")
    text = text.str.slice(0, 1) + text.str.slice(1).str.replace_all("+", "", literal=True)
    return pl.when(text.str.count_matches(r"[0-9]") >= 6).then(text)


@lru_cache(maxsize=65536)
def _e164_from_skeleton(skeleton: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(skeleton, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_phone(value: str | None, region: str = DEFAULT_PHONE_REGION) -> str | None:
    """E.164 ('+442079460018') or None when the text is not a possible phone number.

    A number without a country code is read as a number of ``region``.
    """
    skel = phone_skeleton(value)
    return _e164_from_skeleton(skel, region) if skel else None


def fold_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def display_name(value: str | None) -> str | None:
    """Clean a name for people to read: trimmed, single spaces, each all-lower or all-upper word
    capitalised ('ann  LEE' -> 'Ann Lee'); a mixed-case word is kept as written ('McDonald')."""
    text = clean_text(value)
    if text is None:
        return None

    def fix(word: str) -> str:
        if word.isupper() or word.islower():
            return "-".join(part[:1].upper() + part[1:].lower() for part in word.split("-"))
        return word

    return " ".join(fix(w) for w in text.split(" "))


def name_key(value: str | None) -> str | None:
    """A name as matching compares it: accent-free, lower-case, letters, apostrophes, hyphens, spaces."""
    text = clean_text(value)
    if text is None:
        return None
    key = _WS.sub(" ", _NAME_NOISE.sub("", fold_accents(text).lower())).strip()
    return key or None


def split_full_name(value: str | None) -> tuple[str | None, str | None]:
    """'Ann Lee' -> ('Ann', 'Lee'); 'Lee, Ann' -> ('Ann', 'Lee'); one word -> (None, word)."""
    text = clean_text(value)
    if text is None:
        return None, None
    if "," in text:
        last, _, first = text.partition(",")
        return clean_text(first), clean_text(last)
    parts = text.split(" ")
    if len(parts) == 1:
        return None, parts[0]
    return " ".join(parts[:-1]), parts[-1]


def postcode_key(value: str | None) -> str | None:
    """Upper-case without spaces or punctuation ('sw1a 1aa' -> 'SW1A1AA')."""
    text = clean_text(value)
    if text is None:
        return None
    key = _NON_ALNUM.sub("", fold_accents(text).lower()).upper()
    return key or None


def display_postcode(value: str | None) -> str | None:
    """UK-style display form when it looks like one ('sw1a1aa' -> 'SW1A 1AA'); otherwise upper-case."""
    key = postcode_key(value)
    if key is None:
        return None
    if 5 <= len(key) <= 7 and key[-3].isdigit() and key[-2:].isalpha():
        return f"{key[:-3]} {key[-3:]}"
    return clean_text(value).upper() if value else None


def city_key(value: str | None) -> str | None:
    text = clean_text(value)
    if text is None:
        return None
    key = _WS.sub(" ", re.sub(r"[^a-z ]", " ", fold_accents(text).lower())).strip()
    return key or None


def phones_to_e164(values: pl.Series, region: str = DEFAULT_PHONE_REGION) -> pl.Series:
    """Vectorised :func:`normalise_phone`: parses each distinct digit skeleton once."""
    skeletons = pl.DataFrame({"p": values}).select(skel=phone_skeleton_expr(pl.col("p")))["skel"]
    uniques = skeletons.drop_nulls().unique()
    lookup = pl.DataFrame(
        {"skel": uniques, "e164": [_e164_from_skeleton(s, region) for s in uniques.to_list()]},
        schema={"skel": pl.Utf8, "e164": pl.Utf8},
    )
    return (
        pl.DataFrame({"skel": skeletons})
        .join(lookup, on="skel", how="left", maintain_order="left")
        .get_column("e164")
        .alias(values.name)
    )


# Common English nicknames -> the formal first name (generic reference data, lower-case keys).
NICKNAMES: dict[str, str] = {
    "abby": "abigail",
    "alex": "alexander",
    "andy": "andrew",
    "ben": "benjamin",
    "beth": "elizabeth",
    "becky": "rebecca",
    "bill": "william",
    "billy": "william",
    "bob": "robert",
    "bobby": "robert",
    "charlie": "charles",
    "chris": "christopher",
    "dan": "daniel",
    "danny": "daniel",
    "dave": "david",
    "debbie": "deborah",
    "ed": "edward",
    "eddie": "edward",
    "fred": "frederick",
    "greg": "gregory",
    "jim": "james",
    "jimmy": "james",
    "jamie": "james",
    "jen": "jennifer",
    "jenny": "jennifer",
    "jess": "jessica",
    "joe": "joseph",
    "jon": "jonathan",
    "josh": "joshua",
    "kate": "katherine",
    "katie": "katherine",
    "kathy": "katherine",
    "liz": "elizabeth",
    "lizzie": "elizabeth",
    "matt": "matthew",
    "mike": "michael",
    "mick": "michael",
    "nat": "natalie",
    "nick": "nicholas",
    "ollie": "oliver",
    "pat": "patricia",
    "pete": "peter",
    "rich": "richard",
    "rick": "richard",
    "rob": "robert",
    "sam": "samuel",
    "steve": "stephen",
    "sue": "susan",
    "ted": "edward",
    "tim": "timothy",
    "tom": "thomas",
    "tommy": "thomas",
    "tony": "anthony",
    "vicky": "victoria",
    "will": "william",
    "zach": "zachary",
    "mandy": "amanda",
    "maggie": "margaret",
    "meg": "margaret",
    "sophie": "sophia",
    "harry": "harry",
}


def first_name_canonical(key: str | None) -> str | None:
    """A first-name key with a nickname replaced by the formal name ('bill' -> 'william')."""
    if key is None:
        return None
    first = key.split(" ")[0].rstrip(".")
    return NICKNAMES.get(first, first) or None


def email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1] or None


def email_local_letters(email: str | None) -> str | None:
    """Letters of the local part only ('j.ellis26' -> 'jellis'): survives dots, digits, underscores."""
    if not email or "@" not in email:
        return None
    letters = re.sub(r"[^a-z]", "", email.split("@", 1)[0].split("+", 1)[0])
    return letters or None


def email_signature(email: str | None) -> str | None:
    """The non-letters of an address in order ('peter.shaw69@example.org' -> '.69@.'); namesakes'
    addresses differ here, a typo does not."""
    if not email:
        return None
    return re.sub(r"[a-z]", "", email)


def non_role_email(email: str | None) -> str | None:
    """The address, or None for a role mailbox (info@, office@, ...) that many people share."""
    if not email or "@" not in email:
        return None
    return None if email.split("@", 1)[0] in ROLE_EMAIL_LOCAL_PARTS else email


def email_features(email: pl.Expr) -> dict[str, pl.Expr]:
    """Vectorised versions of the email helpers above, for millions of records (same results):
    normalised email, local part without dots/tags, domain, letters of the local part, signature,
    and the address unless it is a role mailbox."""
    text = email.str.strip_chars().str.to_lowercase().str.strip_prefix("mailto:").str.strip_chars("<> \t")
    valid = pl.when(text.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")).then(text)
    local = valid.str.split("@").list.first()
    local_untagged = local.str.split("+").list.first()
    domain = valid.str.split("@").list.last()
    return {
        "email": valid,
        "email_local": pl.when(local_untagged.str.replace_all(".", "", literal=True) != "").then(
            local_untagged.str.replace_all(".", "", literal=True)
        ),
        "email_domain": pl.when(domain != "").then(domain),
        "email_local_letters": pl.when(local_untagged.str.replace_all("[^a-z]", "") != "").then(
            local_untagged.str.replace_all("[^a-z]", "")
        ),
        "email_signature": valid.str.replace_all("[a-z]", ""),
        "email_match": pl.when(~local.is_in(list(ROLE_EMAIL_LOCAL_PARTS))).then(valid),
    }
