"""The `crm` command: generate the simulated company, build the warehouse, audit it, serve it.

crm generate [--profile full|orders-only|b2b-no-marketing --customers N --seed S --start DATE --days D --out DIR]
crm check    [--config FILE] [--json]   (a dry run: what a build would read, lose, quarantine and compute)
crm build    [--config FILE --start DATE --end DATE --reresolve --full-refresh]
crm audit    [--json]
crm demo     [--rebuild] (generate the small company if absent, build unless unchanged, serve the dashboard)
crm app      [--port 8501]   (the Streamlit dashboard on the latest published snapshot)
crm dev      (the Dagster UI: asset graph, checks, runs, the nightly schedule)
crm evaluate identity [--json]   (identity matching vs the simulator's ground truth)
crm users add NAME --role ROLE   (dashboard users; also list, remove)
crm erase --email X | --phone X | --customer-id X   (erase one person everywhere)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import typer
from dagster import BetaWarning
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crm.security.redaction import redact_secrets
from crm.settings import DEFAULT_CONFIG, PROJECT_ROOT, ConfigError, Settings, load_settings
from pipelines.commands.erase import erase as erase_command
from pipelines.commands.evaluate import evaluate_app
from pipelines.commands.users import users_app

# Single-run backfill policies are "beta" in Dagster 1.13; the project depends on them on purpose.
warnings.filterwarnings("ignore", category=BetaWarning)

app = typer.Typer(
    help="Analytical CRM warehouse: sources -> DuckDB -> customer 360 -> scores -> people.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

DEFAULT_SOURCES = PROJECT_ROOT / "data" / "sources"
ConfigOption = typer.Option(None, "--config", "-c", help="Sources config (default: $CRM_CONFIG or the demo company).")


def _settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]Config error:[/red] {redact_secrets(str(exc))}")
        raise typer.Exit(2) from exc


def _server_environment(settings: Settings) -> dict[str, str]:
    """What a server started from here needs to find this config's files: the config itself (Dagster
    reads it), the data folder (the dashboard reads snapshots there) and Dagster's instance folder."""
    from pipelines.build import prepare_dagster_home

    return {
        **os.environ,
        "CRM_CONFIG": str(settings.config_path),
        "CRM_DATA_DIR": str(settings.data_dir),
        "DAGSTER_HOME": str(prepare_dagster_home(settings)),
    }


@app.command()
def generate(
    customers: int = typer.Option(2_000, help="Number of real persons in the company."),
    seed: int = typer.Option(42, help="Random seed; the same seed gives byte-identical sources."),
    start: str = typer.Option(None, help="First visible day (YYYY-MM-DD); default: so the history ends yesterday."),
    days: int = typer.Option(None, help="Days of visible history (default: the profile's, 730 for full)."),
    out: Path = typer.Option(DEFAULT_SOURCES, help="Where the source systems are written."),
    truth_out: Path = typer.Option(None, help="Where the ground truth is written (default: next to --out)."),
    profile: str = typer.Option(
        "full", help="The company's shape: full, orders-only, b2b-no-marketing (simulator/profiles.py)."
    ),
) -> None:
    """Write a simulated company (its source systems and its ground truth) in the shape of a profile."""
    from simulator import SimulationConfig
    from simulator import generate as simulate
    from simulator.profiles import PROFILES

    if profile not in PROFILES:
        err.print(f"[red]Unknown profile {profile!r}[/red]; profiles: {', '.join(PROFILES)}")
        raise typer.Exit(2)
    shape = PROFILES[profile]
    days = days or shape.default_days
    first_day = date.fromisoformat(start) if start else date.today() - timedelta(days=days)
    config = SimulationConfig(
        profile=profile,
        customers=customers,
        seed=seed,
        start=first_day,
        days=days,
        out=out.resolve(),
        truth_out=(truth_out or out.resolve().parent / "ground_truth").resolve(),
    )
    with _progress(sys.stdout) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        mess = simulate(config, progress=report)
    console.print(
        f"[green]Company written[/green] ({profile}: {shape.description}) to {config.out} "
        f"(ground truth: {config.truth_out})"
    )
    console.print(f"Check and build it with: crm check --config {shape.config}; crm build --config {shape.config}")
    console.print(f"history {first_day} .. {first_day + timedelta(days=days - 1)}, {customers:,} persons, seed {seed}")
    if isinstance(mess, dict):
        rates = mess.get("rates", mess)
        table = Table("measured mess", "value", title="How messy the company is")
        for key, value in rates.items():
            if isinstance(value, (int, float)):
                table.add_row(key, f"{value:.4f}" if isinstance(value, float) else f"{value:,}")
        console.print(table)


