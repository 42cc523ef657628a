"""Customer segments: a named list of conditions on customer_360 and score columns.

The app builds and saves them; the nightly run re-exports every saved one. Both use this module,
so a segment counts the same rows wherever it is evaluated. Conditions reach SQL only as bound
parameters; column names come from an allow-list read off the snapshot's own tables, so a
definition can never inject SQL. Saved segments are JSON files outside the warehouse: a rebuild
never loses them.

Plain Python (no Dagster, no Streamlit).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Operator = Literal["in", "not_in", "between", "=", ">=", "<=", "is_true", "is_false", "is_null", "not_null"]
Channel = Literal["email", "sms"]

# Who may be contacted on a channel: consent given, not withdrawn, and an address to send to.
CHANNEL_CONSENT_SQL = {
    "email": "coalesce(email_consent, false) AND NOT coalesce(is_unsubscribed, false) AND email IS NOT NULL",
    "sms": "coalesce(sms_consent, false) AND phone IS NOT NULL",
}
DEFAULT_EXPORT_COLUMNS = (
    "customer_id",
    "full_name",
    "email",
    "phone",
    "city",
    "segment",
    "rfm_segment",
    "owner_rep_name",
    "email_consent",
    "sms_consent",
    "orders_lifetime",
    "revenue_lifetime",
    "days_since_last_order",
    "churn_band",
    "churn_probability",
    "clv_12m",
    "loyalty_tier",
    "next_action",
)
PII_COLUMNS = ("email", "phone")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")


class SegmentError(ValueError):
    """A segment definition cannot be used; the message names the segment, file or column."""


class Condition(BaseModel):
    """One filter, stored as the user meant it: a bound left open is absent (``>=`` or ``<=`` instead
    of a ``between`` with today's maximum), so customers above today's values still match tomorrow.

    ``include_missing`` keeps the customers who have no value in the column (no score yet, never
    ordered): a comparison alone would silently drop them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    op: Operator
    value: Any = None
    include_missing: bool = False


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    conditions: list[Condition] = Field(default_factory=list)
    # A marketing export for a channel leaves out everyone without consent for it.
    channel: Channel | None = None
    columns: list[str] | None = None
    description: str = ""
    # Whether exports carry emails and phones in full (True) or masked (False). A channel export asks
    # for the choice explicitly; None is a segment saved before the choice existed (exported in full,
    # as it was then). The manifest of every export records what was done.
    contact_details: bool | None = None

    def file_stem(self) -> str:
        """The file name: lower case, every run of separators one '_' ("VIP list" and "vip_list" are one
        file, so :func:`save_segment` refuses the second instead of silently overwriting the first)."""
        if not _NAME.match(self.name):
            raise SegmentError(f"segment name {self.name!r}: use letters, digits, spaces, '_', '-' or '.' (max 80)")
        return re.sub(r"[^a-z0-9]+", "_", self.name.strip().lower()).strip("_") or "segment"


def universe_sql(con: duckdb.DuckDBPyConnection) -> str:
    """Customer 360, plus score and RFM columns it does not carry itself, one row per customer.

    Built from information_schema (never from user input): the scores may be absent from an
    older snapshot, and customer_360 may already carry some score columns.
    """
    columns = _table_columns(con)
    if "marts.customer_360" not in columns:
        raise SegmentError("the snapshot has no marts.customer_360")
    own = columns["marts.customer_360"]
    select = ["c.*"]
    joins = []
    if "marts.customer_scores" in columns:
        extra = [c for c in columns["marts.customer_scores"] if c not in own]
        select += [f's."{c}"' for c in extra]
        own = own + extra
        joins.append("LEFT JOIN marts.customer_scores s ON s.customer_id = c.customer_id")
    if "marts.customer_rfm" in columns:
        select += ["r.segment AS rfm_segment", "r.rfm_cell", "r.r_score", "r.f_score", "r.m_score"]
        joins.append("LEFT JOIN marts.customer_rfm r ON r.customer_id = c.customer_id")
    return f"SELECT {', '.join(select)} FROM marts.customer_360 c {' '.join(joins)}"


def _table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'marts' AND table_name IN ('customer_360', 'customer_scores', 'customer_rfm') "
        "ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


def universe_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every filterable column and its DuckDB type: the allow-list."""
    rows = con.execute(f"DESCRIBE {universe_sql(con)}").fetchall()
    return {row[0]: row[1] for row in rows}


def _quoted(column: str, allowed: dict[str, str], where: str) -> str:
    if column not in allowed:
        raise SegmentError(f"{where}: unknown column {column!r}; filterable columns are {sorted(allowed)}")
    return '"' + column.replace('"', '""') + '"'


_NUMBER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER")
_NUMBER_TYPES += ("UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")


def _typed_value(value: Any, duckdb_type: str, where: str, column: str) -> Any:
    """A filter value checked against its column's type, so a wrong one gets a plain message, not a
    database error: numbers for number columns, ISO dates for date columns."""
    upper = duckdb_type.upper()
    try:
        if upper.startswith(_NUMBER_TYPES):
            if isinstance(value, bool) or value is None:
                raise ValueError
            return float(value) if not isinstance(value, int) else value
        if upper.startswith(("DATE", "TIMESTAMP")) and isinstance(value, str):
            return datetime.fromisoformat(value) if upper.startswith("TIMESTAMP") else date.fromisoformat(value[:10])
    except (TypeError, ValueError):
        held, kind = ("numbers", "a number") if upper.startswith(_NUMBER_TYPES) else ("dates", "a date (YYYY-MM-DD)")
        raise SegmentError(f"{where}: {column!r} holds {held}; {value!r} is not {kind}") from None
    return value


def _typed_values(op: str, value: Any, ctype: str, where: str, column: str) -> Any:
    if op in ("in", "not_in", "between") and isinstance(value, list | tuple):
        return [_typed_value(v, ctype, where, column) for v in value]
    if op in ("=", ">=", "<=") and value is not None:
        return _typed_value(value, ctype, where, column)
    return value


def where_clause(definition: SegmentDefinition, allowed: dict[str, str]) -> tuple[str, list[Any]]:
    """The segment's conditions as SQL with ``?`` placeholders and their values, in order."""
    parts, params = [], []
    for index, condition in enumerate(definition.conditions):
        where = f"segment {definition.name!r}, condition {index + 1}"
        column = _quoted(condition.column, allowed, where)
        op, value = condition.op, condition.value
        value = _typed_values(op, value, allowed[condition.column], where, condition.column)
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise SegmentError(f"{where}: {op} needs a non-empty list of values for {condition.column!r}")
            parts.append(f"{'NOT ' if op == 'not_in' else ''}list_contains(?, {column})")
            params.append(value)
        elif op == "between":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise SegmentError(f"{where}: between needs [low, high] for {condition.column!r}")
            parts.append(f"{column} BETWEEN ? AND ?")
            params += list(value)
        elif op in ("=", ">=", "<="):
            if value is None:
                raise SegmentError(f"{where}: {op} needs a value for {condition.column!r}")
            parts.append(f"{column} {op} ?")
            params.append(value)
        else:
            parts.append(
                {
                    "is_true": f"coalesce({column}, false)",
                    "is_false": f"NOT coalesce({column}, false)",
                    "is_null": f"{column} IS NULL",
                    "not_null": f"{column} IS NOT NULL",
                }[op]
            )
        if condition.include_missing and op not in ("is_null", "not_null"):
            parts[-1] = f"{parts[-1]} OR {column} IS NULL"
    return (" AND ".join(f"({p})" for p in parts) or "true"), params


def _export_columns(definition: SegmentDefinition, allowed: dict[str, str]) -> list[str]:
    if definition.columns:
        return [_quoted(c, allowed, f"segment {definition.name!r}, export columns") for c in definition.columns]
    return [_quoted(c, allowed, "") for c in DEFAULT_EXPORT_COLUMNS if c in allowed]


@dataclass(frozen=True)
class SegmentResult:
    rows: pa.Table
    matched: int
    excluded_without_consent: int


def count_segment(
    con: duckdb.DuckDBPyConnection, definition: SegmentDefinition, allowed: dict[str, str] | None = None
) -> tuple[int, int]:
    """(customers matching the conditions, of those how many the channel's consent leaves out)."""
    allowed = allowed or universe_columns(con)
    where, params = where_clause(definition, allowed)
    consent = CHANNEL_CONSENT_SQL[definition.channel] if definition.channel else "true"
    matched, sendable = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {consent}) FROM ({universe_sql(con)}) WHERE {where}", params
    ).fetchall()[0]
    return matched, matched - sendable


