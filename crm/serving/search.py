"""Customer search over every identifier of every source record, built once per snapshot.

People search with what they have in front of them: a work email that is on one sales record and
two tickets (not the "winning" email of the golden record), a phone as the sales system writes it
(``07208 570041``), a name with or without its accent, a nickname ("Bill" for William), a source
system's id or an account name. ``serving.customer_search`` holds, per customer, every one of
those from every source record identity resolution joined into the customer, normalised the way
a query is normalised:

- ``haystack``: names (accents folded, lower case, and the formal first name of a nickname),
  emails, account names and ids, each entry between `` | `` separators;
- ``phones``: each phone as international digits (447208570041) and as dialled at home with the
  country's trunk prefix (07208570041), from ``phonenumbers``' metadata of its country;
- ``haystack_no_contacts``: the haystack without its emails (nor any id that is an address), which
  a viewer who may not see contact details searches instead: a hit on an address or a number would
  confirm that it belongs to a customer.

:func:`search_sql` turns what a person typed into one ranked, countable query over that table.
Plain Python + SQL (no Streamlit): the app and the benchmarks call it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import duckdb
import phonenumbers

from crm.identity.normalise import NICKNAMES

SEARCH_TABLE = "serving.customer_search"
SEPARATOR = " | "
MIN_PHONE_DIGITS = 4
_DIGITS = re.compile(r"\D+")
_SPACES = re.compile(r"\s+")


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns"
    ).fetchall():
        found.setdefault(table, set()).add(column)
    return found


def _trunk_prefixes(con: duckdb.DuckDBPyConnection, phones_sql: str) -> list[tuple[str, int, str]]:
    """(first four characters of an E.164 number, country code length, national trunk prefix) for every
    country present. Country codes are prefix-free and at most three digits, so '+' and three digits
    name the country; one example number per prefix is enough for phonenumbers to say which."""
    rows = con.execute(
        f"SELECT left(phone, 4), any_value(phone) FROM ({phones_sql}) WHERE phone LIKE '+%' GROUP BY 1"
    ).fetchall()
    prefixes = []
    for prefix, example in rows:
        try:
            number = phonenumbers.parse(example, None)
        except phonenumbers.NumberParseException:
            continue
        region = phonenumbers.region_code_for_number(number)
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
        trunk = (metadata.national_prefix if metadata else None) or ""
        prefixes.append((prefix, len(str(number.country_code)), trunk))
    return prefixes


def write_customer_search(con: duckdb.DuckDBPyConnection) -> bool:
    """(Re)create serving.customer_search in the snapshot behind ``con``; False when its inputs are absent."""
    tables = _tables(con)
    golden = tables.get("marts.customer_360", set())
    if not {"customer_id", "full_name", "email", "phone"} <= golden:
        return False
    records = tables.get("identity.records", set())
    has_records = {"customer_id", "record_key", "source_key", "email", "phone_e164", "first_name", "last_name"} <= (
        records
    )
    account = "account_name" if "account_name" in golden else "NULL"
    # Every (customer, name, email, phone, account, ids) seen: the golden record, then each source record.
    parts = [
        f"SELECT customer_id, full_name AS name, NULL AS first_name, NULL AS last_name, email, phone, "
        f"{account} AS account, customer_id AS id, NULL AS source_id FROM marts.customer_360"
    ]
    if has_records:
        parts.append(
            "SELECT customer_id, trim(concat_ws(' ', first_name, last_name)), first_name, last_name, email, "
            "phone_e164, NULL, record_key, source_key FROM identity.records WHERE customer_id IS NOT NULL"
        )
    entries = " UNION ALL ".join(parts)
    con.execute("CREATE SCHEMA IF NOT EXISTS serving")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _search_entries AS {entries}")
    con.execute("CREATE OR REPLACE TEMP TABLE _nicknames (nickname VARCHAR, formal VARCHAR)")
    con.executemany("INSERT INTO _nicknames VALUES (?, ?)", sorted(NICKNAMES.items()))
    prefixes = _trunk_prefixes(con, "SELECT DISTINCT phone FROM _search_entries WHERE phone IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE _trunks (prefix VARCHAR, code_length INTEGER, trunk VARCHAR)")
    if prefixes:
        con.executemany("INSERT INTO _trunks VALUES (?, ?, ?)", prefixes)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE {SEARCH_TABLE} AS
        WITH folded AS (
            SELECT e.customer_id,
                   [
                       nullif(strip_accents(lower(trim(e.name))), ''),
                       -- "Bill Smith" is also found as "William Smith" (and a query for either finds both)
                       CASE WHEN n.formal IS NOT NULL
                            THEN trim(n.formal || ' ' || strip_accents(lower(coalesce(e.last_name, '')))) END,
                       nullif(lower(trim(e.email)), ''),
                       nullif(strip_accents(lower(trim(e.account))), ''),
                       nullif(lower(trim(e.id)), ''),
                       nullif(lower(trim(e.source_id)), '')
                   ] AS entries,
                   nullif(regexp_replace(coalesce(e.phone, ''), '[^0-9]', '', 'g'), '') AS international,
                   t.code_length, t.trunk
            FROM _search_entries e
            LEFT JOIN _nicknames n
              ON n.nickname = strip_accents(lower(split_part(trim(e.first_name), ' ', 1)))
            LEFT JOIN _trunks t ON t.prefix = left(e.phone, 4)
        )
        SELECT customer_id,
               '{SEPARATOR}' || array_to_string(entries, '{SEPARATOR}') || '{SEPARATOR}' AS haystack,
               phones,
               '{SEPARATOR}' || array_to_string(list_filter(entries, lambda x: NOT contains(x, '@')), '{SEPARATOR}')
                   || '{SEPARATOR}' AS haystack_no_contacts
        FROM (
            SELECT customer_id,
                   list_distinct(flatten(list(entries))) AS entries,
                   ' ' || array_to_string(
                       list_distinct(
                           list(international)
                           || list(CASE WHEN code_length IS NOT NULL AND length(international) > code_length
                                        THEN trunk || substr(international, code_length + 1) END)
                       ),
                       ' '
                   ) || ' ' AS phones
            FROM folded
            GROUP BY customer_id
        )
        """
    )
    for table in ("_search_entries", "_nicknames", "_trunks"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return True


def fold(text: str) -> str:
    """What a query and the table agree on: lower case, accents removed, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return _SPACES.sub(" ", "".join(c for c in decomposed if not unicodedata.combining(c))).strip()


@dataclass(frozen=True)
class SearchQuery:
    """A typed text as the search understands it."""

    text: str
    folded: str
    tokens: tuple[str, ...]
    digits: str
    phone_like: bool

    @classmethod
    def parse(cls, text: str) -> SearchQuery:
        text = text.strip()
        folded = fold(text)
        digits = _DIGITS.sub("", text)
        # "+44 …" and "0044 …" are international: the table holds international digits without 00.
        if text.startswith("00"):
            digits = digits[2:]
        phone_like = len(digits) >= MIN_PHONE_DIGITS and not any(c.isalpha() for c in text)
        return cls(
            text=text,
            folded=folded,
            tokens=tuple(folded.split(" ")) if folded else (),
            digits=digits,
            phone_like=phone_like,
        )


def _escape_like(text: str) -> str:
    """``%`` and ``_`` typed into the search box are literal characters, not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_sql(query: SearchQuery, *, contacts: bool = True) -> tuple[str, list]:
    """``SELECT customer_id, score, matched, matched_kind`` of every customer matching ``query`` (``matched``:
    the identifier that matched; ``matched_kind``: email, phone, or name, account or id), with its parameters.

    A phone-like query (digits, spaces, '+', '-', brackets) matches phone digits anywhere in a number
    and ids exactly; otherwise every word must be found among the customer's names, emails, accounts
    and ids (a nickname word also as its formal name). Rank: an exact id, email, phone or full name
    before a name that starts with the text, before any other match.

    ``contacts=False`` (a viewer who may not see contact details): emails and phones are not searched,
    so a hit never confirms that an address or a number is a customer's.
    """
    haystack = "haystack" if contacts else "haystack_no_contacts"
    phone_like = query.phone_like and contacts
    if not query.tokens and not phone_like:
        return (
            f"SELECT customer_id, 0 AS score, NULL AS matched, NULL AS matched_kind FROM {SEARCH_TABLE} WHERE false",
            [],
        )
    exact = f"%{SEPARATOR}{_escape_like(query.folded)}{SEPARATOR}%"
    like = f"{haystack} LIKE ? ESCAPE '\\'"
    if phone_like:
        where = f"(contains(phones, ?) OR {like})"
        params: list = [query.digits, exact]
        score = f"CASE WHEN {like} THEN 3 WHEN contains(phones, ?) THEN 2 ELSE 1 END"
        score_params: list = [exact, f" {query.digits} "]
        matched = (
            "coalesce(list_filter(string_split(trim(phones), ' '), lambda x: contains(x, ?))[1], "
            f"list_filter(string_split({haystack}, '{SEPARATOR}'), lambda x: x = ?)[1])"
        )
        matched_params: list = [query.digits, query.folded]
    else:
        clauses = []
        params = []
        for token in query.tokens:
            formal = NICKNAMES.get(token)
            if formal and formal != token:
                clauses.append(f"(contains({haystack}, ?) OR contains({haystack}, ?))")
                params += [token, formal]
            else:
                clauses.append(f"contains({haystack}, ?)")
                params.append(token)
        where = " AND ".join(clauses)
        score = f"CASE WHEN {like} THEN 3 WHEN contains({haystack}, ?) THEN 2 ELSE 1 END"
        score_params = [exact, f"{SEPARATOR}{query.folded}"]
        # The identifier that matched (the first word's), so a person sees why a customer is listed.
        first = query.tokens[0]
        entries = f"string_split({haystack}, '{SEPARATOR}')"
        # A name, account or id before an email: "bailey" shows "amelia bailey", not her address.
        matched = (
            f"coalesce(list_filter({entries}, lambda x: contains(x, ?) AND NOT contains(x, '@'))[1], "
            f"list_filter({entries}, lambda x: contains(x, ?))[1], "
            f"list_filter({entries}, lambda x: contains(x, ?) OR contains(x, ?))[1])"
        )
        matched_params = [query.folded, query.folded, first, NICKNAMES.get(first, first)]
    # What kind of identifier matched: the app masks an email or a phone like any other contact detail.
    kind = (
        "CASE WHEN matched IS NULL THEN NULL WHEN contains(matched, '@') THEN 'email' "
        "WHEN regexp_full_match(matched, '[0-9]+') AND contains(phones, ' ' || matched || ' ') THEN 'phone' "
        "ELSE 'name, account or id' END"
    )
    return (
        f"SELECT customer_id, score, matched, {kind} AS matched_kind FROM ("
        f"SELECT customer_id, phones, {score} AS score, {matched} AS matched FROM {SEARCH_TABLE} WHERE {where})",
        score_params + matched_params + params,
    )
