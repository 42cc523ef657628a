"""Normalisation of contact fields for identity resolution and the golden record.

Pure functions (no Dagster, no database): emails lower-cased and trimmed, phones to E.164 with the
``phonenumbers`` library, names and postcodes cleaned, plus the *match keys* (accent-free,
lower-case) that matching compares. dbt's staging models do the SQL-expressible part (trim, case);
what needs a library lives here and runs in the identity asset.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date
from functools import lru_cache

import jellyfish
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


# Values people type when a form insists on one: never evidence that two records are one person.
PLACEHOLDER_EMAIL_LOCAL_PARTS = frozenset(
    {
        "test",
        "testing",
        "none",
        "noemail",
        "no-email",
        "no_email",
        "nomail",
        "na",
        "n.a",
        "n/a",
        "unknown",
        "null",
        "dummy",
        "fake",
        "asdf",
        "xxx",
        "x",
        "a",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
    }
)
PLACEHOLDER_TEXT = frozenset(
    {"n/a", "na", "n.a.", "none", "null", "unknown", "unk", "test", "-", "--", "?", "x", "xx", "xxx", "tbc", "tba"}
)


def is_placeholder_text(value: str | None) -> bool:
    return value is not None and value.strip().lower() in PLACEHOLDER_TEXT


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


def _placeholder_digits(skeleton: str) -> bool:
    """'0000000000', '1111111111', '1234567890': typed to get past a form, shared by strangers."""
    digits = "".join(c for c in skeleton if c.isdigit())
    tail = digits[-9:]
    return len(set(tail)) <= 2 or tail in "01234567890123456789" or tail in "98765432109876543210"


@lru_cache(maxsize=65536)
def _e164_from_skeleton(skeleton: str, region: str) -> str | None:
    if _placeholder_digits(skeleton):
        return None
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
    if text is None or is_placeholder_text(text):
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
    if text is None or is_placeholder_text(text):
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
    if text is None or is_placeholder_text(text):
        return None
    key = _WS.sub(" ", re.sub(r"[^a-z ]", " ", fold_accents(text).lower())).strip()
    return key or None


def phonetic_key(key: str | None) -> str | None:
    """NYSIIS code of a name key ('bruhn' and 'brunn' -> 'BRAN'): a typo that keeps the sound keeps the key."""
    if not key:
        return None
    letters = re.sub(r"[^a-z]", "", key)
    return jellyfish.nysiis(letters) or None if letters else None


_DATE_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T].*)?$")
_DATE_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[ T].*)?$")
_DATE_DIGITS = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
# Birth dates forms fill in by default: shared by strangers, so never evidence.
PLACEHOLDER_BIRTH_DATES = frozenset({"19000101", "19010101", "00000000", "11111111", "99999999"})


def birth_date_key(value: str | None, *, day_first: bool = True) -> str | None:
    """A birth date as 'YYYYMMDD'. ISO ('1985-03-12', '1985/3/12 00:00'), compact ('19850312') and
    day-first ('12/03/1985') forms are read; month-first when ``day_first`` is False or the second
    number cannot be a month ('3/25/1985'). Eight digits that are no valid date ('19851340') are kept as written:
    a typo in a birth date is still evidence. Placeholders (1900-01-01) are dropped."""
    text = clean_text(value)
    if text is None:
        return None
    parts: tuple[str, str, str] | None = None
    if m := _DATE_ISO.match(text) or _DATE_DIGITS.match(text):
        parts = (m.group(1), m.group(2), m.group(3))
    elif m := _DATE_DMY.match(text):
        first, second = m.group(1), m.group(2)
        # the order the company writes dates in, unless the numbers say otherwise (13/02 is day-first)
        month_first = (not day_first and int(first) <= 12) or int(second) > 12
        day, month = (second, first) if month_first else (first, second)
        parts = (m.group(3), month, day)
    if parts is None:
        digits = re.sub(r"\D", "", text)
        return digits if len(digits) == 8 and digits not in PLACEHOLDER_BIRTH_DATES else None
    key = f"{parts[0]}{int(parts[1]):02d}{int(parts[2]):02d}"
    return None if key in PLACEHOLDER_BIRTH_DATES else key


def display_birth_date(key: str | None) -> str | None:
    """'19850312' -> '1985-03-12' when it is a valid date; otherwise the digits as read."""
    if key is None:
        return None
    try:
        return date(int(key[:4]), int(key[4:6]), int(key[6:8])).isoformat()
    except ValueError:
        return key


# Street types as written in full, so 'forbes st' and 'forbes street' compare equal.
STREET_ABBREVIATIONS = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "dr": "drive",
    "ln": "lane",
    "ct": "court",
    "crt": "court",
    "pl": "place",
    "cres": "crescent",
    "cr": "crescent",
    "tce": "terrace",
    "terr": "terrace",
    "hwy": "highway",
    "pde": "parade",
    "blvd": "boulevard",
    "sq": "square",
    "cl": "close",
    "gr": "grove",
    "mt": "mount",
    "cct": "circuit",
    "esp": "esplanade",
}


def address_key(value: str | None) -> str | None:
    """An address line as matching compares it: lower-case, accent-free, punctuation gone, street
    types spelled out ('12 Forbes St.' -> '12 forbes street')."""
    text = clean_text(value)
    if text is None or is_placeholder_text(text):
        return None
    words = re.sub(r"[^a-z0-9 ]", " ", fold_accents(text).lower()).split()
    return " ".join(STREET_ABBREVIATIONS.get(w, w) for w in words) or None


_LEADING_NUMBER = re.compile(r"^(\d+[a-z]?)\b[ ,/-]*(.*)$")


def split_house_number(key: str | None) -> tuple[str | None, str | None]:
    """An address key's leading house number and the rest ('12a forbes street' -> ('12a', 'forbes street'))."""
    if key is None:
        return None, None
    m = _LEADING_NUMBER.match(key)
    if m is None:
        return None, key
    return m.group(1), m.group(2) or None