def _progress(screen) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=screen, width=console.width),
        transient=False,
    )


@app.command()
def check(
    config: Path = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    sample: int = typer.Option(5, help="Quarantined rows to show per entity."),
) -> None:
    """Dry run: probe every configured source as a build would, without writing the warehouse.

    Exits 1 when the build would fail or leave rows unread; every error names the fix.
    """
    from crm.ingest.check import check_sources

    settings = _settings_or_exit(config)
    report = check_sources(settings, sample=sample)
    if as_json:
        print(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        _print_check(report)
    if not report.ok:
        raise typer.Exit(1)


def _entity_lines(e) -> list[str]:
    lines = [f"[red]error:[/red] {m}" for m in e.errors] + [f"[yellow]warning:[/yellow] {m}" for m in e.warnings]
    if e.required_missing:
        lines.append(f"[red]required columns missing:[/red] {', '.join(e.required_missing)}")
    if e.optional_missing:
        lines.append(f"optional columns missing (loaded empty): {', '.join(e.optional_missing)}")
    if e.columns_unmapped:
        lines.append(f"unmapped source columns (not loaded): {', '.join(e.columns_unmapped)}")
    if e.columns_mapped:
        lines.append("mapped: " + ", ".join(f"{k} <- {v}" for k, v in e.columns_mapped.items()))
    lines += [f"would quarantine {row['where']}: {row['reason']}" for row in e.quarantine_sample]
    return lines


def _print_check(report) -> None:
    console.print(f"[bold]Sources config[/bold] {report.config}  (history start: {report.history_start or 'auto'})")
    table = Table("entity", "source", "status", "rows", "quarantined", "before history", "days", title="Entities")
    colour = {"ok": "green", "warning": "yellow", "error": "red"}
    for e in report.entities:
        days = f"{e.first_day}..{e.last_day}" if e.first_day else "-"
        table.add_row(
            e.entity,
            e.source,
            f"[{colour[e.status]}]{e.status}[/{colour[e.status]}]",
            f"{e.rows_read:,}",
            f"{e.rows_quarantined:,}",
            f"{e.rows_outside_history:,}",
            days,
        )
    console.print(table)
    for e in report.entities:
        lines = _entity_lines(e)
        if lines:
            console.print(f"[bold]{e.entity}[/bold] (source '{e.source}')")
            for line in lines:
                console.print(f"  {line}", highlight=False)
    for item in report.unread_files:
        console.print(
            f"[red]file nobody reads:[/red] {item} (map it with a pattern, or list it in `ignore_files`)",
            highlight=False,
        )
    capabilities = Table("capability", "available", "what its absence costs", title="What the pipeline can compute")
    for row in report.coverage:
        capabilities.add_row(
            row["capability"],
            "[green]yes[/green]" if row["available"] else "[yellow]no[/yellow]",
            row["missing_cost"] or "",
        )
    console.print(capabilities)
    if report.unconfigured:
        console.print(f"Not configured (empty tables): {', '.join(report.unconfigured)}")
    est = report.estimate
    console.print(
        f"Estimate: {est['source_rows']:,} source rows, a warehouse of about {est['warehouse_mb']:,} MB, a first build "
        f"of about {est['first_build_minutes']} min ({est['note']})."
    )
    if report.ok:
        console.print("[green]crm build can run with this config.[/green]")
    else:
        err.print("[red]crm build would fail or leave rows unread with this config: fix the errors above.[/red]")


@app.command()
def build(
    config: Path = ConfigOption,
    start: str = typer.Option(
        None, help="Re-read and replace the days from this one (YYYY-MM-DD); default: read what is new."
    ),
    end: str = typer.Option(None, help="Last day to re-read with --start (default: no end)."),
    reresolve: bool = typer.Option(
        False, "--reresolve", help="Identity resolution compares every pair of records again, not only new ones."
    ),
    full_refresh: bool = typer.Option(
        False,
        "--full-refresh",
        help="Compute everything from the sources as a first build would (re-read every source, rebuild the "
        "incremental models, re-resolve identities), keeping the warehouse's models, ids and history.",
    ),
) -> None:
    """Materialize every asset for the configured sources, in this process (no server needed).

    Without --start/--end every source reads what is new since the last build (everything, the
    first time). A second build of the same warehouse is refused at once.
    """
    settings = _settings_or_exit(config)
    outcome = _run_build(settings, start, end, reresolve=reresolve, full_refresh=full_refresh)
    if not outcome.success:
        raise typer.Exit(1)


class _LineProgress:
    """Step progress as one line per event, for logs and pipes (stdout is not a terminal)."""

    def __init__(self, screen) -> None:
        self.screen, self.started, self.step_started = screen, time.monotonic(), {}

    def __call__(self, step: str, status: str) -> None:
        now = time.monotonic()
        stamp = datetime.now().strftime("%H:%M:%S")
        if status == "STEP_START":
            self.step_started[step] = now
            line = f"{stamp} started   {step}"
        else:
            took = now - self.step_started.get(step, now)
            word = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}.get(status, status)
            line = f"{stamp} {word:<9} {step} ({took:.1f}s)"
        print(line, file=self.screen, flush=True)


