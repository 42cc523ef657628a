"""My book: a rep picks themselves and sees the customers to call, ranked by value at stake, with
phone, email, last order, the action and why, and a link to each customer's card."""

import polars as pl
import streamlit as st

from app import data, glossary, ui
from app.format import count, money

BOOK_COLUMNS = (
    "rank_in_book",
    "card",
    "customer_name",
    "phone",
    "email",
    "next_action",
    "reason",
    "value_at_stake",
    "churn_probability",
    "last_order_at",
    "clv_12m",
    "loyalty_tier",
)

st.title("My book")
reader = ui.reader()
reps = ui.query(data.reps)
if reps.height == 0:
    st.info("No sales reps in this data.")
    st.stop()
labels = {
    row["rep_id"]: f"{row['rep_name']} ({row['region'] or 'no region'}): {count(row['to_act_on'])} to act on, "
    f"{count(row['in_book'])} customers in the book"
    for row in reps.iter_rows(named=True)
}
rep_id = st.selectbox("I am", list(labels), format_func=labels.get, key="rep_pick")
book = ui.query(data.rep_book, str(rep_id))
if book is None:
    st.info(data.NO_SCORES)
    st.stop()
if book.height == 0:
    st.info("No customers in this book yet: customers get an action once they have ordered and been scored.")
    st.stop()

to_act_on = book.filter(pl.col("actionable"))
rest = book.filter(~pl.col("actionable"))
urgent = to_act_on.filter(pl.col("action_priority") <= 2)
left, middle, right = st.columns(3)
left.metric(
    "Customers to act on",
    count(to_act_on.height),
    help=f"Customers in your book with at least £1 at stake, of {count(book.height)} in the book. The other "
    f"{count(rest.height)} have nothing at stake today (listed below the table).",
)
middle.metric("Most urgent", count(urgent.height), help="Retention calls for valuable customers at high churn risk.")
right.metric(
    "Value at stake",
    money(to_act_on["value_at_stake"].sum()),
    help=glossary.describe("value_at_stake") + " Summed over the customers to act on.",
)


def with_card_links(frame: pl.DataFrame) -> pl.DataFrame:
    """A link per row to the customer's card (the Customers page opens it from the query string)."""
    return frame.with_columns(("customers?customer=" + pl.col("customer_id")).alias("card"))


column_config = {
    "rank_in_book": st.column_config.NumberColumn("#", format="%d"),
    "card": st.column_config.LinkColumn("Card", display_text="open", help="The customer's card (new tab)."),
    "customer_name": st.column_config.Column("Customer"),
    "phone": st.column_config.TextColumn("Phone", width=135),
    "email": st.column_config.TextColumn("Email", width="medium"),
    "value_at_stake": ui.money_column("value_at_stake"),
    "clv_12m": ui.money_column("clv_12m"),
    "churn_probability": ui.share_column("churn_probability"),
    "last_order_at": st.column_config.DateColumn("Last order", format="D MMM YYYY"),
}
shown = ui.masked(with_card_links(to_act_on)).select(BOOK_COLUMNS)
ui.table(shown, column_config=column_config, key="book_table")
if not ui.show_pii():
    st.caption("Phones and emails are masked: switch them on in the sidebar to call or write.")

pick, go = st.columns([3, 1])
names = {
    row["customer_id"]: f"{row['rank_in_book']}. {row['customer_name'] or row['customer_id']}"
    for row in to_act_on.iter_rows(named=True)
}
if names:
    chosen = pick.selectbox("Open a customer's card", list(names), format_func=names.get, key="book_open_pick")
    if go.button("Open card", key="book_open", width="stretch"):
        st.switch_page("app_pages/customers.py", query_params={"customer": chosen})

st.download_button(
    f"Download my {count(to_act_on.height)} customers to act on (CSV)",
    data=lambda: data.rep_book_csv(reader, str(rep_id), include_contacts=ui.show_pii()),
    key="download_book",
    file_name=f"my_book_{rep_id}.csv",
    mime="text/csv",
    on_click="ignore",
)

if rest.height:
    # Lazy: the content runs and is sent only once the reader opens it.
    box = st.expander(
        f"{count(rest.height)} customers with nothing at stake today", key="book_rest_open", on_change="rerun"
    )
    if box.open:
        with box:
            ui.table(
                ui.masked(with_card_links(rest)).select(BOOK_COLUMNS),
                column_config=column_config,
                key="book_rest",
            )
