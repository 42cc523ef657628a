"""Malformed values and lines, and the log that lists every one of them for the ground truth.

Each malformed row is broken in exactly one field (or, for line-level kinds, in its bytes only), so
the quarantine reason ingestion should give is unambiguous. Column-level breakage is done with polars
expressions before writing; line-level breakage (wrong field count, Latin-1 bytes, broken JSON) edits
the few affected lines of an already serialised file without splitting the rest of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

BAD_DATE = "bad_date"
NEGATIVE_QUANTITY = "negative_quantity"
UNKNOWN_PRODUCT = "unknown_product"
MISSING_REQUIRED = "missing_required"
UNKNOWN_VALUE = "unknown_value"
NON_NUMERIC = "non_numeric"
BROKEN_CSV_LINE = "broken_csv_line"
WRONG_ENCODING = "wrong_encoding"
BROKEN_JSON = "broken_json"


@dataclass
class MalformedLog:
    rows: list[pl.DataFrame] = field(default_factory=list)

    def add(self, source: str, entity: str, locations: list[str] | pl.Series, kinds, fields) -> None:
        n = len(locations)
        if n == 0:
            return
        self.rows.append(
            pl.DataFrame(
                {
                    "source": [source] * n,
                    "entity": [entity] * n,
                    "location": pl.Series(locations, dtype=pl.String),
                    "kind": pl.Series(kinds, dtype=pl.String) if not isinstance(kinds, str) else [kinds] * n,
                    "field": pl.Series(fields, dtype=pl.String) if not isinstance(fields, str) else [fields] * n,
                }
            )
        )

    def frame(self) -> pl.DataFrame:
        schema = dict.fromkeys(("source", "entity", "location", "kind", "field"), pl.String)
        if not self.rows:
            return pl.DataFrame(schema=schema)
        return pl.concat(self.rows).sort("source", "entity", "location")


def pick(rng: np.random.Generator, n: int, rate: float, kinds: tuple[str, ...], weights: tuple[float, ...]):
    """Rows to break (sorted) and the kind for each."""
    rows = np.flatnonzero(rng.random(n) < rate)
    w = np.asarray(weights, dtype=float)
    kind = np.asarray(kinds)[rng.choice(len(kinds), len(rows), p=w / w.sum())]
    return rows, kind


def bad_date(ts: pl.Expr) -> pl.Expr:
    """'2024-04-17 10:00:00' -> '2024-04-31 10:00:00': a day that does not exist in that month."""
    month = ts.str.slice(5, 2)
    day = (
        pl.when(month == "02")
        .then(pl.lit("30"))
        .when(month.is_in(["04", "06", "09", "11"]))
        .then(pl.lit("31"))
        .otherwise(pl.lit("32"))
    )
    return ts.str.slice(0, 8) + day + ts.str.slice(10)


def decimal_comma(x: pl.Expr) -> pl.Expr:
    """12.5 -> '12,50': the locale slip that makes a number non-numeric."""
    cents = (x * 100).round(0).cast(pl.Int64).abs()
    return (cents // 100).cast(pl.String) + "," + (cents % 100).cast(pl.String).str.zfill(2)


def money(x: pl.Expr) -> pl.Expr:
    """12.5 -> '12.50' (text, so a malformed value can share the column)."""
    cents = (x * 100).round(0).cast(pl.Int64)
    return (cents // 100).cast(pl.String) + "." + (cents % 100).cast(pl.String).str.zfill(2)


def splice_lines(buf: bytes, edits: dict[int, str]) -> bytes:
    """Apply line-level breakage to a serialised file.

    ``edits`` maps a 1-based physical line number to one of ``drop_field`` / ``extra_field``
    (CSV), ``latin1`` (re-encode the line's text as Latin-1), ``truncate_json``.
    """
    if not edits:
        return buf
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], newlines + 1])
    out: list[bytes] = []
    cursor = 0
    for line_no in sorted(edits):
        s = int(starts[line_no - 1])
        e = int(newlines[line_no - 1])  # every written line ends with \n
        out.append(buf[cursor:s])
        out.append(_break_line(buf[s:e], edits[line_no]))
        cursor = e
    out.append(buf[cursor:])
    return b"".join(out)


def _break_line(line: bytes, op: str) -> bytes:
    if op == "drop_field":
        return line[: line.rfind(b",")]
    if op == "extra_field":
        return line + b",n/a"
    if op == "latin1":
        return line.decode("utf-8").encode("latin-1")
    if op == "truncate_json":
        return line[: max(1, int(len(line) * 0.6))]
    raise ValueError(op)