def _run_build(settings, start: str | None, end: str | None, *, reresolve: bool = False, full_refresh: bool = False):
    from crm.build_lock import BuildRunningError
    from pipelines.build import run_build

    started = time.monotonic()
    log_path = settings.data_dir / "logs" / f"build-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    screen = sys.stdout
    try:
        first = date.fromisoformat(start) if start else None
        last = date.fromisoformat(end) if end else None
    except ValueError as exc:
        err.print(f"[red]--start/--end must be YYYY-MM-DD:[/red] {exc}")
        raise typer.Exit(2) from exc
    with log_path.open("w", encoding="utf-8") as log, contextlib.ExitStack() as stack:
        if screen.isatty():
            progress = stack.enter_context(_progress(screen))
            task = progress.add_task("materializing assets", total=None)
            done: set[str] = set()

            def on_step(step: str, status: str) -> None:
                if status == "STEP_START":
                    progress.update(task, description=f"materializing {step}")
                else:
                    done.add(step)
                    progress.update(task, completed=len(done))
        else:
            on_step = _LineProgress(screen)
        # dagster-dbt echoes every dbt log line to stdout; they go to the build log, not between the
        # progress lines (the progress keeps the screen it was given).
        try:
            with contextlib.redirect_stdout(log):
                outcome = run_build(
                    settings, start=first, end=last, on_step=on_step, reresolve=reresolve, full_refresh=full_refresh
                )
        except BuildRunningError as exc:
            err.print(f"[red]Build refused:[/red] {exc}")
            raise typer.Exit(3) from exc
    elapsed = time.monotonic() - started
    for line in outcome.recovered:
        console.print(f"  recovered: {line}", highlight=False)
    window = f"days {outcome.window[0] or '…'}..{outcome.window[1] or '…'} re-read" if outcome.window else "new data"
    if outcome.success:
        console.print(
            f"[green]Build succeeded[/green] in {elapsed:.1f}s: {outcome.assets_materialized} assets, "
            f"{window}, warehouse {settings.warehouse_path} (run {outcome.run_id[:8]})"
        )
    else:
        err.print(
            f"[red]Build failed[/red] after {elapsed:.1f}s (run {outcome.run_id[:8]}, {window}). "
            "The last good warehouse tables are unchanged for every step that failed."
        )
        for failure in outcome.failures:
            err.print(f"  [red]x[/red] {redact_secrets(failure)}", highlight=False)
        for check in outcome.failed_checks:
            detail = outcome.check_messages.get(check)
            err.print(
                f"  [red]x[/red] blocking check failed: {check}" + (f": {redact_secrets(detail)}" if detail else "")
            )
        err.print(f"  dbt's output of this build: {log_path}")
    for check in outcome.warned_checks:
        detail = outcome.check_messages.get(check)
        console.print(
            f"  [yellow]![/yellow] warning check: {check}" + (f": {detail}" if detail else ""), highlight=False
        )
    return outcome