def street_number_key(value: str | None) -> str | None:
    """The house number's digits and letters ('12a', 'No. 12' -> '12')."""
    text = clean_text(value)
    if text is None:
        return None
    key = re.sub(r"^(no|nr|number)\.?\s*", "", fold_accents(text).lower())
    key = _NON_ALNUM.sub("", key)
    return key or None


def external_id_key(value: object) -> str | None:
    """An external id as compared: upper-case letters and digits; placeholders ('0000', 'N/A') dropped."""
    if value is None:
        return None
    text = clean_text(str(value))
    if text is None or is_placeholder_text(text):
        return None
    key = _NON_ALNUM.sub("", fold_accents(text).lower()).upper()
    if not key or len(set(key)) == 1:
        return None
    return key


def parse_external_ids(value: str | None) -> dict[str, str]:
    """The ``external_ids`` column ('{"loyalty_card": "123"}') as {kind: normalised id}."""
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    out = {}
    for kind, raw in parsed.items():
        key = external_id_key(raw)
        if key is not None and re.fullmatch(r"[a-z][a-z0-9_]{0,39}", str(kind)):
            out[str(kind)] = key
    return out


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


# Domains that exist only to fill a form ('test@test.com').
PLACEHOLDER_EMAIL_DOMAINS = frozenset({"test.com", "none.com", "noemail.com", "nomail.com", "na.com", "invalid"})


def non_role_email(email: str | None) -> str | None:
    """The address, or None for a role mailbox (info@, office@, ...) or a placeholder (test@test.com)
    that many people share."""
    if not email or "@" not in email:
        return None
    local, domain = email.split("@", 1)
    if local in ROLE_EMAIL_LOCAL_PARTS | PLACEHOLDER_EMAIL_LOCAL_PARTS or domain in PLACEHOLDER_EMAIL_DOMAINS:
        return None
    return email


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
        "email_match": pl.when(
            ~local.is_in(list(ROLE_EMAIL_LOCAL_PARTS | PLACEHOLDER_EMAIL_LOCAL_PARTS))
            & ~domain.is_in(list(PLACEHOLDER_EMAIL_DOMAINS))
        ).then(valid),
    }
