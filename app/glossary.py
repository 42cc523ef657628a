"""What each column is called on screen and what it means: one place, so every table, filter and
download header says the same thing ("Churn risk", not churn_probability).

``label(name)`` is the on-screen name (a humanised fallback for a column not listed here, so a
new column never shows in snake_case); ``describe(name)`` the one-line definition the segment
builder shows beside a filter.
"""

from __future__ import annotations

import re

# column -> (label, one-line definition). Periods count back from the snapshot's as-of date.
COLUMNS: dict[str, tuple[str, str]] = {
    "customer_id": ("Customer id", "The customer's stable id across systems (identity resolution)."),
    "as_of_date": ("As of", "The day the figures are counted up to (the newest day with data)."),
    "full_name": ("Name", "Full name from the best source record."),
    "first_name": ("First name", "First name from the best source record."),
    "last_name": ("Last name", "Last name from the best source record."),
    "customer_name": ("Customer", "Full name from the best source record."),
    "email": ("Email", "Email address from the best source record."),
    "phone": ("Phone", "Phone number in international format."),
    "city": ("City", "City from the best source record."),
    "postcode": ("Postcode", "Postcode from the best source record."),
    "segment": ("Account type", "B2B (business account) or B2C (consumer), from the sales system."),
    "account_id": ("Account id", "The sales system's account id."),
    "account_name": ("Account", "The account (company or household) in the sales system."),
    "owner_rep_id": ("Owner rep id", "The sales rep who owns the account (id)."),
    "owner_rep_name": ("Owner rep", "The sales rep who owns the account."),
    "email_consent": ("Email consent", "Agreed to receive marketing email."),
    "email_consent_at": ("Email consent since", "When email consent was given."),
    "sms_consent": ("SMS consent", "Agreed to receive marketing text messages."),
    "sms_consent_at": ("SMS consent since", "When SMS consent was given."),
    "first_order_at": ("First order", "Date of the first order (cancelled and returned orders excluded)."),
    "last_order_at": ("Last order", "Date of the newest order (cancelled and returned orders excluded)."),
    "orders_lifetime": ("Orders (all time)", "Orders placed so far, cancelled and returned ones excluded."),
    "revenue_lifetime": ("Revenue (all time)", "Revenue of all orders so far, net of cancellations and returns."),
    "orders_90d": ("Orders (90 days)", "Orders in the last 90 days."),
    "revenue_90d": ("Revenue (90 days)", "Revenue in the last 90 days."),
    "orders_365d": ("Orders (365 days)", "Orders in the last 365 days."),
    "revenue_365d": ("Revenue (365 days)", "Revenue in the last 365 days."),
    "average_order_value": ("Average order value", "Revenue divided by orders, all time."),
    "returns_lifetime": ("Returns (all time)", "Orders returned so far."),
    "returned_amount_lifetime": ("Returned value (all time)", "Value of the orders returned so far."),
    "favourite_category": ("Favourite category", "The product category with the most spend."),
    "days_since_last_order": ("Days since last order", "Days between the last order and the as-of date."),
    "sends_30d": ("Marketing sends (30 days)", "Marketing messages sent in the last 30 days."),
    "opens_30d": ("Opens (30 days)", "Marketing emails opened in the last 30 days."),
    "clicks_30d": ("Clicks (30 days)", "Marketing clicks in the last 30 days."),
    "sends_90d": ("Marketing sends (90 days)", "Marketing messages sent in the last 90 days."),
    "opens_90d": ("Opens (90 days)", "Marketing emails opened in the last 90 days."),
    "clicks_90d": ("Clicks (90 days)", "Marketing clicks in the last 90 days."),
    "conversions_lifetime": ("Campaign conversions", "Purchases attributed to a campaign, all time."),
    "last_engagement_at": ("Last engagement", "Last open, click or conversion of a marketing message."),
    "is_unsubscribed": ("Unsubscribed", "Unsubscribed from marketing in any system."),
    "tickets_90d": ("Tickets (90 days)", "Support tickets raised in the last 90 days."),
    "tickets_lifetime": ("Tickets (all time)", "Support tickets raised so far."),
    "open_tickets": ("Open tickets", "Support tickets not solved yet."),
    "median_resolution_hours": ("Median resolution (hours)", "Median hours from a ticket's creation to its solution."),
    "last_satisfaction": ("Last support rating", "The customer's most recent satisfaction rating (good or bad)."),
    "bad_rating_share": ("Bad rating share", "Share of the customer's rated tickets rated bad."),
    "tenure_days": ("Days as a customer", "Days since any system first saw the customer."),
    "scored_as_of": ("Scored as of", "The day the scores were computed for."),
    "churn_probability": (
        "Churn risk",
        "Probability of no order in the next 90 days (calibrated model); only customers who have ordered are scored.",
    ),
    "churn_band": ("Churn band", "Low, medium or high churn risk, by the thresholds in the scoring config."),
    "churn_reasons": ("Why at risk", "What raises this customer's churn risk most, in their own figures."),
    "p_alive": ("Still active (probability)", "Probability the customer is still buying at all (BG/NBD model)."),
    "expected_purchases_90d": ("Expected orders (90 days)", "Orders the value model expects in the next 90 days."),
    "expected_purchases_365d": ("Expected orders (12 months)", "Orders the value model expects in the next 12 months."),
    "expected_spend_per_order": ("Expected spend per order", "Spend per order the value model expects (Gamma-Gamma)."),
    "clv_12m": ("Expected 12-month value", "Revenue the value model expects from the customer in the next 12 months."),
    "loyalty_score": ("Loyalty score", "0-100 score of value, frequency, tenure and engagement."),
    "loyalty_tier": ("Loyalty tier", "Bronze, Silver, Gold or Platinum, from the loyalty score."),
    "benefits": ("Benefits", "The benefits of the customer's loyalty tier."),
    "benefits_yearly_cost": ("Benefits cost per year", "What the tier's benefits cost per year for this customer."),
    "next_action": ("Next action", "The action the rules choose for this customer."),
    "action_priority": ("Priority", "1 = most urgent."),
    "action_reason": ("Why this action", "The facts behind the chosen action."),
    "reason": ("Why", "The facts behind the chosen action."),
    "value_at_stake": (
        "Value at stake",
        "Expected 12-month value × churn risk for retention actions; × expected uplift for growth actions.",
    ),
    "model_version": ("Model version", "The churn model that scored the customer."),
    "rfm_segment": ("RFM segment", "Segment by recency, frequency and monetary value of orders."),
    "rfm_cell": ("RFM cell", "Recency, frequency and monetary scores as three digits (5 = best)."),
    "r_score": ("Recency score", "1-5, 5 = ordered most recently."),
    "f_score": ("Frequency score", "1-5, 5 = most orders."),
    "m_score": ("Monetary score", "1-5, 5 = highest revenue."),
    "rank_in_book": ("Rank", "Position in the rep's book, by value at stake."),
    "rep_name": ("Rep", "Sales rep."),
    "region": ("Region", "Sales region."),
}

_SUFFIXES = ((r"_(\d+)d$", r" (\1 days)"), (r"_lifetime$", r" (all time)"), (r"_at$", r""), (r"_pct$", r" %"))


def label(name: str) -> str:
    """The on-screen name of a column."""
    if name in COLUMNS:
        return COLUMNS[name][0]
    text = name
    for pattern, replacement in _SUFFIXES:
        text = re.sub(pattern, replacement, text)
    text = text.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def describe(name: str) -> str | None:
    """The one-line definition of a column, when there is one."""
    return COLUMNS[name][1] if name in COLUMNS else None
