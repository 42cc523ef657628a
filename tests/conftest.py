"""Shared fixtures: a small simulated company written once per test session, and settings for it.

The company is small (2,000 persons) with a short history, so a full Dagster build over every
daily partition takes seconds; tests that change files copy it first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from crm.settings import DEFAULT_CONFIG, Settings, load_settings

# Tests in these folders build a warehouse through Dagster (or read the shared build): `make test-fast`
# (pytest -m "not slow") leaves them out for a quick loop; `make test` runs everything.
SLOW_FOLDERS = ("integration", "app", "browser")


# Modules that read the shared `built_company` build: `make test` (two xdist workers) keeps them on
# one worker so the company is built once; every other slow module is one unit of work of its own.
SHARED_BUILD_FOLDERS = ("tests/app/", "tests/browser/")
SHARED_BUILD_MODULES = (
    "tests/integration/test_scores_built_company.py",
    "tests/integration/test_warehouse_simulated_company.py",
)


def _work_unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    if module.startswith(SHARED_BUILD_FOLDERS) or module in SHARED_BUILD_MODULES:
        return "shared built_company"
    return module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
        if "built_company" in item.fixturenames and _work_unit(item.nodeid) != "shared built_company":
            raise pytest.UsageError(
                f"{item.nodeid} reads the shared build: add its module to SHARED_BUILD_MODULES in tests/conftest.py"
            )


def pytest_xdist_make_scheduler(config, log):
    """Units of work for the xdist workers: the readers of the shared build together, else one per module.
    (xdist's own `loadgroup` marks do not take under pytest 9, which renamed the node id it rewrites.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SharedBuildScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return SharedBuildScheduling(config, log)


SMALL_COMPANY = dict(customers=2_000, seed=11, start=date(2024, 1, 1), days=150)


@pytest.fixture(scope="session")
def small_company(tmp_path_factory) -> Path:
    """Root folder with sources/ and ground_truth/ of the small company (never modified by tests)."""
    from simulator import SimulationConfig, generate

    root = tmp_path_factory.mktemp("company")
    generate(SimulationConfig(out=root / "sources", truth_out=root / "ground_truth", **SMALL_COMPANY))
    return root


@pytest.fixture
def company_copy(small_company, tmp_path) -> Path:
    """A private copy of the small company, for tests that edit or add source files."""
    target = tmp_path / "company"
    shutil.copytree(small_company, target)
    return target


@pytest.fixture
def use_company(monkeypatch, tmp_path):
    """Point the demo config at a company folder and a fresh warehouse; returns loaded Settings."""

    def _use(company_root: Path, config: Path = DEFAULT_CONFIG, warehouse: Path | None = None) -> Settings:
        monkeypatch.setenv("CRM_CONFIG", str(config))
        monkeypatch.setenv("CRM_SOURCES_DIR", str(company_root / "sources"))
        monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(warehouse or tmp_path / "warehouse" / "crm.duckdb"))
        # models, snapshots and exports of a test build stay in its tmp folder, never in the repo's data/
        monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("CRM_HISTORY_START", SMALL_COMPANY["start"].isoformat())
        monkeypatch.delenv("CRM_SALES_DB_URL", raising=False)
        return load_settings()

    return _use


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


# A company with a year of history, built once per session through the real `crm build` path
# (ingestion, dbt, identity resolution, and whatever later steps the definitions hold). A year,
# because scores need a training cut-off and a backtest cut-off inside the history.
BUILT_COMPANY = dict(customers=2_000, seed=7, start=date(2024, 1, 1), days=365)


@dataclass(frozen=True)
class BuiltCompany:
    root: Path
    sources: Path
    ground_truth: Path
    warehouse: Path
    settings: Settings
    outcome: object  # pipelines.build.BuildOutcome

    @property
    def last_day(self) -> date:
        return BUILT_COMPANY["start"] + timedelta(days=BUILT_COMPANY["days"] - 1)


@pytest.fixture(scope="session")
def built_company(tmp_path_factory) -> BuiltCompany:
    """The year-long company generated and built once; tests read its warehouse, never write it."""
    from pipelines.build import run_build
    from simulator import SimulationConfig, generate

    root = tmp_path_factory.mktemp("built_company")
    generate(SimulationConfig(out=root / "sources", truth_out=root / "ground_truth", **BUILT_COMPANY))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_CONFIG", str(DEFAULT_CONFIG))
        mp.setenv("CRM_SOURCES_DIR", str(root / "sources"))
        mp.setenv("CRM_WAREHOUSE_PATH", str(root / "warehouse" / "crm.duckdb"))
        mp.setenv("CRM_GROUND_TRUTH_DIR", str(root / "ground_truth"))
        mp.setenv("CRM_DATA_DIR", str(root / "data"))
        mp.setenv("CRM_HISTORY_START", BUILT_COMPANY["start"].isoformat())
        mp.delenv("CRM_SALES_DB_URL", raising=False)
        settings = load_settings()
        # An in-memory Dagster instance: hundreds of partition materializations cost seconds.
        with dg.DagsterInstance.ephemeral() as ephemeral:
            outcome = run_build(settings, instance=ephemeral)
    return BuiltCompany(
        root=root,
        sources=root / "sources",
        ground_truth=root / "ground_truth",
        warehouse=settings.warehouse_path,
        settings=settings,
        outcome=outcome,
    )
