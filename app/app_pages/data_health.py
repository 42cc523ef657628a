"""Data health: last run and snapshot, freshness per source, check results, quarantine, identity resolution."""

import plotly.express as px
import polars as pl
import streamlit as st

from app import data, ui
from app.format import count, share

st.title("Data health")
reader = ui.reader()
snapshot = reader.snapshot

last_run = ui.query(data.last_successful_run)
checks = ui.query(data.check_results)
failed = checks.filter(~pl.col("passed"))
columns = st.columns(4)
columns[0].metric(
    "Snapshot built",
    f"{snapshot.built_at:%d %b %H:%M}",
    help=f"snapshot {snapshot.snapshot_id}, {snapshot.built_at:%Y-%m-%d %H:%M} UTC",
)
columns[1].metric(
    "Last successful run",
    f"{last_run['finished_or_started_at']:%d %b %H:%M}" if last_run else "–",
    help="The newest run that finished successfully; the run that published this snapshot "
    "counts, since publishing is its last step." + (f" Run {last_run['run_id']}." if last_run else ""),
)
columns[2].metric("Checks passed", f"{count(checks.height - failed.height)} / {count(checks.height)}")
columns[3].metric(
    "Checks failing",
    count(failed.height),
    help="Failing checks of severity WARN; a failing ERROR check stops publishing.",
)
with st.expander("Recent runs"):
    st.dataframe(ui.query(data.recent_runs), hide_index=True)

st.subheader("Freshness and reconciliation per source")
freshness = ui.query(data.source_freshness)
if freshness is None:
    st.info("No ingestion ledger in this snapshot: it was built without the ingestion step.")
else:
    st.dataframe(
        freshness,
        hide_index=True,
        column_config={"quarantine_share": st.column_config.NumberColumn("quarantine share", format="percent")},
    )
    unreconciled = freshness.filter(~pl.col("reconciled"))
    if unreconciled.height:
        st.error(f"Rows read ≠ raw + quarantine for: {', '.join(unreconciled['entity'])}")

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

st.subheader("Asset checks")
if checks.height == 0:
    st.caption("No checks were recorded with this snapshot.")
else:
    if failed.height:
        st.warning(f"{count(failed.height)} check(s) did not pass.")
        st.dataframe(failed, hide_index=True)
    with st.expander(f"All {count(checks.height)} check results"):
        st.dataframe(checks, hide_index=True)

st.subheader("Quarantined rows by reason")
reasons = ui.query(data.quarantine_reasons)
if reasons.height == 0:
    st.success("Nothing quarantined.")
else:
    st.plotly_chart(
        px.bar(
            reasons.head(20),
            x="rows",
            y="reason",
            color="entity",
            orientation="h",
            labels={"reason": ""},
            title="Top quarantine reasons",
        )
    )
    st.dataframe(reasons, hide_index=True)

st.subheader("Identity resolution")
identity = ui.query(data.identity_summary)
if identity is None:
    st.info("No identity resolution tables in this snapshot.")
    st.stop()
st.dataframe(identity, hide_index=True)
customers = snapshot.row_counts.get("marts.customer_360")
records = identity["records"].sum() if identity.height else 0
if customers and records:
    st.caption(
        f"{count(records)} source records resolved into {count(customers)} customers"
        f": {share(1 - customers / records)} of records were another record's duplicate."
    )
with st.expander("Recent id merges and splits"):
    st.dataframe(ui.query(data.identity_changes), hide_index=True)
