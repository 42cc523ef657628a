"""`crm app` / `crm demo`: a busy port fails before any work, with a clear message and a non-zero exit;
`crm demo` builds again only when the sources changed (or `--rebuild` says so)."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines import cli


@pytest.fixture
def busy_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", [["app"], ["demo"]])
def test_a_busy_port_stops_the_command_before_any_work(command, busy_port, monkeypatch):
    """The issue: the URL was printed, the whole build ran, then "Port 8501 is not available" and exit 0."""
    monkeypatch.setattr(cli, "_run_build", lambda *a, **k: pytest.fail("built although the port is taken"))
    monkeypatch.setattr(cli, "generate", lambda *a, **k: pytest.fail("generated although the port is taken"))
    result = CliRunner().invoke(cli.app, [*command, "--port", str(busy_port)])
    assert result.exit_code == 2, result.output
    assert f"Port {busy_port} on 127.0.0.1 is not available" in result.output
    assert "http://" not in result.output, "no URL printed for a dashboard that will not start"


def test_demo_reuses_an_unchanged_build_and_rebuilds_when_the_sources_change(tmp_path, monkeypatch):
    from crm.serving.snapshots import publish_snapshot
    from crm.settings import load_settings

    sources = tmp_path / "sources"
    (sources / "marketing").mkdir(parents=True)
    drop = sources / "marketing" / "events_2024-01-01.csv"
    drop.write_text("event_id\n1\n")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    builds = []

    def build(settings, start, end):
        builds.append(1)
        warehouse = tmp_path / "warehouse.duckdb"
        duckdb.connect(str(warehouse)).close()
        publish_snapshot(warehouse, settings.data_dir, run_id=f"run-{len(builds)}")
        return SimpleNamespace(success=True, run_id=f"run-{len(builds)}")

    monkeypatch.setattr(cli, "_run_build", build)
    cli._build_unless_unchanged(settings, sources, rebuild=False)
    cli._build_unless_unchanged(settings, sources, rebuild=False)
    assert len(builds) == 1, "the second demo serves the first build"
    drop.write_text("event_id\n1\n2\n")
    os.utime(drop, ns=(drop.stat().st_atime_ns, drop.stat().st_mtime_ns + 1_000_000))
    cli._build_unless_unchanged(settings, sources, rebuild=False)
    assert len(builds) == 2, "a changed source file means a new build"
    cli._build_unless_unchanged(settings, sources, rebuild=True)
    assert len(builds) == 3, "--rebuild forces one"
