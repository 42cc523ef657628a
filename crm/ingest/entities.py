"""Canonical source entities: the contract between every source system and the warehouse.

A source (the simulator's, or a real company's) maps its own column names onto these canonical
names in the sources config. Ingestion types and validates each row against this contract; a row
that breaks a rule goes to quarantine with the reason, the rest lands in ``raw.<entity>``.

Kept as plain data so that ingestion, Great Expectations suites, dbt sources and the docs all read
one definition instead of four copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # a DuckDB type: VARCHAR, BIGINT, DOUBLE, DATE, TIMESTAMP, BOOLEAN
    required: bool = False
    accepted_values: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    # "<entity>.<column>": the value must exist there (in raw or in the same batch).
    references: str | None = None


@dataclass(frozen=True)
class Entity:
    name: str  # also the raw and quarantine table name, e.g. raw.sales_orders
    domain: str  # sales | marketing | support
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # The column whose date assigns a SQL row to a daily partition (file drops use the file's date).
    updated_at: str | None = "updated_at"
    # Keys that may legitimately repeat in raw (a new version of a changed row, a re-sent event).
    key_repeats_in_raw: bool = True
    upstream: tuple[str, ...] = field(default=())
    # A row must carry at least one of these (a contact known by email, phone or id): else quarantine.
    identified_by: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


ORDER_STATUSES = ("placed", "shipped", "returned", "cancelled")
EVENT_TYPES = ("sent", "delivered", "open", "click", "unsubscribe", "bounce", "conversion")
OPPORTUNITY_STAGES = ("prospecting", "qualified", "proposal", "negotiation", "won", "lost")
TICKET_STATUSES = ("new", "open", "pending", "solved", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")

_TS = (Column("created_at", "TIMESTAMP", required=True), Column("updated_at", "TIMESTAMP", required=True))

# The person a record describes (a contact, a ticket's requester, an order's customer): every one
# optional, mapped when the source has it; identity resolution compares whatever is present.
# Kept as text: a birth date or postcode with a typo is still evidence of who someone is, so it is
# normalised by identity resolution, never a reason to quarantine the record.
EXTERNAL_IDS = "external_ids"
PERSON_ATTRIBUTES = (
    Column("full_name", "VARCHAR"),  # when the source has one name field ("Ann Lee", "Lee, Ann")
    Column("birth_date", "VARCHAR"),
    Column("street_number", "VARCHAR"),
    Column("address_line1", "VARCHAR"),
    Column("address_line2", "VARCHAR"),
    Column("region", "VARCHAR"),  # state, county, province
    Column("country", "VARCHAR"),
    # Filled from the mapping's `ids:` (loyalty card, national id, CRM id...), one JSON object per row.
    Column(EXTERNAL_IDS, "VARCHAR"),
)
_NAMES = (Column("first_name", "VARCHAR"), Column("last_name", "VARCHAR"))
_PLACE = (Column("city", "VARCHAR"), Column("postcode", "VARCHAR"))

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in [
        Entity(
            "sales_reps",
            "sales",
            "Sales representatives who own accounts and orders.",
            (
                Column("rep_id", "BIGINT", required=True),
                Column("rep_name", "VARCHAR", required=True),
                Column("email", "VARCHAR"),
                Column("region", "VARCHAR"),
                Column("hired_at", "DATE"),
                *_TS,
            ),
            key=("rep_id",),
        ),
        Entity(
            "sales_accounts",
            "sales",
            "Customer accounts: a company (B2B) or a household (B2C).",
            (
                Column("account_id", "BIGINT", required=True),
                Column("account_name", "VARCHAR"),
                Column("account_type", "VARCHAR", accepted_values=("B2B", "B2C")),
                Column("region", "VARCHAR"),
                Column("owner_rep_id", "BIGINT"),
                Column("payment_terms_days", "BIGINT", min_value=0, max_value=365),
                *_TS,
            ),
            key=("account_id",),
        ),
        Entity(
            "sales_contacts",
            "sales",
            "People at accounts; the sales system holds duplicates of the same person.",
            (
                Column("contact_id", "BIGINT", required=True),
                Column("account_id", "BIGINT"),
                Column("first_name", "VARCHAR"),
                Column("last_name", "VARCHAR"),
                Column("email", "VARCHAR"),
                Column("phone", "VARCHAR"),
                Column("city", "VARCHAR"),
                Column("postcode", "VARCHAR"),
                *PERSON_ATTRIBUTES,
                *_TS,
            ),
            key=("contact_id",),
        ),
        Entity(
            "sales_products",
            "sales",
            "The product catalogue.",
            (
                Column("product_id", "BIGINT", required=True),
                Column("product_name", "VARCHAR"),
                Column("category", "VARCHAR"),
                Column("list_price", "DOUBLE", min_value=0),
                *_TS,
            ),
            key=("product_id",),
        ),
        Entity(
            "sales_opportunities",
            "sales",
            "Deals in the pipeline; each stage change writes a new row version (stage history).",
            (
                Column("opportunity_id", "BIGINT", required=True),
                Column("account_id", "BIGINT"),
                Column("owner_rep_id", "BIGINT"),
                Column("stage", "VARCHAR", required=True, accepted_values=OPPORTUNITY_STAGES),
                Column("amount", "DOUBLE", min_value=0),
                Column("stage_changed_at", "TIMESTAMP"),
                *_TS,
            ),
            key=("opportunity_id",),
        ),
        Entity(
            "sales_opportunity_stages",
            "sales",
            "Stage history of opportunities: one row per stage an opportunity entered.",
            (
                Column("stage_history_id", "BIGINT", required=True),
                Column("opportunity_id", "BIGINT", required=True),
                Column("stage", "VARCHAR", required=True, accepted_values=OPPORTUNITY_STAGES),
                Column("entered_at", "TIMESTAMP", required=True),
                *_TS,
            ),
            key=("stage_history_id",),
        ),
        Entity(
            "sales_orders",
            "sales",
            "Orders. The only entity a minimal company needs: customer, date and amount.",
            (
                Column("order_id", "VARCHAR", required=True),
                Column("customer_ref", "VARCHAR", required=True),  # the source's customer/contact id
                Column("account_id", "BIGINT"),
                Column("order_date", "TIMESTAMP", required=True),
                Column("status", "VARCHAR", accepted_values=ORDER_STATUSES),
                Column("channel", "VARCHAR"),
                Column("discount_pct", "DOUBLE", min_value=0, max_value=100),
                Column("payment_terms_days", "BIGINT", min_value=0, max_value=365),
                Column("owner_rep_id", "BIGINT"),
                Column("total_amount", "DOUBLE", required=True, min_value=0),
                Column("created_at", "TIMESTAMP"),
                Column("updated_at", "TIMESTAMP"),
                # the customer as the order describes them (an orders-only company's only evidence)
                Column("email", "VARCHAR"),
                Column("phone", "VARCHAR"),
                *_NAMES,
                *_PLACE,
                *PERSON_ATTRIBUTES,
            ),
            key=("order_id",),
        ),
        Entity(
            "sales_order_lines",
            "sales",
            "Order lines: product, quantity, price.",
            (
                Column("order_line_id", "BIGINT", required=True),
                Column("order_id", "VARCHAR", required=True),
                Column("product_id", "BIGINT", required=True, references="sales_products.product_id"),
                Column("quantity", "BIGINT", required=True, min_value=1),
                Column("unit_price", "DOUBLE", required=True, min_value=0),
                *_TS,
            ),
            key=("order_line_id",),
            upstream=("sales_products",),
        ),
        Entity(
            "marketing_campaigns",
            "marketing",
            "Campaigns with their channel and offer.",
            (
                Column("campaign_id", "VARCHAR", required=True),
                Column("campaign_name", "VARCHAR"),
                Column("channel", "VARCHAR", required=True, accepted_values=("email", "sms")),
                Column("offer", "VARCHAR"),
                Column("discount_pct", "DOUBLE", min_value=0, max_value=100),
                Column("launched_at", "TIMESTAMP", required=True),
            ),
            key=("campaign_id",),
            updated_at=None,
        ),
        Entity(
            "marketing_contacts",
            "marketing",
            "The marketing platform's contacts with email/SMS consent; keyed by contact id, else by email address.",
            (
                Column("email", "VARCHAR"),
                Column("contact_id", "VARCHAR"),
                Column("first_name", "VARCHAR"),
                Column("last_name", "VARCHAR"),
                Column("phone", "VARCHAR"),
                Column("email_consent", "BOOLEAN"),
                Column("email_consent_at", "TIMESTAMP"),
                Column("sms_consent", "BOOLEAN"),
                Column("sms_consent_at", "TIMESTAMP"),
                Column("unsubscribed_at", "TIMESTAMP"),
                Column("updated_at", "TIMESTAMP", required=True),
                *_PLACE,
                *PERSON_ATTRIBUTES,
            ),
            key=("email",),
            updated_at=None,
            identified_by=("email", "contact_id", "phone", EXTERNAL_IDS),
        ),
        Entity(
            "marketing_events",
            "marketing",
            "What each contact did with a campaign, keyed by email; delivered at least once, sometimes late.",
            (
                Column("event_id", "VARCHAR", required=True),
                Column("email", "VARCHAR", required=True),
                Column("campaign_id", "VARCHAR"),
                Column("event_type", "VARCHAR", required=True, accepted_values=EVENT_TYPES),
                Column("occurred_at", "TIMESTAMP", required=True),
                Column("conversion_value", "DOUBLE", min_value=0),
            ),
            key=("event_id",),
            updated_at=None,
        ),
        Entity(
            "support_tickets",
            "support",
            "Help-desk tickets from the incremental export; a ticket reappears each time it changes.",
            (
                Column("ticket_id", "BIGINT", required=True),
                Column("requester_name", "VARCHAR"),
                Column("requester_email", "VARCHAR"),
                Column("requester_phone", "VARCHAR"),
                Column("channel", "VARCHAR"),
                Column("priority", "VARCHAR", accepted_values=TICKET_PRIORITIES),
                Column("status", "VARCHAR", required=True, accepted_values=TICKET_STATUSES),
                Column("subject", "VARCHAR"),
                Column("created_at", "TIMESTAMP", required=True),
                Column("updated_at", "TIMESTAMP", required=True),
                Column("solved_at", "TIMESTAMP"),
                Column("satisfaction_score", "VARCHAR", accepted_values=("good", "bad", "offered", "unoffered")),
                Column("satisfaction_comment", "VARCHAR"),
                # the requester, when the help desk knows more than a name, email and phone
                *_NAMES,
                *_PLACE,
                *PERSON_ATTRIBUTES,
            ),
            key=("ticket_id",),
            updated_at=None,
        ),
    ]
}

LINEAGE_COLUMNS = (
    Column("_batch_id", "VARCHAR"),
    Column("_source", "VARCHAR"),  # file path, or database table
    Column("_source_location", "VARCHAR"),  # file:line, or table:key
    Column("_partition_date", "DATE"),
    Column("_ingested_at", "TIMESTAMP"),
    Column("_source_system", "VARCHAR"),  # the sources config's name of the system the row came from
)

# Entities whose rows describe a person, and so feed identity resolution.
PERSON_ENTITIES = ("sales_contacts", "sales_orders", "marketing_contacts", "support_tickets")
