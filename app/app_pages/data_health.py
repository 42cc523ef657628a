"""Data health: is the data fresh (per source, against the expectations in the config), did the last
build succeed, which checks failed, what was quarantined and where it is in the source files, has
the scored population drifted from the model's training, and what identity resolution did."""

from datetime import UTC, datetime

import altair as alt
import polars as pl
import streamlit as st

from app import charts, data, ui
from app.format import count

ENTITY_LABELS = {
    "sales_reps": "Sales reps",
    "sales_accounts": "Accounts",
    "sales_contacts": "Sales contacts",
    "sales_products": "Products",
    "sales_opportunities": "Opportunities",
    "sales_opportunity_stages": "Opportunity stages",
    "sales_orders": "Orders",
    "sales_order_lines": "Order lines",
    "marketing_campaigns": "Campaigns",
    "marketing_contacts": "Marketing contacts",
    "marketing_events": "Marketing events",
    "support_tickets": "Support tickets",
}
STATUS = {
    "ok": "fresh",
    "warn": "LATE",
    "error": "STALE",
    "no expectation": "no expectation set",
    "no data": "no data",
}
SEVERITY = {"error": 0, "warn": 1, "no data": 2, "ok": 3, "no expectation": 4}


def entity_label(name: str) -> str:
    return ENTITY_LABELS.get(name, name.replace("_", " ").capitalize())


def expectation(row: dict) -> str:
    parts = []
    if row["warn_after_days"] is not None:
        parts.append(f"late after {row['warn_after_days']} d")
    if row["error_after_days"] is not None:
        parts.append(f"stale after {row['error_after_days']} d")
    return ", ".join(parts) or "–"


st.title("Data health")
reader = ui.reader()
snapshot = reader.snapshot
now = datetime.now(UTC)
today = now.date()

runs = ui.query(data.recent_runs)
checks = ui.query(data.check_results)
failed = checks.filter(~pl.col("passed"))
freshness = ui.query(data.source_freshness, today)

age_hours = (now - snapshot.built_at).total_seconds() / 3600
columns = st.columns(4)
columns[0].metric(
    "Data refreshed",
    f"{snapshot.built_at:%d %b %H:%M}",
    help=f"When the build that produced what every page shows finished: {age_hours:,.0f} hours ago (UTC).",
)
publishing = runs.filter(pl.col("run_id") == snapshot.run_id)
latest = publishing if publishing.height else runs.head(1)
columns[1].metric(
    "Last build",
    {"Published this snapshot": "Published"}.get(latest["outcome"][0], latest["outcome"][0]) if latest.height else "–",
    help="The build that published this data. It was still finishing (re-exporting saved segments) when it "
    "recorded the list of runs, so it shows as the one that published, not yet as succeeded.",
)
columns[2].metric(
    "Checks passed",
    f"{count(checks.height - failed.height)} / {count(checks.height)}",
    help="Data quality checks of that build. A failing check of severity ERROR stops publishing, so what is "
    "shown here passed every blocking check.",
)
late = freshness.filter(pl.col("status").is_in(["warn", "error"])) if freshness is not None else pl.DataFrame()
columns[3].metric(
    "Sources late or stale",
    count(late.height),
    help="Source tables whose newest data is older than the config's expectation (freshness: warn_after_days, "
    "error_after_days on each source).",
)

st.subheader("Freshness per source")
if freshness is None:
    st.info("No ingestion ledger in this data: it was built without the ingestion step.")
