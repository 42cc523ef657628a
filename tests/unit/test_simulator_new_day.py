"""Holding back a company's last day and appending it again (the nightly benchmark's input).

After :func:`simulator.new_day.append_days` the sources must be those generated for the whole
period (every table's rows, every file byte for byte), and the support export's cursor chain must
walk from its first page to its last without a break, both held back and appended.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest

from crm.ingest.page_reader import walk_pages
from crm.settings import PagedExportSource
from simulator import SimulationConfig, generate
from simulator.build import SALES_DB
from simulator.new_day import append_days, hold_back
from simulator.support import EXPORT_DIR

# Seed 6 writes an events, a contacts and a campaigns drop on its last day (not every seed does).
CFG = dict(customers=300, seed=6, start=date(2024, 3, 1), days=60)


def _rows(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: con.execute(f'SELECT rowid, * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".sqlite")
    }


def _chain(root: Path) -> list[str]:
    source = PagedExportSource(kind="paged_export", path=root / EXPORT_DIR, first_cursor="page_000001", entities={})
    return [page.cursor for page in walk_pages("support_desk", source, "page_000001")]


@pytest.fixture(scope="module")
def company(tmp_path_factory) -> tuple[Path, Path, date]:
    root = tmp_path_factory.mktemp("new-day")
    cfg = SimulationConfig(**CFG, out=root / "full", truth_out=root / "truth")
    generate(cfg)
    return root / "full", root / "sources", cfg.end_date


def test_hold_back_then_append_gives_the_whole_period(company) -> None:
    full, out, last_day = company
    held = hold_back(full, out, last_day)
    assert sum(held.sql_rows.values()) > 0 and sum(held.sql_updated.values()) > 0, held
    assert [Path(f).name for f in held.files] == [
        f"{kind}_{last_day}.csv" for kind in ("campaigns", "contacts", "events")
    ]
    assert held.pages

    # Held back: no row, file or page of the last day, and every foreign key still whole.
    with sqlite3.connect(out / SALES_DB) as con:
        for table in ("orders", "order_lines", "contacts", "accounts"):
            assert (
                con.execute(f"SELECT count(*) FROM {table} WHERE updated_at >= ?", (str(last_day),)).fetchone()[0] == 0
            )
        orphans = "SELECT count(*) FROM order_lines WHERE order_id NOT IN (SELECT id FROM orders)"
        assert con.execute(orphans).fetchone()[0] == 0
    assert not any(str(last_day) in name for name in _files(out) if not name.startswith(EXPORT_DIR))
    whole = _chain(full)
    assert _chain(out) == [Path(p).stem for p in sorted(_files(full)) if p.startswith(EXPORT_DIR)][: -len(held.pages)]
    assert _chain(out) == whole[: -len(held.pages)]

    appended = append_days(full, out, last_day)
    assert appended.sql_rows == held.sql_rows
    assert appended.sql_updated == held.sql_updated
    assert appended.files == held.files and appended.pages == held.pages

    full_rows, out_rows = _rows(full / SALES_DB), _rows(out / SALES_DB)
    assert {t: len(r) for t, r in out_rows.items()} == {t: len(r) for t, r in full_rows.items()}
    assert out_rows == full_rows
    assert _files(out) == _files(full)
    assert _chain(out) == whole


def test_the_generator_is_deterministic_per_seed(tmp_path: Path, company) -> None:
    """What makes the held-back day exact: the same seed writes the same company."""
    full, _, _ = company
    again = SimulationConfig(**CFG, out=tmp_path / "again", truth_out=tmp_path / "truth")
    generate(again)
    assert _files(again.out) == _files(full)
    assert _rows(again.out / SALES_DB) == _rows(full / SALES_DB)