@app.command()
def audit(
    config: Path = ConfigOption, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """Rows read = rows in raw + rows in quarantine + rows suppressed (erased persons) per entity, and every
    source file, page and table row checked against what was loaded; exits 1 when anything was lost or left unread."""
    from crm.ingest.audit import read_audit

    settings = _settings_or_exit(config)
    try:
        report = read_audit(settings)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red] Run `crm build` first.")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(report, default=str, indent=2))
    else:
        table = Table(
            "entity",
            "rows read",
            "in raw",
            "in quarantine",
            "suppressed",
            "share",
            "reconciled",
            "last day",
            title=f"Ingestion reconciliation ({settings.warehouse_path})",
        )
        for row in report["entities"]:
            table.add_row(
                row["entity"],
                f"{row['rows_read']:,}",
                f"{row['rows_in_raw']:,}",
                f"{row['rows_in_quarantine']:,}",
                f"{row.get('rows_suppressed') or 0:,}",
                f"{(row['quarantine_share'] or 0):.2%}",
                "[green]yes[/green]" if row["reconciled"] else "[red]NO[/red]",
                str(row["last_partition"] or "-"),
            )
        console.print(table)
        reasons = Table("entity", "reason", "rows", title="Quarantine reasons")
        for row in report["quarantine_reasons"]:
            reasons.add_row(row["entity"], row["reason"], f"{row['rows']:,}")
        console.print(reasons)
        findings = Table("source", "entity", "what", "status", "detail", title="Sources against what was loaded")
        for f in report["source_findings"]:
            status = f"[red]{f['status']}[/red]" if f["loss"] else f"[yellow]{f['status']}[/yellow]"
            findings.add_row(f["source"], f["entity"] or "-", f["what"], status, f["detail"])
        if report["source_findings"]:
            console.print(findings)
        else:
            console.print("[green]Every file, page and table row of the sources is loaded.[/green]")
    if not report["reconciled"]:
        raise typer.Exit(1)


@app.command()
def demo(
    customers: int = typer.Option(2_000, help="Size of the company generated when none exists."),
    serve: bool = typer.Option(True, help="Serve the dashboard after the build."),
    port: int = typer.Option(8501, help="Port for the dashboard."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build again even when the sources have not changed."),
) -> None:
    """Generate the small company if absent, build it unless an unchanged build exists, then serve the dashboard."""
    if serve:
        _port_free_or_exit("127.0.0.1", port)
    sales_db = DEFAULT_SOURCES / "sales" / "sales.sqlite"
    if not sales_db.exists():
        console.print(f"No company under {DEFAULT_SOURCES}: generating {customers:,} customers...")
        generate(
            customers=customers, seed=42, start=None, days=730, out=DEFAULT_SOURCES, truth_out=None, profile="full"
        )
    settings = _settings_or_exit(DEFAULT_CONFIG)
    _build_unless_unchanged(settings, DEFAULT_SOURCES, rebuild)
    _demo_users(settings)
    if serve:
        _serve_dashboard(settings, port)


def _sources_fingerprint(settings: Settings, sources: Path) -> str:
    """What the last demo build was made from: the config's text and every source file's path, size and mtime."""
    import hashlib

    digest = hashlib.sha256(settings.config_path.read_bytes())
    for path in sorted(p for p in sources.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(sources)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _build_unless_unchanged(settings: Settings, sources: Path, rebuild: bool) -> None:
    """Build, unless the last successful demo build was made from these very sources and its snapshot is current."""
    from crm.serving.snapshots import SnapshotError, current_snapshot

    marker = settings.data_dir / "demo_build.json"
    fingerprint = _sources_fingerprint(settings, sources)
    try:
        snapshot = current_snapshot(settings.data_dir)
        last = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}
    except (SnapshotError, ValueError):
        snapshot, last = None, {}
    if not rebuild and snapshot is not None and last.get("fingerprint") == fingerprint:
        console.print(
            f"Sources unchanged since the build of {snapshot.built_at:%Y-%m-%d %H:%M} UTC: serving it "
            "(`crm demo --rebuild` builds again)."
        )
        return
    outcome = _run_build(settings, None, None)
    if not outcome.success:
        raise typer.Exit(1)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "run_id": outcome.run_id}), encoding="utf-8")