def evaluate_segment(
    con: duckdb.DuckDBPyConnection,
    definition: SegmentDefinition,
    *,
    limit: int | None = None,
    allowed: dict[str, str] | None = None,
) -> SegmentResult:
    """The segment's rows (consent applied for a channel), ordered by customer id."""
    allowed = allowed or universe_columns(con)
    where, params = where_clause(definition, allowed)
    if definition.channel:
        where = f"{where} AND ({CHANNEL_CONSENT_SQL[definition.channel]})"
    columns = ", ".join(_export_columns(definition, allowed))
    sql = f"SELECT {columns} FROM ({universe_sql(con)}) WHERE {where} ORDER BY customer_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = con.sql(sql, params=params).to_arrow_table()
    matched, excluded = count_segment(con, definition, allowed)
    return SegmentResult(rows=rows, matched=matched, excluded_without_consent=excluded)


def mask_pii(table: pa.Table) -> pa.Table:
    """Emails as j***@example.com, phones as ******1234: enough to recognise, not to contact."""
    import pyarrow.compute as pc

    for name in PII_COLUMNS:
        if name not in table.column_names:
            continue
        column = table[name].cast(pa.string())
        if name == "email":
            masked = pc.replace_substring_regex(column, r"^(.)[^@]*@", r"\1***@")
        else:
            masked = pc.replace_substring_regex(column, r"^.*(.{4})$", r"******\1")
        table = table.set_column(table.column_names.index(name), name, masked)
    return table


