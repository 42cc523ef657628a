"""A company's sources without their last day(s), and that day appended later: the nightly run's input.

The generator is deterministic per seed (byte-identical sources), so "one more day" is exact
without simulating it twice: generate the whole period once into a scratch folder (``full``),
:func:`hold_back` the days from ``first_day`` on into the working copy (``out``), build it, then
:func:`append_days` moves those days in, leaving ``out`` equal to ``full`` byte for byte.

What a held-back day is, per source kind (docs/sources.md, "How a build reads"):

* sales database (SQLite): rows created on or after ``first_day`` are removed; rows created
  before but updated on or after it keep their (final) values with ``updated_at`` set back to
  ``created_at`` (the database keeps no earlier version; this keeps every foreign key whole).
  Appending puts the real rows back, so they carry ``updated_at`` on the new day;
* marketing drops: the files named with a held-back day (``events_2025-12-30.csv``, ...) are absent;
* support export: the pages exported on a held-back day are absent and the page before them says
  ``end_of_stream: true`` (its ``after_cursor`` already names where the next page is written);
  appending writes the new pages and restores that page's header, so the chain walks on unbroken.

Pure Python (sqlite3, files); no project code.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from simulator.build import SALES_DB
from simulator.support import EXPORT_DIR


@dataclass
class DaysMoved:
    """What a hold-back removed (or an append brought back)."""

    sql_rows: dict[str, int] = field(default_factory=dict)  # table -> rows new on the days
    sql_updated: dict[str, int] = field(default_factory=dict)  # table -> rows updated on the days
    files: list[str] = field(default_factory=list)  # relative paths of drop files
    pages: list[str] = field(default_factory=list)  # relative paths of export pages


def hold_back(full: Path, out: Path, first_day: date) -> DaysMoved:
    """Copy the sources in ``full`` to ``out`` (replacing it) without the days from ``first_day`` on."""
    full, out = Path(full), Path(out)
    if out.exists():
        shutil.rmtree(out)
    # Drop files and pages are never written to by a build: hard links keep the copy cheap at scale.
    shutil.copytree(full, out, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("*.sqlite*"))
    moved = DaysMoved()
    db = full / SALES_DB
    if db.exists():
        shutil.copy2(db, out / SALES_DB)
        moved.sql_rows, moved.sql_updated = _sql_hold_back(out / SALES_DB, first_day)
    for path in _dated_files(out, first_day):
        path.unlink()
        moved.files.append(path.relative_to(out).as_posix())
    pages = _pages_from(out, first_day)
    for path in pages:
        path.unlink()
        moved.pages.append(path.relative_to(out).as_posix())
    if pages:
        last = _last_page(out)
        if last is not None:
            _set_end_of_stream(last, True)
    return moved


def append_days(full: Path, out: Path, first_day: date) -> DaysMoved:
    """Bring the days from ``first_day`` on from ``full`` into ``out`` (held back by :func:`hold_back`)."""
    full, out = Path(full), Path(out)
    moved = DaysMoved()
    if (full / SALES_DB).exists():
        moved.sql_rows, moved.sql_updated = _sql_append(full / SALES_DB, out / SALES_DB, first_day)
    for path in _dated_files(full, first_day):
        target = out / path.relative_to(full)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        moved.files.append(path.relative_to(full).as_posix())
    pages = _pages_from(full, first_day)
    if pages:
        # The page before the new ones said end_of_stream: restore the export's own header first.
        last = _last_page(out)
        if last is not None:
            _replace(full / last.relative_to(out), last)
        for path in pages:
            _replace(path, out / path.relative_to(full))
            moved.pages.append(path.relative_to(full).as_posix())
    return moved


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _replace(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` through a new file (``dst`` may be a hard link into ``full``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    tmp.replace(dst)


def _tables(con: sqlite3.Connection, schema: str = "main") -> dict[str, list[str]]:
    names = [r[0] for r in con.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' ORDER BY name")]
    return {t: [r[1] for r in con.execute(f'PRAGMA {schema}.table_info("{t}")')] for t in names}


def _sql_hold_back(db: Path, first_day: date) -> tuple[dict[str, int], dict[str, int]]:
    day = first_day.isoformat()
    new, updated = {}, {}
    with sqlite3.connect(db) as con:
        for table, cols in _tables(con).items():
            if "updated_at" not in cols:
                continue
            if "created_at" in cols:
                new[table] = con.execute(f'DELETE FROM "{table}" WHERE created_at >= ?', (day,)).rowcount
                updated[table] = con.execute(
                    f'UPDATE "{table}" SET updated_at = created_at WHERE updated_at >= ?', (day,)
                ).rowcount
            else:
                new[table] = con.execute(f'DELETE FROM "{table}" WHERE updated_at >= ?', (day,)).rowcount
    with sqlite3.connect(db) as con:
        con.execute("VACUUM")
    return new, updated


def _sql_append(full_db: Path, db: Path, first_day: date) -> tuple[dict[str, int], dict[str, int]]:
    """The rows updated from ``first_day`` on, as ``full_db`` holds them, into ``db`` (same rowids)."""
    day = first_day.isoformat()
    new, updated = {}, {}
    with sqlite3.connect(db) as con:
        con.execute("ATTACH DATABASE ? AS full", (f"file:{full_db}?mode=ro",))
        for table, cols in _tables(con, "full").items():
            if "updated_at" not in cols:
                continue
            col_list = ", ".join(f'"{c}"' for c in cols)
            held = f'SELECT rowid FROM full."{table}" WHERE updated_at >= ?'
            updated[table] = con.execute(f'DELETE FROM main."{table}" WHERE rowid IN ({held})', (day,)).rowcount
            inserted = con.execute(
                f'INSERT INTO main."{table}" (rowid, {col_list}) SELECT rowid, {col_list} FROM full."{table}" '
                "WHERE updated_at >= ?",
                (day,),
            ).rowcount
            new[table] = inserted - updated[table]
        con.commit()
        con.execute("DETACH DATABASE full")
    return new, updated


def _dated_files(root: Path, first_day: date) -> list[Path]:
    """Drop files (every file outside the sales database and the paged export) named with a day >= first_day."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith((EXPORT_DIR + "/", SALES_DB.split("/")[0] + "/")):
            continue
        stamp = path.stem[-10:]
        try:
            day = date.fromisoformat(stamp)
        except ValueError:
            continue
        if day >= first_day:
            found.append(path)
    return found


def _header(path: Path) -> dict:
    with path.open("rb") as handle:
        return json.loads(handle.readline())


def _pages_from(root: Path, first_day: date) -> list[Path]:
    """Export pages whose header says they were exported on or after ``first_day``."""
    folder = root / EXPORT_DIR
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("*.jsonl")) if date.fromisoformat(_header(p)["export_date"]) >= first_day]


def _last_page(root: Path) -> Path | None:
    pages = sorted((root / EXPORT_DIR).glob("*.jsonl"))
    return pages[-1] if pages else None


def _set_end_of_stream(path: Path, value: bool) -> None:
    """Rewrite the page's header line (its other lines unchanged), through a new file (hard links)."""
    data = path.read_bytes()
    first, rest = data.split(b"\n", 1)
    header = json.loads(first)
    header["end_of_stream"] = value
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(json.dumps(header).encode() + b"\n" + rest)
    tmp.replace(path)
