"""Audit trail: who signed in, unmasked, exported or erased what (admins only), and its export."""

import streamlit as st

from app import data, ui
from app.format import count

st.title("Audit trail")
reader = ui.reader()
events = data.audit_events(reader)
st.caption(
    f"{count(events.height)} most recent events, newest first. The trail lives outside the snapshots "
    f"({data.data_dir() / 'audit'}), so rebuilds never touch it, and is readable by the service's user only."
)
actions = sorted(set(events["action"].drop_nulls()))
chosen = st.multiselect("Actions", actions, key="audit_actions")
shown = events.filter(data.pl.col("action").is_in(chosen)) if chosen else events
st.dataframe(shown, hide_index=True)
st.download_button(
    "Download the audit trail (CSV)",
    data=lambda: data.audit_csv(reader),
    key="download_audit",
    file_name="audit_trail.csv",
    mime="text/csv",
    on_click="ignore",
)
