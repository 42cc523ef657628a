"""The suppression list: salted hashes of erased persons' identifiers, applied to every ingested batch.

`crm erase` removes a person from the warehouse; the sources still hold them, so the next load
would bring them back. Each erasure therefore appends the person's identifiers to
``<data_dir>/security/suppression.jsonl`` as salted SHA-256 hashes (never the values), and
ingestion drops every incoming row that matches one before it lands in raw or quarantine,
counting it as *suppressed* in the ledger (rows read = raw + quarantine + suppressed).

Identifiers, normalised the same way in Python (when erasing) and SQL (when loading):

- ``email``: trimmed, lower-cased, without ``mailto:`` and angle brackets;
- ``phone:<n>``: the last n digits, n the length of the national number the person's E.164 phone
  has (so ``07700 900123``, ``+44 7700 900123`` and ``0044-7700-900123`` all match);
- ``key:<source>``: a source record's key (a contact id, which orders carry as their customer
  reference; a ticket id; an order id, which order lines carry).

The salt is a random key in ``<data_dir>/security/erasure.key`` (or ``CRM_ERASURE_KEY``): without
it the hashes cannot be tested against guesses, and with it lost the list stops matching, so back
it up with the data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

SUPPRESSION_FILE = Path("security") / "suppression.jsonl"
KEY_FILE = Path("security") / "erasure.key"
HASHES_TABLE = "_suppressed_identifiers"
# The batch's suppressed rows: their day, and where they came from as a salted hash, so that
# `crm audit` counts a source row it finds there as suppressed, not as never read, without the
# warehouse naming the erased person's records.
SUPPRESSED_TABLE = "_ingest_suppressed"

# Per source entity: (identifier kind, canonical column holding it). Entities not listed hold no
# person (products, campaigns, reps, opportunities) and are never filtered.
PERSON_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "sales_contacts": (("email", "email"), ("phone", "phone"), ("key:sales_contacts", "contact_id")),
    "sales_orders": (("key:sales_contacts", "customer_ref"), ("key:sales_orders", "order_id")),
    "sales_order_lines": (("key:sales_orders", "order_id"),),
    "marketing_contacts": (("email", "email"), ("phone", "phone")),
    "marketing_events": (("email", "email"),),
    "support_tickets": (
        ("email", "requester_email"),
        ("phone", "requester_phone"),
        ("key:support_tickets", "ticket_id"),
    ),
}
_EMAIL_WRAPPING = "<> \t\r\n"
_EMAIL_TOKEN = r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}"
_PHONE_TOKEN = r"\+?[0-9(][0-9 ().\-]{4,}[0-9]"


@dataclass(frozen=True)
class Identifier:
    kind: str  # email | phone:<n> | key:<source>
    hash: str


def suppression_path(data_dir: Path) -> Path:
    return Path(data_dir) / SUPPRESSION_FILE


def erasure_key(data_dir: Path, *, create: bool = False) -> str | None:
    """The salt (hex): CRM_ERASURE_KEY, else the key file; created (0600) on the first erasure."""
    if os.environ.get("CRM_ERASURE_KEY"):
        return os.environ["CRM_ERASURE_KEY"]
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


def normalise_email(value: str) -> str:
    """What the SQL side computes: see ``_email_sql``."""
    text = re.sub(r"^mailto:", "", str(value).strip(_EMAIL_WRAPPING), flags=re.IGNORECASE)
    return text.strip(_EMAIL_WRAPPING).lower()


def national_number(e164: str) -> str | None:
    """The digits after the country code ('+447700900123' -> '7700900123')."""
    import phonenumbers

    try:
        return str(phonenumbers.parse(e164, None).national_number)
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", e164)
        return digits[-10:] if len(digits) >= 7 else None


def hash_identifier(key: str, kind: str, value: str) -> str:
    return hashlib.sha256(f"{key}|{kind}|{value}".encode()).hexdigest()


def location_hash(key: str, source: str, location: str) -> str:
    """The salted hash of a source row's origin (``_source``, ``_source_location``); see location_hash_sql."""
    return hash_identifier(key, "location", f"{source}|{location}")


def location_hash_sql(key: str) -> str:
    """SQL over a table with ``_source`` and ``_source_location``: the same hash as :func:`location_hash`."""
    salt = key.replace("'", "''")
    return f"sha256('{salt}|location|' || coalesce(_source, '') || '|' || coalesce(_source_location, ''))"


