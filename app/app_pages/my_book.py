"""My book: a rep picks themselves and sees their customers ranked by the action to take, with reasons."""

import streamlit as st

from app import data, ui
from app.format import money

st.title("My book")
reader = ui.reader()
reps = ui.query(data.reps)
if reps.height == 0:
    st.info("No sales reps in this snapshot.")
    st.stop()
labels = {
    row["rep_id"]: f"{row['rep_name']} ({row['region'] or 'no region'}, {row['book_size']:,} customers)"
    for row in reps.iter_rows(named=True)
}
rep_id = st.selectbox("I am", list(labels), format_func=labels.get, key="rep_pick")
book = ui.query(data.rep_book, rep_id)
if book is None:
    st.info(data.NO_SCORES)
    st.stop()
if book.height == 0:
    st.info("No actions for this rep today.")
    st.stop()

urgent = book.filter(data.pl.col("action_priority") == 1)
left, middle, right = st.columns(3)
left.metric("Customers to act on", f"{book.height:,}")
middle.metric("Most urgent", f"{urgent.height:,}")
right.metric("Value at stake", money(book["value_at_stake"].sum()))
st.dataframe(
    book,
    hide_index=True,
    column_config={
        "value_at_stake": st.column_config.NumberColumn("value at stake", format="£%.0f"),
        "clv_12m": st.column_config.NumberColumn("CLV 12m", format="£%.0f"),
        "churn_probability": st.column_config.ProgressColumn(
            "churn risk", min_value=0.0, max_value=1.0, format="percent"
        ),
    },
)
st.download_button(
    "Download my list (CSV)",
    data=lambda: data.rep_book_csv(reader, rep_id),
    key="download_book",
    file_name=f"actions_{rep_id}.csv",
    mime="text/csv",
    on_click="ignore",
)
