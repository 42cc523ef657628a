"""Customers: search every identifier of every source record (emails, phones in any format, names,
nicknames, source ids, accounts); the 360 card, why the records were joined, possible duplicates, and
one time line of what the customer did."""

import polars as pl
import streamlit as st

from app import data, ui
from app.format import count, money, share

PAGE_SIZE = 25
RECORD_LABELS = {
    "source": "Source",
    "source_key": "Id in the source",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "city": "City",
    "match_rule": "Joined by",
    "match_probability": "Match probability",
    "match_evidence": "Why joined",
}

st.title("Customers")
reader = ui.reader()

# A link from another page (My book) names the customer: open their card directly.
linked = st.query_params.get("customer")
if linked and st.session_state.get("_linked_customer") != linked:
    st.session_state["_linked_customer"] = linked
    st.session_state["customer_search"] = linked
    st.session_state.pop("customer_page", None)

text = st.text_input(
    "Search by name, email, phone, account or id",
    key="customer_search",
    on_change=lambda: st.session_state.pop("customer_page", None),
    placeholder="e.g. Smith, jane@work.example, 07700 900123, Acme, C000123",
    help="Searches every email, phone, name and id of every record behind a customer, not only the ones "
    "shown on the card. Phones match in any format (07700 900123, +44 7700 900123); accents and common "
    "nicknames (Bill for William) are understood.",
)
if not text.strip():
    st.caption("Type at least part of a name, an email, a phone number, an account or an id.")
    st.stop()

page_number = int(st.session_state.get("customer_page") or 1)
found = ui.call(data.search_customers, reader, text, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE)
if found.total == 0:
    st.warning(f"No customer matches “{text.strip()}”.")
    st.stop()
pages = (found.total + PAGE_SIZE - 1) // PAGE_SIZE
first = found.offset + 1
last = found.offset + found.rows.height
summary, pager = st.columns([3, 1])
summary.caption(
    (f"{count(found.total)} customers match" if found.total != 1 else "1 customer matches")
    + (f" · showing {count(first)}–{count(last)}, best matches first" if pages > 1 else "")
)
if pages > 1:
    pager.number_input("Page", min_value=1, max_value=pages, step=1, key="customer_page")
# "Found by" may be an email or a phone of any record: masked as the contact columns are (by its kind).
ui.table(
    ui.masked(found.rows).drop("matched_kind"),
    column_config={
        "last_order_at": st.column_config.DateColumn("Last order", format="D MMM YYYY"),
        "matched": st.column_config.Column(
            "Found by", help="The name, email, phone, account or id (of any of the customer's records) that matched."
        ),
    },
    key="customer_results",
)

labels = {
    row["customer_id"]: f"{row['full_name'] or '(no name)'} · {row['customer_id']}"
    for row in found.rows.iter_rows(named=True)
}
customer_id = st.selectbox("Customer", list(labels), format_func=labels.get, key="customer_pick")
card = ui.call(data.customer_card, reader, customer_id)
if card is None:
    st.error(f"Customer {customer_id} is not in this data.")
    st.stop()
card = ui.masked_record(card)

st.subheader(card["full_name"] or customer_id)
columns = st.columns(4)
columns[0].metric("Lifetime revenue", money(card["revenue_lifetime"]), help="Orders not cancelled or returned.")
columns[1].metric("Orders", count(card["orders_lifetime"]), help="Orders not cancelled or returned.")
columns[2].metric(
    "Last order",
    ui.plain_date(card["last_order_at"].date() if card["last_order_at"] else None),
    help=f"{count(card['days_since_last_order'])} days before the data's as-of date."
    if card["days_since_last_order"] is not None
    else "No order yet.",
)
with columns[3]:
    st.caption("RFM segment")
    st.markdown(f"#### {card.get('rfm_segment') or 'no orders yet'}")

who, consent, scores = st.columns(3)
lines = ["**Golden record** (the source it comes from in brackets)", ""]
for field, name in (
    ("first_name", "first name"),
    ("last_name", "last name"),
    ("email", "email"),
    ("phone", "phone"),
    ("city", "city"),
    ("postcode", "postcode"),
):
    source = data.SOURCE_NAMES.get(card.get(field + "_source") or "", card.get(field + "_source"))
    lines.append(f"- {name}: {card[field] or '–'}" + (f" ({source.lower()})" if source else ""))