# OWASP CSV injection: a cell a spreadsheet would read as a formula. '+' and '-' start formulas
# too, but also phone numbers (+44 7700 900123) and negative amounts: those stay as they are.
_FORMULA_START = r"^[=@\t\r]|^[+\-](?:[^0-9 ().+\-]|.*[^0-9 ().+\-])"


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """Every text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``@SUM(...)``,
    ``+cmd|...``) gets a leading apostrophe, so it opens as the text it is (OWASP's advice for CSV
    and Excel exports). Numbers, dates and plain text are unchanged."""
    import polars as pl

    frame = pl.from_arrow(table) if isinstance(table, pa.Table) else table
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text:
        return table
    frame = frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text
    )
    return frame.to_arrow()


def to_csv_bytes(table: pa.Table) -> bytes:
    """CSV, safe to open in a spreadsheet (see :func:`neutralise_formulas`)."""
    sink = io.BytesIO()
    pa_csv.write_csv(neutralise_formulas(table), sink)
    return sink.getvalue()


def to_parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'styles" Target="styles.xml"/></Relationships>'
    ),
    "xl/styles.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill>'
        '</fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
    ),
}
_XML_INVALID = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _xlsx_cells(frame, row_number):
    """One XML fragment per cell (empty for a null), built column-wise by polars, not cell by cell."""
    import polars as pl

    cells = []
    for index, (name, dtype) in enumerate(frame.schema.items()):
        column = pl.col(name)
        reference = pl.concat_str([pl.lit(f'<c r="{_column_letters(index)}'), row_number, pl.lit('"')])
        if dtype.is_numeric():
            finite = column.cast(pl.Float64).is_finite()
            cell = pl.when(finite).then(
                pl.concat_str([reference, pl.lit("><v>"), column.cast(pl.String), pl.lit("</v></c>")])
            )
        elif dtype == pl.Boolean:
            cell = pl.concat_str(
                [reference, pl.lit(' t="b"><v>'), column.cast(pl.Int8).cast(pl.String), pl.lit("</v></c>")]
            )
        else:
            text = (
                column.cast(pl.String)
                .str.replace_all(_XML_INVALID, "")
                .str.replace_all("&", "&amp;", literal=True)
                .str.replace_all("<", "&lt;", literal=True)
                .str.replace_all(">", "&gt;", literal=True)
            )
            cell = pl.concat_str(
                [reference, pl.lit(' t="inlineStr"><is><t xml:space="preserve">'), text, pl.lit("</t></is></c>")]
            )
        cells.append(cell.fill_null(pl.lit("")))
    return cells


