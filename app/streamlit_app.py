"""The CRM dashboard: `streamlit run app/streamlit_app.py` (or `crm app`).

It reads only the published snapshot (see crm/serving/snapshots.py), so it keeps
answering while the nightly build holds the warehouse.
"""

from pathlib import Path

import streamlit as st

from app import ui
from app.format import count

PAGES = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="CRM dashboard", page_icon=":material/monitoring:", layout="wide")

navigation = st.navigation(
    {
        "Analysis": [
            st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
            st.Page(PAGES / "customers.py", title="Customers", icon=":material/person_search:"),
            st.Page(PAGES / "segments.py", title="Segments", icon=":material/grid_view:"),
            st.Page(PAGES / "churn_value.py", title="Churn & value", icon=":material/trending_down:"),
            st.Page(PAGES / "campaigns_support.py", title="Campaigns & support", icon=":material/campaign:"),
        ],
        "Act": [
            st.Page(PAGES / "segment_builder.py", title="Segment builder & export", icon=":material/filter_alt:"),
            st.Page(PAGES / "my_book.py", title="My book", icon=":material/checklist:"),
        ],
        "Operations": [
            st.Page(PAGES / "data_health.py", title="Data health", icon=":material/health_and_safety:"),
            st.Page(PAGES / "steward_review.py", title="Steward review", icon=":material/join_inner:"),
        ],
    }
)

with st.sidebar:
    st.toggle(
        "Show emails and phones",
        key=ui.SHOW_PII_KEY,
        value=False,
        help="Contact details are masked unless you need them.",
    )
    snapshot = ui.current_snapshot()
    if snapshot is not None:
        customers = snapshot.row_counts.get("marts.customer_360")
        st.caption(
            f"Data refreshed {snapshot.built_at:%d %b %Y %H:%M} UTC"
            + (f" · {count(customers)} customers" if customers is not None else "")
        )

navigation.run()
