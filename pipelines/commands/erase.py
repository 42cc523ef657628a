"""`crm erase --email X | --phone X | --customer-id X [--reason TEXT]`: erase one person (GDPR Art. 17).

The work is crm.security.erasure.erase_person; this prints what was touched. It exits 1 when a
file under the data folder still holds the person afterwards (naming it), 2 when the request
cannot be carried out (nobody matches, an address shared by several customers, a build running).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crm.config import ConfigError
from crm.security.erasure import ErasureError, erase_person
from crm.settings import load_settings

console = Console()
err = Console(stderr=True)


def erase(
    email: str = typer.Option(None, help="The person's email address."),
    phone: str = typer.Option(None, help="The person's phone number (any format)."),
    customer_id: str = typer.Option(None, "--customer-id", help="Their customer id (C000000123)."),
    reason: str = typer.Option("", help="Why (e.g. the request's reference); kept in the audit trail."),
    all_matching: bool = typer.Option(
        False, "--all-matching", help="Erase every customer the address or number belongs to (a shared mailbox)."
    ),
    config: Path = typer.Option(None, "--config", "-c", help="Sources config (default: $CRM_CONFIG or the demo)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Erase one person from raw, quarantine, identity, marts, scores, snapshots, exports, Dagster's
    storage and the logs; record a suppression entry (salted hashes) so no later load brings them back."""
    try:
        settings = load_settings(config)
        report = erase_person(
            settings,
            email=email,
            phone=phone,
            customer_id=customer_id,
            reason=reason,
            allow_several=all_matching,
        )
    except (ErasureError, ConfigError) as exc:
        err.print(f"[red]Not erased:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(report.__dict__, default=str, indent=2))
    else:
        console.print(
            f"[bold]Erasure {report.request_id}[/bold]: {len(report.customer_ids)} customer(s) "
            f"({', '.join(report.customer_ids) or 'none resolved'})"
        )
        table = Table("where", "rows or replacements", title="What was touched")
        for place, rows in sorted(report.rows_deleted.items()):
            table.add_row(place, f"{rows:,} rows deleted")
        for place, replaced in sorted(report.files_scrubbed.items()):
            table.add_row(place, f"{replaced:,} values replaced")
        for place in report.files_removed:
            table.add_row(place, "file removed")
        console.print(table)
        if report.snapshot_published:
            console.print(
                f"new snapshot {report.snapshot_published}; removed: {', '.join(report.snapshots_removed) or 'none'}"
            )
        console.print(f"saved segments re-exported: {report.exports_regenerated}")
        console.print("suppression list updated: the next loads drop this person's rows (counted as suppressed)")
        for warning in report.warnings:
            console.print(f"[yellow]![/yellow] {warning}")
    if report.remaining:
        err.print("[red]Still found after erasure:[/red]")
        for place in report.remaining:
            err.print(f"  {place}")
        raise typer.Exit(1)