else:
    rows = freshness.with_columns(
        pl.col("entity").map_elements(entity_label, return_dtype=pl.String).alias("table"),
        pl.col("status").replace_strict(SEVERITY, default=5).alias("_severity"),
    ).sort("_severity", "source", "entity", nulls_last=True)
    shown = pl.DataFrame(
        {
            "Source": [r["source"] or "not configured" for r in rows.iter_rows(named=True)],
            "Table": rows["table"].to_list(),
            "Status": [STATUS.get(s, s) for s in rows["status"]],
            "Newest data": rows["last_partition"].to_list(),
            "Age (days)": rows["age_days"].to_list(),
            "Expected": [expectation(r) for r in rows.iter_rows(named=True)],
            "Rows read": rows["rows_read"].to_list(),
            "Quarantined": rows["rows_in_quarantine"].to_list(),
            "Quarantine share": rows["quarantine_share"].to_list(),
            "Books balance": ["yes" if r else "NO" for r in rows["reconciled"]],
        }
    )
    st.dataframe(
        shown,
        hide_index=True,
        placeholder=ui.MISSING,
        column_config={
            "Newest data": st.column_config.DateColumn(format="D MMM YYYY", help="The newest day with rows."),
            "Age (days)": st.column_config.NumberColumn(help=f"Days from the newest data to today ({today:%d %b %Y})."),
            "Quarantine share": st.column_config.NumberColumn(format="percent"),
            "Books balance": st.column_config.Column(help="Rows read = rows in the warehouse + rows quarantined."),
            "Rows read": st.column_config.NumberColumn(format="%,d"),
            "Quarantined": st.column_config.NumberColumn(format="%,d"),
        },
    )
    if late.height:
        # Stale (past the error threshold) before late, then the oldest; ties are counted, not hidden.
        ranked = rows.filter(pl.col("status").is_in(["warn", "error"])).sort(
            ["_severity", "age_days"], descending=[False, True]
        )
        worst = ranked.row(0, named=True)
        ties = ranked.filter(
            (pl.col("_severity") == worst["_severity"]) & (pl.col("age_days") == worst["age_days"])
        ).height
        stale = late.filter(pl.col("status") == "error").height
        st.warning(
            f"{count(late.height)} table(s) behind their expectation ({count(stale)} stale, "
            f"{count(late.height - stale)} late). Most overdue: {worst['table']} ({worst['source']})"
            + (f" and {count(ties - 1)} more as old" if ties > 1 else "")
            + f", nothing newer than {worst['last_partition']:%d %b %Y} ({count(worst['age_days'])} days)."
        )
    absent = freshness.filter(pl.col("status") == "no data")
    if absent.height:
        configured = [entity_label(e) for e, s in zip(absent["entity"], absent["source"], strict=True) if s]
        missing = [entity_label(e) for e, s in zip(absent["entity"], absent["source"], strict=True) if not s]
        parts = []
        if configured:
            parts.append(f"configured but empty: {', '.join(configured)}")
        if missing:
            parts.append(f"not in the config (the company has no such source): {', '.join(missing)}")
        st.caption("No data at all for " + "; ".join(parts) + ". Pages that need them say so.")
    unbalanced = freshness.filter(~pl.col("reconciled"))
    if unbalanced.height:
        st.error(f"Rows read ≠ rows loaded + quarantined for: {', '.join(map(entity_label, unbalanced['entity']))}")

st.subheader("Builds")
if runs.height == 0:
    st.caption("No runs were recorded with this data.")
else:
    st.dataframe(
        runs.select(
            pl.col("outcome").alias("Outcome"),
            pl.col("job_name").str.replace_all("_", " ").alias("Job"),
            pl.col("started_at").alias("Started (UTC)"),
            pl.col("ended_at").alias("Ended (UTC)"),
            ((pl.col("ended_at") - pl.col("started_at")).dt.total_seconds() / 60).round(1).alias("Minutes"),
        ),
        hide_index=True,
        placeholder=ui.MISSING,
        column_config={
            "Started (UTC)": st.column_config.DatetimeColumn(format="D MMM YYYY HH:mm"),
            "Ended (UTC)": st.column_config.DatetimeColumn(format="D MMM YYYY HH:mm"),
        },
    )

# What the sources cannot tell (crm/coverage.py writes ops.source_coverage; crm/scoring writes
# ml.scoring_notes): absent systems and what the scores left out or fell back on because of them.
absent = ui.query(data.missing_capabilities)
if absent is not None and absent.height:
    st.subheader("What these sources cannot tell")
    st.warning(f"{count(absent.height)} thing(s) cannot be computed from the configured sources.")
    st.markdown("\n".join(f"- **{row['capability']}**: {row['missing_cost']}" for row in absent.iter_rows(named=True)))