def to_excel_bytes(table: pa.Table, sheet: str = "segment") -> bytes:
    """A one-sheet .xlsx: a header row, then the rows (numbers as numbers, text and dates as text).

    Written as SpreadsheetML directly because a cell-by-cell writer (xlsxwriter) needs ~10 s for
    a 100k-row segment; building each row's XML with polars takes well under a second. The tests
    read the result back with a real spreadsheet reader (calamine).
    """
    import zipfile
    from xml.sax.saxutils import escape, quoteattr

    import polars as pl

    frame = pl.from_arrow(neutralise_formulas(table))
    header = (
        '<row r="1">'
        + "".join(
            f'<c r="{_column_letters(i)}1" t="inlineStr"><is><t>{escape(name)}</t></is></c>'
            for i, name in enumerate(frame.columns)
        )
        + "</row>"
    )
    row_number = pl.int_range(2, pl.len() + 2).cast(pl.String)
    rows = frame.select(
        pl.concat_str(
            [pl.lit('<row r="'), row_number, pl.lit('">'), *_xlsx_cells(frame, row_number), pl.lit("</row>")]
        ).alias("xml")
    )
    sheet_xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        + header
        + rows["xml"].str.join("").item()
        + "</sheetData></worksheet>"
    )
    workbook_xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name={quoteattr(sheet[:31])} sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as book:
        for name, text in {
            **_XLSX_PARTS,
            "xl/workbook.xml": workbook_xml,
            "xl/worksheets/sheet1.xml": sheet_xml,
        }.items():
            book.writestr(name, text)
    return sink.getvalue()


# --- saved segments (JSON files under <data_dir>/segments) -------------------------------------


def segments_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "segments"


def save_segment(data_dir: Path, definition: SegmentDefinition, *, replace: bool = False) -> Path:
    """Save (or with ``replace`` update) a segment. Two names that differ only in case or separators
    share a file: the second is refused rather than silently overwriting the first."""
    directory = segments_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{definition.file_stem()}.json"
    if target.exists():
        try:
            existing = SegmentDefinition.model_validate_json(target.read_text(encoding="utf-8")).name
        except ValidationError:
            existing = None
        if existing is not None and existing != definition.name:
            raise SegmentError(
                f"a saved segment named {existing!r} already uses the file {target.name}: choose another name"
            )
        if not replace:
            raise SegmentError(f"a segment named {definition.name!r} is saved already: confirm to replace it")
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(definition.model_dump_json(indent=2), encoding="utf-8")
    os.replace(temporary, target)
    return target


