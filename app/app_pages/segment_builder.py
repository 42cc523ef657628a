"""Segment builder & export: filters on any customer 360 or score column, a live count, downloads,
saved segments (re-exported every night), consent-safe channel exports."""

from datetime import date, datetime

import streamlit as st

from app import data, ui
from app.format import count

SUGGESTED = [
    "rfm_segment",
    "loyalty_tier",
    "churn_band",
    "segment",
    "city",
    "owner_rep_name",
    "clv_12m",
    "days_since_last_order",
    "revenue_lifetime",
    "email_consent",
    "sms_consent",
]

st.title("Segment builder & export")
reader = ui.reader()
# Contact details are offered as filters (with their values) only while they are shown.
columns = {c: t for c, t in ui.query(data.filterable_columns).items() if ui.show_pii() or c not in data.PII_COLUMNS}
problems: list[str] = []
saved = {segment.name: segment for segment in data.load_segments(data.data_dir(), problems)}
for problem in problems:
    st.warning(f"A saved segment file was skipped: {problem}")

CHANNEL_LABELS = {None: "analysis (no channel)", "email": "email campaign", "sms": "sms campaign"}


def load_saved_segment() -> None:
    """Put a saved segment's filters into the widgets (runs before the widgets are drawn)."""
    segment = saved.get(st.session_state["segment_start"])
    if segment is None:
        return
    st.session_state["filter_columns"] = [c.column for c in segment.conditions if c.column in columns]
    for condition in segment.conditions:
        key = f"filter_{condition.column}"
        if condition.op in ("is_true", "is_false"):
            st.session_state[key] = "yes" if condition.op == "is_true" else "no"
        elif condition.op == "between" and data.widget_kind(columns.get(condition.column, "")) == "date":
            st.session_state[key] = tuple(date.fromisoformat(str(v)[:10]) for v in condition.value)
        elif condition.op == "between":
            st.session_state[key] = tuple(float(v) for v in condition.value)
        elif condition.op == "in":
            st.session_state[key] = list(condition.value)
    st.session_state["segment_channel"] = CHANNEL_LABELS[segment.channel]
    st.session_state["segment_name"] = segment.name


def clamp(key: str, low, high) -> None:
    """A saved range may lie outside this snapshot's values; a slider refuses that, so clamp it."""
    if key in st.session_state:
        first, last = st.session_state[key]
        st.session_state[key] = (min(max(first, low), high), max(min(last, high), low))


def initial(key: str, value) -> dict:
    """A widget's starting value, unless session state (a loaded segment) already holds one."""
    return {} if key in st.session_state else {"value": value}


start_from = st.selectbox("Start from", ["(new segment)", *saved], key="segment_start", on_change=load_saved_segment)
base = saved.get(start_from)
chosen = st.multiselect(
    "Filter on",
    sorted(columns),
    key="filter_columns",
    placeholder="choose columns: " + ", ".join(c for c in SUGGESTED if c in columns)[:120],
)

conditions: list[data.Condition] = []
for column in chosen:
    kind = data.widget_kind(columns[column])
    key = f"filter_{column}"
    if kind == "boolean":
        answer = st.radio(column, ["yes", "no"], horizontal=True, key=key)
        conditions.append(data.Condition(column=column, op="is_true" if answer == "yes" else "is_false"))
    elif kind == "number":
        low, high = ui.query(data.value_range, column)
        if low is None:
            st.caption(f"{column}: no values")
            continue
        low, high = float(low), float(high)
        if low == high:
            high = low + 1
        clamp(key, low, high)
        picked = st.slider(column, low, high, key=key, **initial(key, (low, high)))
        conditions.append(data.Condition(column=column, op="between", value=list(picked)))
    elif kind == "date":
        low, high = ui.query(data.value_range, column)
        if low is None:
            st.caption(f"{column}: no values")
            continue
        low, high = [v.date() if isinstance(v, datetime) else v for v in (low, high)]
        clamp(key, low, high)
        picked = st.date_input(column, min_value=low, max_value=high, key=key, **initial(key, (low, high)))
        if isinstance(picked, tuple | list) and len(picked) == 2:
            upper = (
                datetime.combine(picked[1], datetime.max.time())
                if columns[column].startswith("TIMESTAMP")
                else picked[1]
            )
            conditions.append(data.Condition(column=column, op="between", value=[picked[0], upper]))
    else:
        options = ui.query(data.distinct_values, column)
        if key in st.session_state:
            # A saved value this snapshot no longer holds would make the widget fail: drop it.
            st.session_state[key] = [v for v in st.session_state[key] if v in options]
        picked = st.multiselect(column, options, key=key)
        if picked:
            conditions.append(data.Condition(column=column, op="in", value=picked))