notes = ui.query(data.scoring_notes)
if notes is not None and notes.height:
    with st.expander("What the scores left out or fell back on"):
        st.dataframe(notes, hide_index=True)

st.subheader("Quality checks")
check_columns = {
    "asset_key": "Step",
    "check_name": "Check",
    "passed": "Passed",
    "severity": "Severity",
    "description": "What it says",
    "evaluated_at": st.column_config.DatetimeColumn("When (UTC)", format="D MMM HH:mm"),
}
if checks.height == 0:
    st.caption("No checks were recorded with this data.")
else:
    if failed.height:
        st.warning(f"{count(failed.height)} check(s) did not pass (severity WARN: they do not block publishing).")
        st.dataframe(failed, hide_index=True, column_config=check_columns, placeholder=ui.MISSING)
    else:
        st.success(f"All {count(checks.height)} checks passed.")
    # Lazy expanders: their content runs and is sent only once the reader opens them.
    box = st.expander(f"All {count(checks.height)} check results", key="all_checks", on_change="rerun")
    if box.open:
        box.dataframe(checks, hide_index=True, column_config=check_columns, placeholder=ui.MISSING)

st.subheader("Quarantined rows")
reasons = ui.query(data.quarantine_reasons)
if reasons.height == 0:
    st.success("Nothing quarantined.")
else:
    top = reasons.head(15).with_columns(
        pl.col("entity").map_elements(entity_label, return_dtype=pl.String).alias("table"),
        pl.when(pl.col("reason").str.len_chars() > 70)
        .then(pl.col("reason").str.slice(0, 67) + "…")
        .otherwise(pl.col("reason"))
        .alias("short_reason"),
    )
    ui.chart(
        st,
        lambda: charts.hbar(
            top,
            x="rows",
            y="short_reason",
            title=f"Why rows were quarantined ({count(reasons['rows'].sum())} rows; top {top.height} reasons)",
            x_title="rows quarantined",
            color="table",
            tooltip=[
                alt.Tooltip("table:N", title="table"),
                alt.Tooltip("reason:N", title="reason"),
                alt.Tooltip("rows:Q", title="rows", format=",.0f"),
            ],
        ),
        top,
    )
    samples = ui.query(data.quarantine_samples)
    st.markdown("**Examples to look at** (up to three rows per reason, where they are in the source)")
    st.dataframe(
        ui.masked(samples).with_columns(pl.col("entity").map_elements(entity_label, return_dtype=pl.String)),
        hide_index=True,
        placeholder=ui.MISSING,
        column_config={
            "entity": "Table",
            "location": st.column_config.Column("Where (file:line or table:key)"),
            "field": "Field",
            "reason": "Reason",
        },
    )

st.subheader("Model drift")
drift = ui.query(data.model_drift)
if drift is None or drift.height == 0:
    st.caption("No drift figures: the scores have not been computed with a current model yet.")
else:
    worst = drift.row(0, named=True)
    verdict = (
        "large shift: retrain the model or check the data"
        if worst["psi"] > 0.25
        else "some shift: keep an eye on it"
        if worst["psi"] > 0.1
        else "stable"
    )
    st.caption(
        f"How far the customers scored on {worst['scored_as_of']:%d %b %Y} differ from those the current model "
        f"learned from (population stability index: under 0.1 stable, 0.1–0.25 some shift, over 0.25 large). "
        f"Largest: {worst['description'] or worst['feature']} ({worst['psi']:.2f}, {verdict})."
    )
    st.dataframe(
        drift.with_columns(
            pl.when(pl.col("psi") > 0.25)
            .then(pl.lit("LARGE SHIFT"))
            .when(pl.col("psi") > 0.1)
            .then(pl.lit("some shift"))
            .otherwise(pl.lit("stable"))
            .alias("verdict"),
            pl.coalesce("description", pl.col("feature").str.replace_all("_", " ")).alias("description"),
        ).select("description", "psi", "verdict"),
        hide_index=True,
        placeholder=ui.MISSING,
        column_config={
            "description": "What is measured",
            "psi": st.column_config.NumberColumn("Stability index", format="%.3f"),
            "verdict": "Verdict",
        },
    )