def load_segments(data_dir: Path, problems: list[str] | None = None) -> list[SegmentDefinition]:
    """Every saved segment. A file that is not a segment definition is skipped and described in
    ``problems`` (when given): one broken file never hides the others."""
    found = []
    for path in sorted(segments_dir(data_dir).glob("*.json")):
        try:
            found.append(SegmentDefinition.model_validate_json(path.read_text(encoding="utf-8")))
        except (ValidationError, OSError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if problems is not None:
                problems.append(f"{path.name}: not a segment definition ({first}); skipped")
    return found


def exports_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "exports"


def _json_default(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_private_bytes(path: Path, payload: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(payload)


def export_segment_files(
    con: duckdb.DuckDBPyConnection, definition: SegmentDefinition, data_dir: Path, snapshot_id: str
) -> dict[str, Any]:
    """Write <name>.csv and <name>.parquet under exports/ with a manifest next to them.

    Files are written to temporary names and moved into place, so a reader never sees a
    half-written export; the manifest is written last and names the checksum of each file.
    """
    result = evaluate_segment(con, definition)
    rows = result.rows if definition.contact_details is not False else mask_pii(result.rows)
    directory = exports_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)  # exports hold contact details: the service's user only
    stem = definition.file_stem()
    files = {}
    for suffix, payload in ((".csv", to_csv_bytes(rows)), (".parquet", to_parquet_bytes(rows))):
        target = directory / f"{stem}{suffix}"
        temporary = directory / f".{stem}{suffix}.tmp"
        _write_private_bytes(temporary, payload)
        os.replace(temporary, target)
        files[target.name] = {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    manifest = export_manifest(
        definition, result, snapshot_id=snapshot_id, contact_details=definition.contact_details is not False
    )
    manifest["files"] = files
    _write_json(directory / f"{stem}.manifest.json", manifest)
    return manifest


def export_manifest(
    definition: SegmentDefinition, result: SegmentResult, *, snapshot_id: str, contact_details: bool
) -> dict[str, Any]:
    """What an export holds and why: the definition, the rows, who consent left out, and whether
    emails and phones are in full or masked."""
    return {
        "segment": definition.name,
        "definition": definition.model_dump(),
        "snapshot_id": snapshot_id,
        "row_count": result.rows.num_rows,
        "matched_before_consent": result.matched,
        "excluded_without_consent": result.excluded_without_consent,
        "channel": definition.channel,
        "contact_details": "included" if contact_details else "masked",
        "exported_at": datetime.now().astimezone().isoformat(),
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """A manifest, readable by the service's user only, moved into place whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    _write_private_bytes(temporary, json.dumps(payload, indent=2, default=_json_default).encode("utf-8"))
    os.replace(temporary, path)


def downloads_dir(data_dir: Path) -> Path:
    return exports_dir(data_dir) / "downloads"


def record_download(
    data_dir: Path,
    definition: SegmentDefinition,
    result: SegmentResult,
    payload: bytes,
    *,
    file_name: str,
    snapshot_id: str,
    contact_details: bool,
) -> dict[str, Any]:
    """The manifest of a file downloaded from the dashboard, next to the nightly exports' manifests
    (``exports/downloads/``): the file itself goes to the user's browser, its record stays here."""
    manifest = export_manifest(definition, result, snapshot_id=snapshot_id, contact_details=contact_details)
    manifest["files"] = {file_name: {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}}
    directory = downloads_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
    _write_json(directory / f"{Path(file_name).stem}-{stamp}.manifest.json", manifest)
    return manifest


def export_saved_segments(data_dir: Path) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Re-export every saved segment from the current snapshot: (snapshot id, manifests, failures).

    One broken definition must not stop the others from being refreshed: its failure is listed.
    """
    from crm.serving.snapshots import SnapshotError, current_snapshot

    current = current_snapshot(data_dir)
    if current is None:
        raise SnapshotError("no published snapshot to export segments from")
    manifests, failures = [], []
    with duckdb.connect(str(current.path), read_only=True) as con:
        for definition in load_segments(data_dir, failures):
            try:
                manifests.append(export_segment_files(con, definition, data_dir, current.snapshot_id))
            except (ValueError, duckdb.Error) as exc:
                failures.append(f"{definition.name}: {exc}")
    return current.snapshot_id, manifests, failures