channel_label = st.radio(
    "Export for",
    list(CHANNEL_LABELS.values()),
    horizontal=True,
    key="segment_channel",
    help="A channel export leaves out everyone without consent for that channel.",
)
channel = next(key for key, label in CHANNEL_LABELS.items() if label == channel_label)
definition = data.SegmentDefinition(name=start_from if base else "segment", conditions=conditions, channel=channel)

try:
    matched, excluded = ui.call(data.segment_count, reader, definition)
except data.SegmentError as exc:
    st.error(str(exc))
    st.stop()
left, right = st.columns(2)
left.metric("Customers in segment", count(matched - excluded))
if channel:
    right.metric(
        f"Left out: no {channel} consent",
        count(excluded),
        help=f"{count(matched)} match the filters; {count(excluded)} of them cannot be contacted by {channel}.",
    )

preview = ui.call(data.segment_rows, reader, definition, limit=100).rows
st.dataframe(ui.masked(data.pl.from_arrow(preview)), hide_index=True)
st.caption(f"First {min(100, preview.num_rows)} rows shown.")

stem = f"segment_{date.today():%Y%m%d}"
include_contacts = False
if data.may_export_contacts(reader.viewer, definition):
    include_contacts = st.checkbox(
        "Include contact details (clear emails and phones) in the download",
        key="export_contacts",
        help="Recorded in the audit trail with the segment, row count and file hash.",
    )
else:
    st.caption(
        "Downloads carry masked emails and phones for your role" + ("" if channel else " in analysis exports") + "."
    )
for column, (label, (suffix, mime)) in zip(st.columns(3), data.EXPORT_FORMATS.items(), strict=True):
    column.download_button(
        f"Download {label}",
        key=f"download_{label}",
        file_name=stem + suffix,
        mime=mime,
        data=lambda fmt=label: data.export_bytes(reader, definition, fmt, include_contacts=include_contacts),
        on_click="ignore",
    )

st.subheader("Save this segment")
st.caption(
    f"Saved segments live in {data.data_dir() / 'segments'} (outside the warehouse) and are re-exported "
    f"every night to {data.exports_dir(data.data_dir())} with a manifest."
)
name = st.text_input("Name", key="segment_name")
replace = name.strip() in saved and st.checkbox(f"Replace the saved segment “{name.strip()}”", key="segment_replace")
if st.button("Save segment", key="segment_save", disabled=not name.strip()):
    try:
        path = data.save_segment(
            data.data_dir(), definition.model_copy(update={"name": name.strip()}), replace=bool(replace)
        )
    except data.SegmentError as exc:
        st.error(str(exc))
    else:
        st.success(f"Saved “{name.strip()}” to {path.name}.")

if saved:
    st.subheader("Saved segments")
    rows = []
    for segment in saved.values():
        manifest_path = data.exports_dir(data.data_dir()) / f"{segment.file_stem()}.manifest.json"
        manifest = data.read_json(manifest_path)
        rows.append(
            {
                "segment": segment.name,
                "channel": segment.channel or "–",
                "conditions": len(segment.conditions),
                "last export rows": manifest.get("row_count"),
                "from snapshot": manifest.get("snapshot_id"),
                "exported at": manifest.get("exported_at"),
            }
        )
    st.dataframe(rows, hide_index=True)
