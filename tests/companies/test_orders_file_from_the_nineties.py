"""A stranger's data through the `crm` command: an orders file from 1997-98 with YYYYMMDD dates, configured
exactly as README's "Your own sources" says, built with no extra flag.

One company, four commands, in the order a user would meet them:

1. a build starts (a subprocess, its progress piped: one line per step);
2. a second build of the same warehouse is refused at once, naming the running one;
3. the first build is killed during ingestion;
4. the next build completes unattended (the killed run marked failed, its pool slot freed, partial
   files removed) and publishes customer_360, scores and a snapshot.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from crm.config import PROJECT_ROOT

CRM = [sys.executable, "-m", "pipelines.cli"]


def readme_config() -> str:
    """The first YAML block of README's "Your own sources", as a user would copy it."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own sources") :]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def write_orders(path: Path, customers: int = 300, seed: int = 1) -> int:
    """A CDNOW-like cohort: first purchases in Q1 1997, repeat purchases until mid-1998."""
    rng = np.random.default_rng(seed)
    lines = ["customer,date,cds,amount"]
    start, end = date(1997, 1, 1), date(1998, 6, 30)
    for customer in range(1, customers + 1):
        day = start + timedelta(days=int(rng.integers(0, 90)))
        rate, alive_until = rng.gamma(1.0, 1 / 40), start + timedelta(days=int(rng.integers(30, 560)))
        first = True  # every customer buys once; repeat purchases until they drop out
        while day <= end and (first or day <= alive_until):
            lines.append(f"{customer:05d},{day:%Y%m%d},{rng.integers(1, 6)},{rng.gamma(2, 15):.2f}")
            day += timedelta(days=1 + int(rng.exponential(1 / max(rate, 1e-3))))
            first = False
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    root = tmp_path_factory.mktemp("nineties_shop")
    (root / "exports").mkdir()
    orders = write_orders(root / "exports" / "orders.csv")
    (root / "crm.yml").write_text(readme_config())
    return root, orders


def _wait_for(process: subprocess.Popen, pattern: str, timeout: float = 300) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line.rstrip())
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"never saw {pattern!r}; output: {seen[-20:]}")


def test_a_second_build_is_refused_a_killed_one_is_recovered_and_the_readme_config_builds(company):
    root, orders = company
    config = str(root / "crm.yml")
    first = subprocess.Popen(
        [*CRM, "build", "--config", config],
        cwd=root,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # stdout is a pipe, not a terminal: progress comes line by line, as it happens.
        progress = _wait_for(first, r"started\s+raw__")
        assert all(re.match(r"\d\d:\d\d:\d\d (started|done|FAILED|skipped)", line) for line in progress[-1:])
        started = time.monotonic()
        second = subprocess.run(
            [*CRM, "build", "--config", config], cwd=root, env=_environment(), capture_output=True, text=True
        )
        refused_after = time.monotonic() - started
        assert second.returncode == 3, second.stdout + second.stderr
        assert "Build refused" in second.stderr and f"process {first.pid} started" in " ".join(second.stderr.split())
        assert refused_after < 60, refused_after  # at once: before any planning (import time included)
        first.send_signal(signal.SIGKILL)  # killed during ingestion
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    third = subprocess.run(
        [*CRM, "build", "--config", config], cwd=root, env=_environment(), capture_output=True, text=True, timeout=1800
    )
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "recovered: run" in third.stdout and "marked failed" in third.stdout

    data = root / "data"
    import dagster as dg

    with dg.DagsterInstance.from_config(str(data / "dagster")) as instance:
        statuses = [r.dagster_run.status for r in instance.get_run_records()]
    assert dg.DagsterRunStatus.STARTED not in statuses and dg.DagsterRunStatus.FAILURE in statuses
    assert not list((data / "snapshots").glob(".*partial*"))
    assert (data / "snapshots" / "CURRENT.json").exists()

    with duckdb.connect(str(data / "warehouse" / "crm.duckdb"), read_only=True) as con:
        raw, quarantine = con.execute(
            "SELECT (SELECT count(*) FROM raw.sales_orders), (SELECT count(*) FROM quarantine.sales_orders)"
        ).fetchone()
        first_day, last_day = con.execute("SELECT min(order_day), max(order_day) FROM marts.orders").fetchone()
        customers = con.execute("SELECT count(*) FROM marts.customer_360").fetchone()[0]
        scored = con.execute("SELECT count(*) FROM marts.customer_360 WHERE churn_probability IS NOT NULL").fetchone()[
            0
        ]
        segments = {r[0] for r in con.execute("SELECT DISTINCT segment FROM marts.customer_360").fetchall()}
    assert (raw, quarantine) == (orders, 0)
    assert date(1997, 1, 1) <= first_day < date(1997, 4, 1) and last_day.year == 1998
    assert customers == 300 == scored
    assert segments == {"B2C"}

    audit = subprocess.run(
        [*CRM, "audit", "--config", config, "--json"], cwd=root, env=_environment(), capture_output=True, text=True
    )
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
