"""Fixtures for the app: the snapshot the shared `built_company` build published, with its scores, and
a users file with one user per role, signed in through the real login form (:func:`sign_in`)."""

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
# One test user per role; the rep owns the largest book of the shared build.
PASSWORDS = {role: f"test-password-{role}" for role in ("admin", "analyst", "marketer", "rep", "steward")}
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
    _carry_quarantine_summary(like.path, published.path)
    return published


def _carry_quarantine_summary(like: Path, target: Path) -> None:
    """A snapshot holds no quarantine tables, so publishing one again would find nothing quarantined:
    the copy keeps the original's quarantine reasons and samples, as the build published them."""
    target.chmod(stat.S_IRUSR | stat.S_IWUSR)
    try:
        with duckdb.connect(str(target)) as con:
            con.execute(f"ATTACH '{like}' AS original (READ_ONLY)")
            for table in ("quarantine_reasons", "quarantine_samples"):
                con.execute(f"CREATE OR REPLACE TABLE ops.{table} AS SELECT * FROM original.ops.{table}")
    finally:
        target.chmod(stat.S_IRUSR)


@pytest.fixture(scope="session")
def build_snapshot(built_company) -> Snapshot:
    """What the shared build published through the serving asset."""
    snapshot = current_snapshot(built_company.settings.data_dir)
    assert snapshot is not None, f"the build published no snapshot under {built_company.settings.data_dir}"
    return snapshot


@pytest.fixture(scope="session")
def published(built_company, build_snapshot) -> Published:
    return Published(built_company.settings.data_dir, build_snapshot)


@dataclass(frozen=True)
class AppUsers:
    path: Path
    rep_id: int


@pytest.fixture(scope="session")
def app_users(tmp_path_factory, published) -> AppUsers:
    """A users file written by the same code as `crm users add`, one user per role."""
    from crm.security.users import add_user

    with published.connect() as con:
        rep_id = con.execute(
            "SELECT owner_rep_id FROM marts.customer_360 WHERE owner_rep_id IS NOT NULL "
            "GROUP BY ALL ORDER BY count(*) DESC, owner_rep_id LIMIT 1"
        ).fetchall()[0][0]
    path = tmp_path_factory.mktemp("users") / "users.json"
    for role, password in PASSWORDS.items():
        add_user(path, f"test-{role}", role, password=password, rep_id=int(rep_id) if role == "rep" else None)
    return AppUsers(path, int(rep_id))


@pytest.fixture(autouse=True)
def users_env(monkeypatch, app_users) -> AppUsers:
    """Every app test signs in against the test users file (nothing turns the login off)."""
    monkeypatch.setenv("CRM_USERS_FILE", str(app_users.path))
    return app_users


def sign_in(app, role: str = "admin", password: str | None = None):
    """Run the app and sign in through the login form, as a person would."""
    app.run()
    app.text_input(key="login_name").input(f"test-{role}")
    app.text_input(key="login_password").input(password or PASSWORDS[role])
    app.button[0].click().run()
    return app


def viewer(role: str, rep_id: int | None = None):
    """The viewer a signed-in user of ``role`` gets (for calling the data layer directly)."""
    from crm.security.roles import Viewer

    return Viewer.for_role(f"test-{role}", role, rep_id=rep_id)


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
