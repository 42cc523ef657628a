"""What a company's sources let the pipeline compute, and what each missing entity costs.

One table of capabilities, read by `crm check` (before a build), by ingestion (which writes the
answer for the built warehouse to ``ops.source_coverage``, shown on the Data health page) and by
the scores (which leave out what cannot be computed; crm/scoring). A company with only an orders
file gets customers, RFM, cohorts and scores; everything else is named here as absent, with its cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl


@dataclass(frozen=True)
class Capability:
    name: str
    needs: tuple[str, ...]  # every one of these entities must have rows
    cost_when_missing: str
    any_of: tuple[str, ...] = ()  # ... and at least one of these


CAPABILITIES: tuple[Capability, ...] = (
    Capability(
        "customers, orders, RFM and cohorts",
        ("sales_orders",),
        "no orders: no customer has purchases, so there is no RFM, no cohort, no score",
    ),
    Capability(
        "churn risk, 12-month value and loyalty tiers",
        ("sales_orders",),
        "no orders: nothing to score",
    ),
    Capability(
        "names, emails and phones of customers",
        (),
        "customers are known only by the order file's customer reference: no names to search, no contact "
        "details in exports, no matching of one person across systems",
        any_of=("sales_contacts", "marketing_contacts", "support_tickets"),
    ),
    Capability(
        "B2B/B2C segment and payment terms",
        ("sales_accounts",),
        "no accounts: every customer gets the default segment and the payment-terms feature is left out of "
        "the churn model",
    ),
    Capability(
        "sales reps' books and rep performance",
        ("sales_reps",),
        "no reps: no per-rep action lists and no rep performance page",
    ),
    Capability(
        "products and order lines",
        ("sales_order_lines",),
        "no order lines: no product or category breakdown",
    ),
    Capability(
        "sales pipeline (opportunities)",
        ("sales_opportunities",),
        "no opportunities: no pipeline figures for reps",
    ),
    Capability(
        "marketing engagement (opens, clicks) and campaign results",
        ("marketing_events",),
        "no marketing events: engagement features are left out of the churn model, loyalty's engagement counts "
        "recency only, and the campaign pages are empty",
    ),
    Capability(
        "marketing consent for segment exports",
        ("marketing_contacts",),
        "no marketing contacts: nobody has a recorded email or SMS consent, so channel exports leave everyone out",
    ),
    Capability(
        "support experience (tickets, resolution, satisfaction)",
        ("support_tickets",),
        "no support tickets: support features are left out of the churn model, loyalty's satisfaction component "
        "is dropped (its weight re-normalised), the service-recovery action is skipped and the support page is empty",
    ),
)

# Which source domain each model feature / component / action field needs (crm/scoring leaves out
# what the warehouse has no data for; the model card and Data health say which and why).
DOMAIN_ENTITIES = {
    "orders": ("sales_orders",),
    "marketing": ("marketing_events",),
    "support": ("support_tickets",),
    "accounts": ("sales_accounts",),
}


def coverage(present: set[str]) -> list[dict]:
    """One row per capability: available or not, what it needs, and what its absence costs."""
    rows = []
    for capability in CAPABILITIES:
        available = all(e in present for e in capability.needs) and (
            not capability.any_of or any(e in present for e in capability.any_of)
        )
        needs = list(capability.needs) + ([" or ".join(capability.any_of)] if capability.any_of else [])
        rows.append(
            {
                "capability": capability.name,
                "available": available,
                "needs": ", ".join(needs),
                "missing_cost": None if available else capability.cost_when_missing,
            }
        )
    return rows


def entities_with_rows(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Entities whose raw table holds at least one row in this warehouse."""
    tables = [
        r[0]
        for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'").fetchall()
    ]
    return {
        t for t in tables if con.execute(f'SELECT count(*) > 0 FROM (SELECT 1 FROM raw."{t}" LIMIT 1)').fetchone()[0]
    }


def write_coverage(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """``ops.source_coverage``: per capability whether this warehouse can compute it, and if not, what
    its absence costs (the Data health page shows it)."""
    present = entities_with_rows(con)
    frame = pl.DataFrame(coverage(present), schema_overrides={"missing_cost": pl.String})
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.register("_coverage", frame.to_arrow())
    try:
        con.execute("CREATE OR REPLACE TABLE ops.source_coverage AS SELECT * FROM _coverage")
    finally:
        con.unregister("_coverage")
    return frame