def identifiers_for(
    key: str, *, emails: Iterable[str] = (), national_numbers: Iterable[str] = (), keys: dict[str, Iterable[str]] = None
) -> list[Identifier]:
    found = {Identifier("email", hash_identifier(key, "email", normalise_email(e))) for e in emails if e}
    for number in national_numbers:
        if number:
            kind = f"phone:{len(number)}"
            found.add(Identifier(kind, hash_identifier(key, kind, number)))
    for source, values in (keys or {}).items():
        kind = f"key:{source}"
        found |= {Identifier(kind, hash_identifier(key, kind, str(v).strip())) for v in values if v is not None}
    return sorted(found, key=lambda i: (i.kind, i.hash))


def record_request(data_dir: Path, request: dict, identifiers: list[Identifier]) -> None:
    """Append one erasure request (hashes only) to the list; the file is readable by its owner only."""
    path = suppression_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps({**request, "identifiers": [[i.kind, i.hash] for i in identifiers]}, sort_keys=True) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_identifiers(data_dir: Path) -> list[Identifier]:
    path = suppression_path(data_dir)
    if not path.exists():
        return []
    found = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found |= {Identifier(kind, value) for kind, value in json.loads(line)["identifiers"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a suppression entry ({exc})") from exc
    return sorted(found, key=lambda i: (i.kind, i.hash))


def load_requests(data_dir: Path) -> list[dict]:
    path = suppression_path(data_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- SQL --------------------------------------------------------------------------------------


def _email_sql(expr: str) -> str:
    wrapping = "'<> ' || chr(9) || chr(10) || chr(13)"
    return f"lower(trim(regexp_replace(trim(CAST({expr} AS VARCHAR), {wrapping}), '^mailto:', '', 'i'), {wrapping}))"


def _digits_sql(expr: str) -> str:
    return f"regexp_replace(CAST({expr} AS VARCHAR), '[^0-9]', '', 'g')"


def _hash_sql(kind: str, value_sql: str) -> str:
    return f"sha256(getvariable('crm_erasure_key') || '|{kind}|' || {value_sql})"


def _in_list(kind: str) -> str:
    return f"(SELECT hash FROM {HASHES_TABLE} WHERE kind = '{kind}')"


def load_into(con: duckdb.DuckDBPyConnection, key: str, identifiers: list[Identifier]) -> None:
    """The hashes as a temp table and the salt as a session variable, for the predicates below."""
    con.execute("SET VARIABLE crm_erasure_key = ?", [key])
    con.execute(f"CREATE OR REPLACE TEMP TABLE {HASHES_TABLE} (kind VARCHAR, hash VARCHAR)")
    if identifiers:
        con.executemany(f"INSERT INTO {HASHES_TABLE} VALUES (?, ?)", [(i.kind, i.hash) for i in identifiers])


def _phone_lengths(identifiers: list[Identifier]) -> list[int]:
    return sorted({int(i.kind.split(":")[1]) for i in identifiers if i.kind.startswith("phone:")})


def column_predicate(entity: str, columns: dict[str, str], identifiers: list[Identifier]) -> str | None:
    """SQL true for a row of ``entity`` that belongs to a suppressed person.

    ``columns`` maps each canonical column to the SQL expression that reads it (the column itself
    in raw and in a batch; a JSON field of the original record in quarantine).
    """
    kinds = {i.kind for i in identifiers}
    parts = []
    for kind, column in PERSON_COLUMNS.get(entity, ()):
        if column not in columns:
            continue
        expr = columns[column]
        if kind == "email" and "email" in kinds:
            parts.append(f"{_hash_sql('email', _email_sql(expr))} IN {_in_list('email')}")
        elif kind == "phone":
            for length in _phone_lengths(identifiers):
                digits = _digits_sql(expr)
                parts.append(
                    f"(length({digits}) >= {length} AND "
                    f"{_hash_sql(f'phone:{length}', f'right({digits}, {length})')} IN {_in_list(f'phone:{length}')})"
                )
        elif kind.startswith("key:") and kind in kinds:
            parts.append(f"{_hash_sql(kind, f'trim(CAST({expr} AS VARCHAR))')} IN {_in_list(kind)}")
    return " OR ".join(f"coalesce({p}, false)" for p in parts) if parts else None


def text_predicate(text_expr: str, identifiers: list[Identifier]) -> str | None:
    """SQL true when free text (an original record, an unparseable line) holds a suppressed email or phone."""
    parts = []
    if any(i.kind == "email" for i in identifiers):
        tokens = f"regexp_extract_all(lower({text_expr}), '{_EMAIL_TOKEN}')"
        parts.append(
            f"list_has_any(list_transform({tokens}, lambda t: {_hash_sql('email', 't')}), "
            f"(SELECT coalesce(list(hash), []) FROM {HASHES_TABLE} WHERE kind = 'email'))"
        )
    for length in _phone_lengths(identifiers):
        tokens = f"regexp_extract_all({text_expr}, '{_PHONE_TOKEN}')"
        digits = "regexp_replace(t, '[^0-9]', '', 'g')"
        tail = _hash_sql(f"phone:{length}", f"right({digits}, {length})")
        hashed = f"CASE WHEN length({digits}) >= {length} THEN {tail} END"
        parts.append(
            f"list_has_any(list_transform({tokens}, lambda t: {hashed}), "
            f"(SELECT coalesce(list(hash), []) FROM {HASHES_TABLE} WHERE kind = 'phone:{length}'))"
        )
    return " OR ".join(f"coalesce({p}, false)" for p in parts) if parts else None


def quarantine_predicate(entity: str, identifiers: list[Identifier]) -> str | None:
    """For quarantine.<entity> (and a batch's rejects): the original record's fields, and its text."""
    fields = {
        column: f"CASE WHEN json_valid(_raw_record) THEN json_extract_string(_raw_record, '$.{column}') END"
        for _, column in PERSON_COLUMNS.get(entity, ())
    }
    parts = [
        p for p in (column_predicate(entity, fields, identifiers), text_predicate("_raw_record", identifiers)) if p
    ]
    return " OR ".join(f"({p})" for p in parts) if parts else None


def suppress_batch(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    data_dir: Path,
    batch_table: str,
    rejects_table: str,
    columns: list[str],
    *,
    later_slice: bool = False,
) -> dict[date, int]:
    """Drop the suppressed persons' rows from a batch before it is split into raw and quarantine.

    Returns rows dropped per partition day; their origins stay in the temp table ``_ingest_suppressed``
    for :func:`book_suppressed_rows`. A batch read in slices calls this once per slice: a
    ``later_slice`` adds its origins to the earlier slices' (booked once, with the batch) and returns
    its own counts. Without erasures (the common case) this costs one file check.
    """
    if not later_slice:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {SUPPRESSED_TABLE} (_partition_date DATE, location_hash VARCHAR)")
    identifiers = load_identifiers(data_dir)
    key = erasure_key(data_dir)
    if not identifiers or key is None or entity not in PERSON_COLUMNS:
        return {}
    load_into(con, key, identifiers)
    batch = column_predicate(entity, {c: f'"{c}"' for c in columns}, identifiers)
    rejects = quarantine_predicate(entity, identifiers)
    con.execute("CREATE OR REPLACE TEMP TABLE _suppressed_now (_partition_date DATE, location_hash VARCHAR)")
    for table, predicate in ((batch_table, batch), (rejects_table, rejects)):
        if predicate is None:
            continue
        con.execute(
            f"INSERT INTO _suppressed_now SELECT _partition_date, {location_hash_sql(key)} FROM {table} "
            f"WHERE {predicate}"
        )
        con.execute(f"DELETE FROM {table} WHERE {predicate}")
    con.execute(f"INSERT INTO {SUPPRESSED_TABLE} SELECT * FROM _suppressed_now")
    dropped = dict(con.execute("SELECT _partition_date, count(*) FROM _suppressed_now GROUP BY ALL").fetchall())
    con.execute("DROP TABLE _suppressed_now")
    return dropped


def book_suppressed_rows(con: duckdb.DuckDBPyConnection, entity: str, batch_id: str) -> None:
    """Record the origins of the rows :func:`suppress_batch` dropped (in the batch's transaction)."""
    con.execute(
        f"INSERT INTO ops.suppressed_locations SELECT $entity, location_hash, $batch FROM {SUPPRESSED_TABLE}",
        {"entity": entity, "batch": batch_id},
    )
