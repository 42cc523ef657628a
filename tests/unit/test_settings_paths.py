"""Relative paths: what is read resolves against the config file's folder, what is written against the data folder.

Regression (issue 10): CRM_DATA_DIR moved neither Dagster's storage nor a relative warehouse_path,
and a config's relative source paths depended on the working directory.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from crm.settings import load_settings


def _write(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crm.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_relative_paths_resolve_against_the_config_folder_and_writes_go_under_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a working directory unrelated to the config
    for name in ("CRM_DATA_DIR", "CRM_WAREHOUSE_PATH", "CRM_GROUND_TRUTH_DIR", "CRM_SCORING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    config = _write(
        tmp_path / "company" / "conf",
        {
            "warehouse_path": "wh/shop.duckdb",
            "sources": {
                "db": {
                    "kind": "sql",
                    "url": "sqlite:///../exports/sales.sqlite",
                    "entities": {},
                },
                "shop": {"kind": "file_drop", "path": "../exports", "entities": {}},
            },
        },
    )
    settings = load_settings(config)
    company = tmp_path / "company"
    assert settings.data_dir == company / "conf" / "data"  # no data_dir: data/ next to the config
    assert settings.warehouse_path == company / "conf" / "data" / "wh" / "shop.duckdb"
    assert settings.dagster_home == company / "conf" / "data" / "dagster"
    assert settings.sources["shop"].path == company / "exports"
    assert settings.sources["db"].url == f"sqlite:///{company / 'exports' / 'sales.sqlite'}"

    monkeypatch.setenv("CRM_DATA_DIR", "elsewhere")  # a path given on the command line's terms
    moved = load_settings(config)
    assert moved.data_dir == tmp_path / "elsewhere"
    assert moved.warehouse_path == tmp_path / "elsewhere" / "wh" / "shop.duckdb"
    assert moved.dagster_home == tmp_path / "elsewhere" / "dagster"


def test_the_demo_config_keeps_everything_under_the_project_data_folder(monkeypatch):
    for name in ("CRM_DATA_DIR", "CRM_WAREHOUSE_PATH", "CRM_SOURCES_DIR", "CRM_GROUND_TRUTH_DIR", "CRM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    root = Path(__file__).resolve().parents[2]
    assert settings.data_dir == root / "data"
    assert settings.warehouse_path == root / "data" / "warehouse" / "crm.duckdb"
    assert settings.sources["marketing_platform"].path == root / "data" / "sources" / "marketing"
    assert settings.ground_truth_dir == root / "data" / "ground_truth"
