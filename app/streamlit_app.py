"""The CRM dashboard: `streamlit run app/streamlit_app.py` (or `crm app`).

It reads only the published snapshot (see crm/serving/snapshots.py), so it keeps
answering while the nightly build holds the warehouse. Nobody gets past the login gate
(app/login.py) without a role; the navigation lists the pages the role may open, and the data
layer refuses the rest whatever a page asks.
"""

from pathlib import Path

import streamlit as st

from app import data, login, ui
from app.format import count

PAGES = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="CRM dashboard", page_icon=":material/monitoring:", layout="wide")

viewer = login.require_viewer()

# (section, file, title, icon, the permission that opens it)
PAGE_LIST = [
    ("Analysis", "overview.py", "Overview", ":material/dashboard:", "analytics"),
    ("Analysis", "customers.py", "Customers", ":material/person_search:", "customers"),
    ("Analysis", "segments.py", "Segments", ":material/grid_view:", "analytics"),
    ("Analysis", "churn_value.py", "Churn & value", ":material/trending_down:", "analytics"),
    ("Analysis", "campaigns_support.py", "Campaigns & support", ":material/campaign:", "analytics"),
    ("Act", "segment_builder.py", "Segment builder & export", ":material/filter_alt:", "segments"),
    ("Act", "my_book.py", "My book", ":material/checklist:", "my_book"),
    ("Operations", "data_health.py", "Data health", ":material/health_and_safety:", "operations"),
    ("Operations", "steward_review.py", "Steward review", ":material/join_inner:", "steward"),
    ("Operations", "audit_trail.py", "Audit trail", ":material/policy:", "audit"),
]
sections: dict[str, list] = {}
for section, file, title, icon, permission in PAGE_LIST:
    if viewer.can(permission):
        first = not sections
        sections.setdefault(section, []).append(st.Page(PAGES / file, title=title, icon=icon, default=first))
if not sections:
    st.error(f"Your role ({viewer.role}) opens no page of this dashboard.")
    st.stop()
navigation = st.navigation(sections)


def _record_unmask() -> None:
    if st.session_state.get(ui.SHOW_PII_KEY):
        data.record_unmask(ui.reader(), navigation.title)


with st.sidebar:
    st.caption(f"Signed in as **{viewer.name}** ({viewer.role})")
    st.button("Sign out", key="sign_out", on_click=login.sign_out)
    if viewer.can("unmask"):
        st.toggle(
            "Show emails and phones",
            key=ui.SHOW_PII_KEY,
            value=False,
            on_change=_record_unmask,
            help="Contact details are masked unless you need them; switching them on is recorded.",
        )
    else:
        st.caption("Emails and phones are masked for your role.")
    snapshot = ui.current_snapshot()
    if snapshot is not None:
        customers = snapshot.row_counts.get("marts.customer_360")
        st.caption(
            f"Data refreshed {snapshot.built_at:%d %b %Y %H:%M} UTC"
            + (f" · {count(customers)} customers" if customers is not None else "")
        )

navigation.run()
