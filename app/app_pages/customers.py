"""Customers: search by name, email, phone or id; the 360 card and one time line of everything they did."""

import streamlit as st

from app import data, ui
from app.format import count, money, share

st.title("Customers")
reader = ui.reader()
text = st.text_input(
    "Search by name, email, phone or customer id",
    key="customer_search",
    placeholder="e.g. Smith, jane@, 7700 900, C000123",
)
if not text.strip():
    st.caption("Type at least part of a name, an email, a phone number or a customer id.")
    st.stop()

matches = ui.call(data.search_customers, reader, text)
if matches.height == 0:
    st.warning(f"No customer matches “{text}”.")
    st.stop()
st.caption(
    f"{count(matches.height)} match{'es' if matches.height != 1 else ''}"
    + (" (first 25 shown)" if matches.height == 25 else "")
)
st.dataframe(ui.masked(matches), hide_index=True)

labels = {
    row["customer_id"]: f"{row['full_name'] or '(no name)'} · {row['customer_id']}"
    for row in matches.iter_rows(named=True)
}
customer_id = st.selectbox("Customer", list(labels), format_func=labels.get, key="customer_pick")
card = ui.call(data.customer_card, reader, customer_id)
if card is None:
    st.error(f"Customer {customer_id} is not in this snapshot.")
    st.stop()
card = ui.masked_record(card)

st.subheader(card["full_name"] or customer_id)
columns = st.columns(4)
columns[0].metric("Lifetime revenue", money(card["revenue_lifetime"]))
columns[1].metric("Orders", count(card["orders_lifetime"]))
columns[2].metric("Days since last order", count(card["days_since_last_order"]))
columns[3].metric("RFM segment", card.get("rfm_segment") or "no orders")

who, consent, scores = st.columns(3)
with who:
    st.markdown("**Golden record** (winning source in brackets)")
    for field in ("first_name", "last_name", "email", "phone", "city", "postcode"):
        st.markdown(f"- {field.replace('_', ' ')}: {card[field] or '–'} ({card.get(field + '_source') or '–'})")
    st.markdown(f"- account: {card['account_name'] or '–'} ({card['segment']})")
    st.markdown(f"- owner: {card['owner_rep_name'] or 'unassigned'}")
with consent:
    st.markdown("**Consent**")
    st.markdown(
        f"- email: {'yes' if card['email_consent'] else 'no'}"
        + (f" (since {card['email_consent_at']:%Y-%m-%d})" if card["email_consent_at"] else "")
    )
    st.markdown(
        f"- sms: {'yes' if card['sms_consent'] else 'no'}"
        + (f" (since {card['sms_consent_at']:%Y-%m-%d})" if card["sms_consent_at"] else "")
    )
    st.markdown(f"- unsubscribed: {'yes' if card['is_unsubscribed'] else 'no'}")
    st.markdown("**Support**")
    st.markdown(f"- tickets: {count(card['tickets_lifetime'])} ({count(card['open_tickets'])} open)")
    st.markdown(f"- last rating: {card['last_satisfaction'] or '–'}")
with scores:
    st.markdown("**Scores**")
    if "churn_probability" in card and card["churn_probability"] is not None:
        st.markdown(f"- churn risk: {share(card['churn_probability'])} ({card['churn_band']})")
        st.markdown(f"- why: {card.get('churn_reasons') or '–'}")
        st.markdown(f"- expected 12-month value: {money(card['clv_12m'])}")
        st.markdown(f"- loyalty: {card['loyalty_tier']} ({card['loyalty_score']:.0f}/100)")
        st.markdown(f"- benefits: {card.get('benefits') or '–'}")
        st.markdown(f"- next action: {card.get('next_action') or '–'}")
    else:
        st.caption(data.NO_SCORES)

with st.expander("Source records behind this customer (identity resolution)"):
    st.dataframe(ui.masked(ui.call(data.customer_records, reader, customer_id)), hide_index=True)

st.subheader("Time line")
timeline = ui.call(data.customer_timeline, reader, customer_id)
if timeline.height == 0:
    st.caption("Nothing recorded for this customer yet.")
else:
    st.dataframe(
        timeline,
        hide_index=True,
        column_config={
            "amount": st.column_config.NumberColumn(format="£%.2f"),
            "happened_at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
