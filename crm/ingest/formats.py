"""How text from a source becomes a typed value: dates, timestamps and numbers, by declaration or by shape.

A source declares what only it can know (``date_format``, ``decimal``, ``encoding``, ``delimiter``
in the sources config); everything else is recognised by its shape, but only where the shape is
unambiguous. The SQL built here is shared by the readers (a single file's rows are placed in the
history by their date column) and the row rules (validate.py), so a value is read one way only.

Recognised without a declaration:

* ISO-8601 dates and timestamps, with ``T`` or a space, with or without seconds and fractions,
  with or without a UTC offset (``+05:00`` is converted to UTC, never dropped);
* ``YYYYMMDD`` (eight digits) and ``YYYYMMDDhhmmss`` (fourteen), ``YYYY/MM/DD``;
* ``DD.MM.YYYY`` (the dotted form is day first wherever it is written), with an optional time.

``01/02/2024`` is day-first in most of the world and month-first in the US: nothing in the value
says which, so such a value is quarantined with a reason that says what to declare.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

# A timestamp before this is not a plausible fact about a customer (epoch-zero and 0001-01-01
# placeholders, -infinity); a birth date can be older than any order, so the bound is generous.
PLAUSIBLE_FROM = date(1900, 1, 1)
# A number of this magnitude or more is a placeholder or an overflow (1e308), not an amount.
ABSURD_MAGNITUDE = 1e12
DELIMITER_CANDIDATES = (",", ";", "\t", "|")

_ISO_TZ = "try_cast(try_cast({v} AS TIMESTAMPTZ) AS TIMESTAMP)"
_SHAPES = (
    (r"\d{8}", ["%Y%m%d"]),
    (r"\d{14}", ["%Y%m%d%H%M%S"]),
    (r"\d{1,2}\.\d{1,2}\.\d{4}( \d{1,2}:\d{2}(:\d{2})?)?", ["%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S"]),
)
AMBIGUOUS_DAY_MONTH = r"\d{1,2}/\d{1,2}/\d{2,4}( .*)?"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def plausible_until(today: date | None = None) -> datetime:
    """The first instant that is "after tomorrow" (UTC): a fact cannot have happened later."""
    today = today or datetime.now(UTC).date()
    return datetime.combine(today + timedelta(days=2), datetime.min.time())


def format_for(formats: dict[str, str] | str | None, column: str) -> str | None:
    if isinstance(formats, dict):
        return formats.get(column)
    return formats


def timestamp_sql(value: str, fmt: str | None) -> str:
    """SQL: the TIMESTAMP (UTC, naive) that the text expression ``value`` holds, else NULL."""
    if fmt:
        # A format with %z yields a TIMESTAMPTZ; the cast converts it to UTC (the session's zone).
        return f"CAST(try_strptime({value}, {_lit(fmt)}) AS TIMESTAMP)"
    shapes = " ".join(
        f"WHEN regexp_full_match({value}, {_lit(pattern)}) THEN try_strptime({value}, "
        f"[{', '.join(_lit(f) for f in formats)}])"
        for pattern, formats in _SHAPES
    )
    return f"coalesce({_ISO_TZ.format(v=value)}, CASE {shapes} END)"


def date_sql(value: str, fmt: str | None) -> str:
    return f"CAST({timestamp_sql(value, fmt)} AS DATE)"


def number_sql(value: str, dtype: str, decimal: str) -> str:
    """SQL: the number the text expression ``value`` holds (decimal mark ``.`` or ``,``), else NULL."""
    if decimal != ",":
        return f"try_cast({value} AS {dtype})"
    # "1.234,50" and "1234,5": dots group thousands, the comma is the decimal mark. Anything else
    # (a dot used as the decimal mark in a comma-declared source) is not read rather than misread.
    grouped = r"[+-]?\d{1,3}(\.\d{3})+(,\d*)?"
    plain = r"[+-]?\d+(,\d*)?"
    return (
        f"CASE WHEN regexp_full_match({value}, {_lit(grouped)}) OR regexp_full_match({value}, {_lit(plain)}) "
        f"THEN try_cast(replace(replace({value}, '.', ''), ',', '.') AS {dtype}) END"
    )


def unreadable_date_reason(column: str, shown: str, value: str, fmt: str | None, where: str, dtype: str) -> str:
    """SQL: why the text ``value`` is not a date/timestamp, saying what to change in the config."""
    if fmt:
        return f"{_lit(column + ': ')} || {shown} || {_lit(f' does not match date_format {fmt!r} ({where})')}"
    ambiguous = f" could be day/month or month/day: declare date_format '%d/%m/%Y' or '%m/%d/%Y' ({where})"
    unknown = (
        " (expected ISO-8601 such as 2024-01-31 14:05:00; for another form declare date_format, "
        f"e.g. '%Y%m%d' ({where}))"
    )
    return (
        f"CASE WHEN regexp_full_match({value}, {_lit(AMBIGUOUS_DAY_MONTH)}) "
        f"THEN {_lit(column + ': ')} || {shown} || {_lit(ambiguous)} "
        f"ELSE {_lit(column + ': not a valid ' + dtype.lower() + ' ')} || {shown} || {_lit(unknown)} END"
    )


def detect_delimiter(header_line: str, declared: str | None) -> tuple[str, str | None]:
    """The delimiter to read a file with, and a problem to report (None when all is well).

    Without a declaration the candidate that splits the header into the most fields wins. A
    declared delimiter that leaves the header as one field while another candidate splits it is a
    config error: the message says which delimiter the header looks like.
    """

    def fields(delimiter: str) -> list[str]:
        return next(csv.reader(io.StringIO(header_line), delimiter=delimiter), [])

    counts = {d: len(fields(d)) for d in DELIMITER_CANDIDATES}
    best = max(DELIMITER_CANDIDATES, key=lambda d: (counts[d], d == ","))
    if declared is None:
        return (best if counts[best] > 1 else ","), None
    declared_fields = len(fields(declared))
    if declared_fields <= 1 and counts[best] > 1 and best != declared:
        shown = header_line if len(header_line) <= 80 else header_line[:77] + "..."
        return declared, (
            f"the header is one column {shown!r}: the delimiter looks like {best!r}, not {declared!r}; "
            f"set `delimiter: {best!r}` on the source (or leave `delimiter` out to detect it)"
        )
    return declared, None


def unique_header(names: list[str]) -> tuple[list[str], list[str]]:
    """Header names made unique (a repeated name gets " (2)", " (3)"), and what was repeated."""
    seen: dict[str, int] = {}
    out, repeated = [], []
    for name in names:
        if name in seen:
            seen[name] += 1
            repeated.append(name)
            out.append(f"{name} ({seen[name]})")
        else:
            seen[name] = 1
            out.append(name)
    return out, repeated
