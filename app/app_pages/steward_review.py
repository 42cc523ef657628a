"""Steward review: pairs of records identity resolution found alike but not alike enough to join.

A steward reads both records side by side with the evidence, and decides: the same person (merge)
or two people (keep apart). The decision goes to the steward decisions file and the audit trail
(crm.identity.steward); the next build's identity step applies it. The dashboard never writes the
build warehouse.
"""

import polars as pl
import streamlit as st

from app import data, ui
from app.format import count, share

st.title("Steward review")
ui.require_permission("steward", "identity review is for stewards")
reader = ui.reader()
directory = data.data_dir()

st.caption(
    "Pairs of source records that look like the same person but were not joined automatically. "
    "Your decision is applied by the next build (the nightly run or `crm build`), and recorded in the audit trail."
)

recorded = st.session_state.pop("steward_recorded", None)
if recorded:
    st.success(recorded)

pairs = ui.query(data.suspected_duplicates)
decisions = ui.call(data.steward_decisions, reader, directory)
decided = {
    frozenset((f"{d['left_source']}:{d['left_key']}", f"{d['right_source']}:{d['right_key']}")): d["action"]
    for d in decisions.iter_rows(named=True)
}

if pairs is None:
    st.info(
        "This build has no list of suspected duplicates: its identity resolution does not produce one "
        "(identity.suspected_duplicates is absent). Nothing to review here until it does."
    )
elif pairs.height == 0:
    st.success("No suspected duplicates: every pair of similar records was either joined or clearly apart.")
else:
    pending = pairs.filter(
        ~pl.struct("record_key_l", "record_key_r").map_elements(
            lambda p: frozenset((p["record_key_l"], p["record_key_r"])) in decided, return_dtype=pl.Boolean
        )
    )
    left, right = st.columns(2)
    left.metric(
        "Pairs to review",
        count(pending.height),
        help="Suspected duplicate pairs without a decision yet, most likely first"
        + (f" (the {count(pairs.height)} most likely are listed)." if pairs.height >= 200 else "."),
    )
    right.metric(
        "Decided, waiting for the next build",
        count(decisions.filter(~pl.col("applied")).height),
        help="Decisions recorded after the build that produced this data; the next build applies them.",
    )
    if pending.height == 0:
        st.success("Every listed pair has a decision.")
        st.stop()
    labels = {
        i: f"{row['name_l'] or '(no name)'} ↔ {row['name_r'] or '(no name)'} · "
        f"{share(row['match_probability'], 0)} alike"
        for i, row in enumerate(pending.iter_rows(named=True))
    }
    chosen = st.selectbox("Pair", list(labels), format_func=labels.get, key="steward_pair")
    pair = pending.row(chosen, named=True)
    sides = pl.DataFrame(
        {
            "side": ["Record A", "Record B"],
            "source": [
                data.SOURCE_NAMES.get(pair["source_l"], pair["source_l"]),
                data.SOURCE_NAMES.get(pair["source_r"], pair["source_r"]),
            ],
            "name": [pair["name_l"], pair["name_r"]],
            "email": [pair["email_l"], pair["email_r"]],
            "phone": [pair["phone_l"], pair["phone_r"]],
            "city": [pair["city_l"], pair["city_r"]],
            "customer_id": [pair["customer_id_l"], pair["customer_id_r"]],
        }
    )
    ui.table(ui.masked(sides), key="steward_sides")
    evidence = ui.masked_text(pair["evidence"])
    st.markdown(f"**Evidence** ({share(pair['match_probability'], 0)} match probability): {evidence or '–'}")
    with st.form("steward_decision", clear_on_submit=True, border=True):
        reason = st.text_input("Why (kept with the decision)", key="steward_reason")
        merge, apart = st.columns(2)
        merged = merge.form_submit_button("Same person: merge", type="primary", width="stretch")
        kept = apart.form_submit_button("Different people: keep apart", width="stretch")
    if merged or kept:
        # Recorded under the signed-in steward's name and role (the audit trail says who decided).
        ui.call(
            data.record_steward_decision,
            reader,
            directory,
            action="merge" if merged else "split",
            left=data.split_record_key(pair["record_key_l"]),
            right=data.split_record_key(pair["record_key_r"]),
            reason=reason.strip() or ("same person" if merged else "different people"),
        )
        st.session_state["steward_recorded"] = (
            f"Recorded: {'merge' if merged else 'keep apart'} {labels[chosen].split(' · ')[0]}. "
            "The next build applies it."
        )
        st.rerun()

st.subheader("Decisions recorded")
if decisions.height == 0:
    st.caption("No decisions recorded yet.")
else:
    shown = decisions.select(
        pl.when(pl.col("applied"))
        .then(pl.lit("applied"))
        .otherwise(pl.lit("waits for the next build"))
        .alias("status"),
        pl.col("requested_at").alias("decided at (UTC)"),
        pl.col("requested_by").alias("by"),
        pl.col("action").replace({"merge": "merge", "split": "keep apart"}).alias("decision"),
        (pl.col("left_source") + ":" + pl.col("left_key")).alias("record A"),
        (pl.col("right_source") + ":" + pl.col("right_key")).alias("record B"),
        pl.col("reason"),
    )
    st.dataframe(ui.masked(shown), hide_index=True, placeholder=ui.MISSING)