def _port_free_or_exit(host: str, port: int) -> None:
    """Fail before any work when the dashboard's port is taken (Streamlit would only say so after the build)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # SO_REUSEADDR, as the server sets it: old TIME_WAIT connections are no conflict, a listener is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            err.print(
                f"[red]Port {port} on {host} is not available[/red] ({exc.strerror}): another program, perhaps "
                "a dashboard already running, listens there. Stop it or choose another port with --port."
            )
            raise typer.Exit(2) from exc


def _demo_users(settings: Settings) -> None:
    """One user per role with a fresh random password, printed once (the demo's only way in)."""
    from crm.security.users import add_user, generate_password, users_path

    path = users_path(settings.data_dir)
    table = Table("user", "role", "password", title=f"Demo users (passwords reset on every `crm demo`; {path})")
    rep_id = _first_rep_id(settings)
    for role in ("admin", "analyst", "marketer", "rep", "steward"):
        if role == "rep" and rep_id is None:
            continue
        password = generate_password()
        add_user(path, f"demo-{role}", role, password=password, rep_id=rep_id if role == "rep" else None, replace=True)
        table.add_row(f"demo-{role}", role + (f" (rep {rep_id})" if role == "rep" else ""), password)
    console.print(table)


def _first_rep_id(settings: Settings) -> int | None:
    """The rep with the largest book, so the demo rep has customers to look at."""
    try:
        with settings.connect_warehouse(read_only=True) as con:
            rows = con.execute(
                "SELECT owner_rep_id FROM marts.customer_360 WHERE owner_rep_id IS NOT NULL "
                "GROUP BY ALL ORDER BY count(*) DESC, owner_rep_id LIMIT 1"
            ).fetchall()
    except Exception:  # noqa: BLE001 - a demo without reps still gets the other users
        return None
    return int(rows[0][0]) if rows else None


def _serve_dagster(settings: Settings, port: int) -> None:
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-m",
        "pipelines.definitions",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    console.print(f"[bold]Dagster UI (asset graph, checks, runs, nightly schedule):[/bold] http://127.0.0.1:{port}")
    _run_until_stopped(command, _server_environment(settings))


def _serve_dashboard(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(PROJECT_ROOT / "app" / "streamlit_app.py"),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # Viewers see the kind of an error, not a traceback with the server's paths (that goes to the log).
        "--client.showErrorDetails",
        "type",
    ]
    _port_free_or_exit(host, port)
    console.print(f"[bold]Dashboard (reads the latest published snapshot):[/bold] http://{host}:{port}")
    _run_until_stopped(command, _server_environment(settings))


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _run_until_stopped(command: list[str], environment: dict[str, str]) -> None:
    console.print("Stop with Ctrl-C.")
    # Its own process group, so Ctrl-C or a SIGTERM stops the server and its children with it.
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, start_new_session=True)
    # A SIGTERM to `crm` (a service manager, a test) must stop the server too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        returncode = process.wait()
    except KeyboardInterrupt:
        returncode = 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    if returncode:
        err.print(f"[red]The server stopped with exit code {returncode}.[/red]")
        raise typer.Exit(returncode)


@app.command()
def dev(config: Path = ConfigOption, port: int = typer.Option(3000, help="Port for the Dagster UI.")) -> None:
    """Open the Dagster UI with the daemon, so the nightly schedule runs while it is up."""
    _serve_dagster(_settings_or_exit(config), port)


@app.command("app")
def serve_app(
    config: Path = ConfigOption,
    port: int = typer.Option(8501, help="Port for the dashboard."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for everyone)."),
) -> None:
    """Serve the Streamlit dashboard on the latest published snapshot (`crm build` publishes one)."""
    _serve_dashboard(_settings_or_exit(config), port, host)


app.add_typer(evaluate_app, name="evaluate", help="Measure identity matching against the simulator's ground truth.")
app.add_typer(users_app, name="users", help="Dashboard users: add (with a role), list, remove.")
app.command("erase")(erase_command)


@app.callback()
def _private_files() -> None:
    """Everything `crm` writes (warehouse, snapshots, exports, logs) is readable by its user only."""
    os.umask(0o077)


if __name__ == "__main__":
    app()
