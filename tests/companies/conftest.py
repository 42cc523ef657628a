"""Differently shaped companies, each generated small and built once per session through `crm build`'s path.

* ``full``: the default shape at the size of issue 10's failing case (`crm generate --customers 600
  --days 400 --seed 3`): its first build used to fail at ml__churn_model (BG/NBD not identified);
* ``orders-only``: one German-formatted orders CSV (config/sources.orders-only.yml);
* ``b2b-no-marketing``: sales database and support export only (config/sources.b2b-no-marketing.yml).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from crm.settings import PROJECT_ROOT, Settings, load_settings

END = date(2025, 6, 30)
SIZES = {
    "full": dict(customers=600, days=400, seed=3),
    "orders-only": dict(customers=300, days=240, seed=5),
    "b2b-no-marketing": dict(customers=300, days=240, seed=5),
}


@dataclass(frozen=True)
class BuiltProfile:
    profile: str
    root: Path
    settings: Settings
    outcome: object  # pipelines.build.BuildOutcome

    def connect(self):
        return self.settings.connect_warehouse(read_only=True)


def _environment(mp: pytest.MonkeyPatch, root: Path) -> None:
    mp.setenv("CRM_SOURCES_DIR", str(root / "sources"))
    mp.setenv("CRM_DATA_DIR", str(root / "data"))
    mp.setenv("CRM_GROUND_TRUTH_DIR", str(root / "ground_truth"))
    for name in ("CRM_WAREHOUSE_PATH", "CRM_HISTORY_START", "CRM_SALES_DB_URL", "CRM_CONFIG"):
        mp.delenv(name, raising=False)


def build_profile(root: Path, profile: str) -> BuiltProfile:
    from pipelines.build import run_build
    from simulator import SimulationConfig, generate
    from simulator.profiles import PROFILES

    size = SIZES[profile]
    start = END - timedelta(days=size["days"] - 1)
    generate(
        SimulationConfig(out=root / "sources", truth_out=root / "ground_truth", start=start, profile=profile, **size)
    )
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, root)
        settings = load_settings(PROJECT_ROOT / PROFILES[profile].config)
        with dg.DagsterInstance.ephemeral() as instance:
            outcome = run_build(settings, instance=instance)
    return BuiltProfile(profile, root, settings, outcome)


@pytest.fixture(scope="session")
def built_profiles(tmp_path_factory):
    """Each profile built once, on first use."""
    built: dict[str, BuiltProfile] = {}

    def get(profile: str) -> BuiltProfile:
        if profile not in built:
            built[profile] = build_profile(tmp_path_factory.mktemp(profile.replace("-", "_")), profile)
        return built[profile]

    return get


def rebuild(company: BuiltProfile):
    """The same build again (the same day, the same sources): what a re-run of the nightly job does."""
    from pipelines.build import run_build

    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        _environment(mp, company.root)
        return run_build(company.settings, instance=instance)


def rows_in_sources(sources: Path, settings: Settings) -> dict[str, int]:
    """Every record the sources hold per configured entity, counted without the pipeline's readers."""
    from crm.settings import FileDropSource, PagedExportSource, SqlSource

    def lines(paths) -> int:
        return sum(sum(1 for line in p.read_bytes().split(b"\n")[1:] if line.strip()) for p in paths)

    counts = {}
    for source in settings.sources.values():
        for entity, mapping in source.entities.items():
            if isinstance(source, SqlSource):
                with sqlite3.connect(source.url.removeprefix("sqlite:///")) as con:
                    counts[entity] = con.execute(f"SELECT count(*) FROM {mapping.table}").fetchone()[0]
            elif isinstance(source, FileDropSource):
                counts[entity] = lines(source.path.glob(mapping.pattern.replace("{date}", "*")))
            elif isinstance(source, PagedExportSource):
                counts[entity] = lines(source.path.glob("*.jsonl"))
    return counts


@pytest.fixture
def clear_app_caches():
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