lines.append(f"- account: {card['account_name'] or '–'} ({card['segment'] or 'type unknown'})")
lines.append(f"- owner: {card['owner_rep_name'] or 'unassigned'}")
who.markdown("\n".join(lines))

consent.markdown(
    "\n".join(
        [
            "**Consent**",
            "",
            f"- email: {'yes' if card['email_consent'] else 'no'}"
            + (f" (since {card['email_consent_at']:%d %b %Y})" if card["email_consent_at"] else ""),
            f"- SMS: {'yes' if card['sms_consent'] else 'no'}"
            + (f" (since {card['sms_consent_at']:%d %b %Y})" if card["sms_consent_at"] else ""),
            f"- unsubscribed: {'yes' if card['is_unsubscribed'] else 'no'}",
            "",
            "**Support**",
            "",
            f"- tickets: {count(card['tickets_lifetime'])} ({count(card['open_tickets'])} open)",
            f"- last rating: {card['last_satisfaction'] or 'never rated'}",
        ]
    )
)
if card.get("churn_probability") is not None:
    lapsed_after = ui.query(data.lapsed_after_days)
    lapsed = lapsed_after is not None and (card["days_since_last_order"] or 0) > lapsed_after
    scores.markdown(
        "\n".join(
            [
                "**Scores**",
                "",
                f"- churn risk: {share(card['churn_probability'], 0)} ({card['churn_band']})"
                + (" · already lapsed" if lapsed else ""),
                f"- why: {card.get('churn_reasons') or 'no single factor stands out'}",
                f"- expected 12-month value: {money(card['clv_12m'])}",
                f"- loyalty: {card['loyalty_tier']} ({card['loyalty_score']:.0f}/100)",
                f"- benefits: {card.get('benefits') or '–'}",
                f"- next action: {card.get('next_action') or '–'}",
            ]
        )
    )
else:
    scores.markdown("**Scores**")
    scores.caption("Not scored: scores need at least one order." if reader.has_scores else data.NO_SCORES)

records = ui.call(data.customer_records, reader, customer_id)
with st.expander(f"The {count(records.height)} source records behind this customer, and why they were joined"):
    shown = ui.masked(records)
    if shown["match_evidence"].null_count() == shown.height:
        shown = shown.drop("match_evidence")
    st.dataframe(
        shown,
        hide_index=True,
        placeholder=ui.MISSING,
        column_config={
            **{name: label for name, label in RECORD_LABELS.items() if name in shown.columns},
            "match_probability": st.column_config.NumberColumn("Match probability", format="%.2f"),
        },
    )
    suspects = ui.call(data.customer_suspects, reader, customer_id)
    if suspects is None:
        st.caption("Possible duplicates: this build does not list suspected duplicates.")
    elif suspects.height == 0:
        st.caption("No other customer looks like the same person.")
    else:
        st.markdown("**May be the same person as** (a steward decides on the Steward review page)")
        ui.table(
            ui.masked(suspects),
            column_config={
                "match_probability": st.column_config.NumberColumn("Match probability", format="%.2f"),
                "evidence": st.column_config.Column("Evidence"),
            },
        )

st.subheader("Time line")
with_sends = st.session_state.get("timeline_sends", False)
timeline, sends = ui.call(data.customer_timeline, reader, customer_id, include_sends=with_sends)
if sends:
    st.checkbox(f"Include the {count(sends)} marketing messages sent or delivered", key="timeline_sends")
if timeline.height == 0:
    st.caption("Nothing recorded for this customer yet.")
else:
    st.dataframe(
        timeline.with_columns(pl.col("what").str.replace_all("_", " ")),
        hide_index=True,
        placeholder="",
        column_config={
            "happened_at": st.column_config.DatetimeColumn("When", format="D MMM YYYY, HH:mm"),
            "kind": "What",
            "what": "Event",
            "detail": "Detail",
            "amount": st.column_config.NumberColumn("Amount", format="£%.2f"),
        },
    )
