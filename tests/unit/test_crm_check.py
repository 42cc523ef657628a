"""`crm check`: for each wrong config a user is likely to write, an error that names the fix, and exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

GOOD = "customer,date,cds,amount\n" + "".join(
    f"{i:05d},1997{1 + i % 12:02d}{1 + i % 28:02d},1,{10 + i}.50\n" for i in range(300)
)


def _config(tmp_path: Path, *, csv: str = GOOD, path: str = "shop", **overrides) -> Path:
    shop = tmp_path / "shop"
    shop.mkdir(exist_ok=True)
    (shop / "orders.csv").write_text(csv)
    source = {
        "kind": "file_drop",
        "path": path,
        "entities": {
            "sales_orders": {
                "pattern": "orders.csv",
                "single_file": True,
                "date_column": "order_date",
                "columns": {"customer_ref": "customer", "order_date": "date", "total_amount": "amount"},
                "ignore_columns": ["cds"],
            }
        },
    }
    source.update(overrides.pop("source", {}))
    config = {"data_dir": str(tmp_path / "data"), "sources": {"shop": source}, **overrides}
    file = tmp_path / "crm.yml"
    file.write_text(yaml.safe_dump(config))
    return file


def _check(config: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["check", "--config", str(config), "--json"])
    return result.exit_code, json.loads(result.output)


def test_a_good_config_passes_and_reports_what_it_can_and_cannot_compute(tmp_path):
    code, report = _check(_config(tmp_path))
    assert code == 0 and report["ok"]
    orders = report["entities"][0]
    assert (orders["entity"], orders["rows_read"], orders["rows_loaded"]) == ("sales_orders", 300, 300)
    assert (orders["first_day"], orders["last_day"]) == ("1997-01-01", "1997-12-28")
    assert orders["columns_mapped"] == {"customer_ref": "customer", "order_date": "date", "total_amount": "amount"}
    absent = {row["capability"]: row["missing_cost"] for row in report["coverage"] if not row["available"]}
    assert "support experience (tickets, resolution, satisfaction)" in absent
    assert "no marketing events" in absent["marketing engagement (opens, clicks) and campaign results"]
    assert report["estimate"]["source_rows"] == 300
    assert not (tmp_path / "data" / "warehouse").exists()  # a dry run writes no warehouse


@pytest.mark.parametrize(
    ("case", "change", "fix"),
    [
        (
            "wrong delimiter",
            {"source": {"delimiter": ";"}},
            "the delimiter looks like ',', not ';'; set `delimiter: ','`",
        ),
        ("undeclared date format", {"csv": "dd/mm"}, "declare date_format '%d/%m/%Y' or '%m/%d/%Y'"),
        (
            "missing required column",
            {"csv": GOOD.replace("customer,date,cds,amount", "client,date,cds,amount")},
            "required column 'customer' (canonical 'sales_orders.customer_ref') is missing",
        ),
        ("non-existent path", {"path": "no/such/folder"}, "does not exist; check `path:`"),
        ("no rows in the window", {"history_start": "2024-01-01"}, "set `history_start: auto`"),
    ],
)
def test_each_wrong_config_is_an_error_that_names_the_fix(tmp_path, case, change, fix):
    if case == "undeclared date format":
        change = {
            "csv": "customer,date,cds,amount\n"
            + "".join(f"{i:05d},{1 + i % 12:02d}/{1 + i % 12:02d}/1997,1,1\n" for i in range(300))
        }
    code, report = _check(_config(tmp_path, **change))
    assert code == 1 and not report["ok"], case
    errors = " ".join(" ".join(e["errors"]) for e in report["entities"])
    assert fix in errors, (case, errors)


def test_a_file_nobody_reads_fails_the_check(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "events_2024-01-01.csv").write_text("id,email,type,ts\ne1,a@x.com,open,2024-01-01 10:00:00\n")
    (drop / "export.xlsx").write_bytes(b"PK")
    config = tmp_path / "crm.yml"
    mapping = {"event_id": "id", "email": "email", "event_type": "type", "occurred_at": "ts"}
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "sources": {
                    "mk": {
                        "kind": "file_drop",
                        "path": str(drop),
                        "entities": {"marketing_events": {"pattern": "events_{date}.csv", "columns": mapping}},
                    }
                },
            }
        )
    )
    code, report = _check(config)
    assert code == 1 and report["unread_files"] == ["source 'mk': export.xlsx"]
    text = config.read_text().replace("path:", "ignore_files: ['*.xlsx']\n    path:")
    config.write_text(text)
    code, report = _check(config)
    assert code == 0 and report["unread_files"] == []