st.subheader("Identity resolution")
identity = ui.query(data.identity_summary)
if identity is None:
    st.info("No identity resolution tables in this data.")
    st.stop()
customers = snapshot.row_counts.get("marts.customer_360")
records = int(identity["records"].sum()) if identity.height else 0
sizes = ui.query(data.identity_cluster_sizes)
joined = int(sizes.filter(pl.col("records") > 1)["customers"].sum()) if sizes is not None else None
largest = int(sizes["largest"].max()) if sizes is not None and sizes.height else None
suspects = ui.query(data.suspected_duplicates_count)
columns = st.columns(4)
columns[0].metric("Source records", count(records), help="Contacts, marketing addresses and tickets read.")
columns[1].metric(
    "Customers",
    count(customers),
    help=f"On average {records / customers:.1f} records per customer." if customers and records else None,
)
columns[2].metric(
    "Customers joined from 2+ records",
    count(joined),
    help="Customers whose records in different systems (or duplicates within one) were recognised as one person.",
)
columns[3].metric(
    "Suspected duplicates",
    "not listed" if suspects is None else count(suspects),
    help="Pairs that look alike but were not joined automatically: review them on the Steward review page."
    if suspects is not None
    else "This build's identity resolution does not list suspected duplicates.",
)
if customers and records:
    st.caption(
        f"{count(records)} records from {identity.height} source tables describe {count(customers)} customers: "
        f"{count(joined)} customers were found in more than one record"
        + (f", the largest made of {count(largest)} records" if largest else "")
        + ". By source:"
    )
st.dataframe(
    identity.with_columns(pl.col("source").replace(data.SOURCE_NAMES)),
    hide_index=True,
    placeholder=ui.MISSING,
    column_config={
        "source": "Source",
        "records": st.column_config.NumberColumn("Records", format="%,d"),
        "customers": st.column_config.NumberColumn("Customers", format="%,d"),
        "matched_deterministically": st.column_config.NumberColumn("Joined by the same email or phone", format="%,d"),
        "matched_probabilistically": st.column_config.NumberColumn("Joined by likeness (model)", format="%,d"),
    },
)
if sizes is not None and sizes.height:
    ui.chart(
        st,
        lambda: charts.vbar(
            sizes.with_columns(
                pl.when(pl.col("records") >= 10)
                .then(pl.lit("10+"))
                .otherwise(pl.col("records").cast(pl.String))
                .alias("records per customer")
            ),
            x="records per customer",
            y="customers",
            title="Customers by the number of source records behind them",
            y_title="customers",
            x_title="records per customer",
            order=[str(i) for i in range(1, 10)] + ["10+"],
            height=260,
        ),
        sizes,
    )
box = st.expander(
    "The largest customers by records (check that they are one person)", key="clusters", on_change="rerun"
)
if box.open:
    clusters = ui.query(data.identity_largest_clusters)
    if clusters is not None:
        box.dataframe(
            clusters.select("customer_id", "full_name", "records", "sources", "emails", "phones", "surnames"),
            hide_index=True,
            placeholder=ui.MISSING,
            column_config={
                "customer_id": "Customer id",
                "full_name": "Name",
                "records": "Records",
                "sources": "Sources",
                "emails": "Different emails",
                "phones": "Different phones",
                "surnames": "Different surnames",
            },
        )
guarded = ui.query(data.guarded_values)
if guarded is not None and guarded.height:
    box = st.expander(f"{count(guarded.height)} values too common to link people by", key="guarded", on_change="rerun")
    if box.open:
        box.caption(
            "Shared by so many records (a switchboard, a role mailbox) that identity resolution did not join "
            "through them."
        )
        with box:
            ui.table(ui.masked(guarded), key="guarded_values")
box = st.expander("Recent customer id merges and splits", key="id_changes", on_change="rerun")
if box.open:
    changes = ui.query(data.identity_changes)
    if changes is None or changes.height == 0:
        box.caption("None recorded.")
    else:
        with box:
            ui.table(changes.drop("run_id", strict=False), key="identity_changes")
