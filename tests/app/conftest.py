"""Fixtures for the app: the snapshot the shared `built_company` build published, with its scores."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from crm.serving.snapshots import (
    CheckResult,
    RunRecord,
    Snapshot,
    current_snapshot,
    publish_snapshot,
)

APP_SCRIPT = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
PAGES = (
    "overview",
    "customers",
    "segments",
    "segment_builder",
    "churn_value",
    "campaigns_support",
    "my_book",
    "data_health",
    "steward_review",
)


@dataclass(frozen=True)
class Published:
    data_dir: Path
    snapshot: Snapshot

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.snapshot.path), read_only=True)


def _bookkeeping(path: Path) -> tuple[list[CheckResult], list[RunRecord], list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        freshness = (
            con.execute(
                "SELECT source, entity, warn_after_days, error_after_days FROM ops.freshness_expectations"
            ).fetchall()
            if con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ops' "
                "AND table_name = 'freshness_expectations'"
            ).fetchall()[0][0]
            else []
        )
        checks = [
            CheckResult(*row)
            for row in con.execute(
                "SELECT asset_key, check_name, passed, severity, description, metadata_json, evaluated_at "
                "FROM ops.asset_check_results"
            ).fetchall()
        ]
        runs = [
            RunRecord(*row)
            for row in con.execute(
                "SELECT run_id, job_name, status, started_at, ended_at FROM ops.recent_runs"
            ).fetchall()
        ]
    return checks, runs, freshness


def republish(source: Path, data_dir: Path, run_id: str, like: Snapshot, change=None) -> Snapshot:
    """Publish a writable copy of ``source`` (optionally changed) with the bookkeeping of ``like``."""
    work = data_dir.parent / f"{data_dir.name}-work.duckdb"
    shutil.copyfile(source, work)
    work.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if change is not None:
        with duckdb.connect(str(work)) as con:
            change(con)
    checks, runs, freshness = _bookkeeping(like.path)
    published = publish_snapshot(work, data_dir, run_id=run_id, checks=checks, runs=runs, freshness=freshness)
    work.unlink()
    return published


@pytest.fixture(scope="session")
def build_snapshot(built_company) -> Snapshot:
    """What the shared build published through the serving asset."""
    snapshot = current_snapshot(built_company.settings.data_dir)
    assert snapshot is not None, f"the build published no snapshot under {built_company.settings.data_dir}"
    return snapshot


@pytest.fixture(scope="session")
def published(built_company, build_snapshot) -> Published:
    return Published(built_company.settings.data_dir, build_snapshot)


@pytest.fixture
def app_env(monkeypatch, published):
    """Point the app at the published snapshot's data dir (as `crm app` would through the config)."""
    monkeypatch.setenv("CRM_DATA_DIR", str(published.data_dir))
    monkeypatch.delenv("CRM_CONFIG", raising=False)
    return published


@pytest.fixture
def clear_app_caches():
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def environment_for_subprocess(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CRM_DATA_DIR": str(data_dir)}
    env.pop("CRM_CONFIG", None)
    return env
