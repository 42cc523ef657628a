"""Segment builder & export: filters on any customer 360 or score column, a live count, downloads,
saved segments (re-exported every night), consent-safe channel exports.

Filters are stored as the user meant them: a bound left empty is open (no captured maximum), and
customers without a value stay in unless the user leaves them out (the checkbox says how many).
"""

import math
from datetime import date, datetime

import polars as pl
import streamlit as st

from app import data, glossary, ui
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
NO_VALUE = "(no value)"
CHANNEL_LABELS = {None: "analysis (no channel)", "email": "email campaign", "sms": "SMS campaign"}
CONTACT_CHOICES = {"masked": "Masked (a***@…, ******1234)", "included": "In full (needed to send the campaign)"}

st.title("Segment builder & export")
reader = ui.reader()
# Contact details are offered as filters (with their values) only while they are shown.
columns = {c: t for c, t in ui.query(data.filterable_columns).items() if ui.show_pii() or c not in data.PII_COLUMNS}
problems: list[str] = []
saved = {segment.name: segment for segment in data.load_segments(data.data_dir(), problems)}
for problem in problems:
    st.warning(f"A saved segment file was skipped: {problem}")


def _number(value) -> float | int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def load_saved_segment() -> None:
    """Put a saved segment's filters into the widgets (runs before the widgets are drawn)."""
    segment = saved.get(st.session_state["segment_start"])
    if segment is None:
        return
    st.session_state["filter_columns"] = [c.column for c in segment.conditions if c.column in columns]
    for condition in segment.conditions:
        key = f"filter_{condition.column}"
        kind = data.widget_kind(columns.get(condition.column, ""))
        st.session_state[f"{key}_missing"] = condition.include_missing
        if condition.op in ("is_true", "is_false"):
            st.session_state[key] = "yes" if condition.op == "is_true" else "no"
        elif condition.op == "not_null":
            st.session_state[f"{key}_missing"] = False
        elif kind in ("number", "date"):
            low, high = {
                "between": tuple(condition.value or (None, None)),
                ">=": (condition.value, None),
                "<=": (None, condition.value),
                "=": (condition.value, condition.value),
            }.get(condition.op, (None, None))
            convert = (lambda v: date.fromisoformat(str(v)[:10])) if kind == "date" else float
            st.session_state[f"{key}_min"] = None if low is None else convert(low)
            st.session_state[f"{key}_max"] = None if high is None else convert(high)
            st.session_state.pop(f"{key}_slider", None)
        elif condition.op == "in":
            st.session_state[key] = list(condition.value) + ([NO_VALUE] if condition.include_missing else [])
    st.session_state["segment_channel"] = CHANNEL_LABELS[segment.channel]
    if segment.contact_details is not None:
        st.session_state[contacts_key(segment.channel)] = "included" if segment.contact_details else "masked"
    st.session_state["segment_name"] = segment.name


def contacts_key(channel: str | None) -> str:
    return f"segment_contacts_{channel or 'analysis'}"


def slider_moved(key: str, low: float, high: float) -> None:
    """The slider sets the typed bounds; a bound at the edge of today's values stays open."""
    first, last = st.session_state[f"{key}_slider"]
    st.session_state[f"{key}_min"] = None if first <= low else first
    st.session_state[f"{key}_max"] = None if last >= high else last


def bound_typed(key: str) -> None:
    """Typed bounds move the slider (which then shows them, clamped to today's values)."""
    st.session_state.pop(f"{key}_slider", None)


def number_filter(column: str, key: str) -> data.Condition | None:
    low, high, missing = ui.query(data.value_range, column)
    st.markdown(f"**{glossary.label(column)}**", help=glossary.describe(column))
    if low is None:
        st.caption("No customer has a value here.")
        return None
    low, high = float(low), float(high)
    integer = columns[column].upper().startswith(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UINTEGER"))
    step = 1.0 if integer else None
    typed_min, typed_max, slide = st.columns([1, 1, 3])
    minimum = typed_min.number_input(
        "From", value=None, step=step, key=f"{key}_min", placeholder="no minimum", on_change=bound_typed, args=(key,)
    )
    maximum = typed_max.number_input(
        "To", value=None, step=step, key=f"{key}_max", placeholder="no maximum", on_change=bound_typed, args=(key,)
    )
    if high > low:
        shown = (
            min(max(_number(minimum) if minimum is not None else low, low), high),
            max(min(_number(maximum) if maximum is not None else high, high), low),
        )
        if f"{key}_slider" not in st.session_state:
            st.session_state[f"{key}_slider"] = shown
        slide.slider(
            f"Range of {glossary.label(column).lower()}",
            low,
            high,
            key=f"{key}_slider",
            on_change=slider_moved,
            args=(key, low, high),
            label_visibility="hidden",
        )
    include_missing = missing_choice(key, missing)
    return bounds_condition(column, minimum, maximum, include_missing)


def date_filter(column: str, key: str) -> data.Condition | None:
    low, high, missing = ui.query(data.value_range, column)
    st.markdown(f"**{glossary.label(column)}**", help=glossary.describe(column))
    if low is None:
        st.caption("No customer has a value here.")
        return None
    low, high = [v.date() if isinstance(v, datetime) else v for v in (low, high)]
    first, last = st.columns(2)
    minimum = first.date_input("From", value=None, min_value=low, max_value=high, key=f"{key}_min", format="DD/MM/YYYY")
    maximum = last.date_input("To", value=None, min_value=low, max_value=high, key=f"{key}_max", format="DD/MM/YYYY")
    include_missing = missing_choice(key, missing)
    if maximum is not None and columns[column].upper().startswith("TIMESTAMP"):
        maximum = datetime.combine(maximum, datetime.max.time())
    return bounds_condition(column, minimum, maximum, include_missing)


def missing_choice(key: str, missing: int) -> bool:
    if not missing:
        return True
    return st.checkbox(
        f"Include the {count(missing)} customers without a value",
        value=True,
        key=f"{key}_missing",
        help="Customers with no value here (never ordered, not scored yet, not given). Untick to leave them out.",
    )


def bounds_condition(column: str, minimum, maximum, include_missing: bool) -> data.Condition | None:
    """The filter as meant: an open bound is absent, so tomorrow's larger values still match."""
    if minimum is None and maximum is None:
        return None if include_missing else data.Condition(column=column, op="not_null")
    if minimum is not None and maximum is not None:
        op, value = "between", [minimum, maximum]
    elif minimum is not None:
        op, value = ">=", minimum
    else:
        op, value = "<=", maximum
    return data.Condition(column=column, op=op, value=value, include_missing=include_missing)


def category_filter(column: str, key: str) -> data.Condition | None:
    options = ui.query(data.distinct_values, column)
    missing = ui.query(data.missing_count, column)
    choices = options + ([NO_VALUE] if missing else [])
    if key in st.session_state:
        # A saved value this data no longer holds would make the widget fail: drop it.
        st.session_state[key] = [v for v in st.session_state[key] if v in choices]
    picked = st.multiselect(
        glossary.label(column),
        choices,
        key=key,
        help=(glossary.describe(column) or "")
        + (f" “{NO_VALUE}” are the {count(missing)} customers without one." if missing else ""),
        placeholder="any value",
    )
    values = [v for v in picked if v != NO_VALUE]
    if not values:
        return data.Condition(column=column, op="is_null") if NO_VALUE in picked else None
    return data.Condition(column=column, op="in", value=values, include_missing=NO_VALUE in picked)


start_from = st.selectbox("Start from", ["(new segment)", *saved], key="segment_start", on_change=load_saved_segment)
base = saved.get(start_from)
chosen = st.multiselect(
    "Filter on",
    sorted(columns, key=lambda c: glossary.label(c).lower()),
    key="filter_columns",
    format_func=glossary.label,
    placeholder="choose columns: " + ", ".join(glossary.label(c) for c in SUGGESTED if c in columns)[:140],
)

conditions: list[data.Condition] = []
for column in chosen:
    kind = data.widget_kind(columns[column])
    key = f"filter_{column}"
    with st.container(border=True):
        if kind == "boolean":
            answer = st.radio(
                glossary.label(column), ["yes", "no"], horizontal=True, key=key, help=glossary.describe(column)
            )
            condition = data.Condition(column=column, op="is_true" if answer == "yes" else "is_false")
        elif kind == "number":
            condition = number_filter(column, key)
        elif kind == "date":
            condition = date_filter(column, key)
        else:
            condition = category_filter(column, key)
    if condition is not None:
        conditions.append(condition)

channel_label = st.radio(
    "Export for",
    list(CHANNEL_LABELS.values()),
    horizontal=True,
    key="segment_channel",
    help="A channel export leaves out everyone without consent for that channel (and, for email, the unsubscribed).",
)
channel = next(key for key, label in CHANNEL_LABELS.items() if label == channel_label)

try:
    draft = data.SegmentDefinition(name="segment", conditions=conditions, channel=channel)
    matched, excluded = ui.call(data.segment_count, reader, draft)
except data.SegmentError as exc:
    st.error(str(exc))
    st.stop()
left, right = st.columns(2)
left.metric(
    "Customers in segment",
    count(matched - excluded),
    help="Customers matching every filter"
    + (f", with consent for {CHANNEL_LABELS[channel]}s" if channel else "")
    + ". A download holds exactly these rows.",
)
if channel:
    right.metric(
        f"Left out: no {channel if channel == 'email' else 'SMS'} consent",
        count(excluded),
        help=f"{count(matched)} customers match the filters; {count(excluded)} of them cannot be contacted by "
        + (
            f"{channel} (no consent, unsubscribed or no address)."
            if channel == "email"
            else "SMS (no consent or no number)."
        ),
    )

if data.may_export_contacts(reader.viewer, draft):
    contacts = st.radio(
        "Emails and phones in the downloaded file",
        list(CONTACT_CHOICES),
        format_func=CONTACT_CHOICES.get,
        horizontal=True,
        # One question per channel: a campaign's choice is never inherited from another channel's.
        key=contacts_key(channel),
        index=None if channel else (1 if ui.show_pii() else 0),
        help="A campaign needs the addresses in full; an analysis does not. The choice is recorded in the "
        "export's manifest and in the audit trail.",
    )
else:
    contacts = "masked"
    st.caption(
        "Downloads carry masked emails and phones for your role" + ("" if channel else " in analysis exports") + "."
    )
definition = data.SegmentDefinition(
    name=start_from if base else "segment",
    conditions=conditions,
    channel=channel,
    contact_details=None if contacts is None else contacts == "included",
)

preview = ui.call(data.segment_rows, reader, definition, limit=100).rows
ui.table(
    ui.masked(pl.from_arrow(preview)),
    column_config={
        "revenue_lifetime": ui.money_column("revenue_lifetime"),
        "clv_12m": ui.money_column("clv_12m"),
        "churn_probability": ui.share_column("churn_probability"),
    },
    key="segment_preview",
)
st.caption(
    f"First {min(100, preview.num_rows)} of {count(matched - excluded)} rows shown"
    + ("." if ui.show_pii() else "; emails and phones masked on screen (switch them on in the sidebar).")
)

if contacts is None:
    st.warning(
        f"For an {CHANNEL_LABELS[channel]} export, choose above whether the file carries emails and phones in full "
        "(needed to send it) or masked."
    )
else:
    stem = f"{definition.file_stem() if base else 'segment'}_{date.today():%Y%m%d}"
    mask = contacts == "masked"
    snapshot_id = reader.snapshot.snapshot_id
    for slot, (label, (suffix, mime)) in zip(st.columns(3), data.EXPORT_FORMATS.items(), strict=True):
        slot.download_button(
            f"Download {label}",
            key=f"download_{label}",
            file_name=stem + suffix,
            mime=mime,
            data=lambda fmt=label, name=stem + suffix: data.export_download(
                reader,
                definition,
                fmt,
                include_contacts=not mask,
                data_dir=data.data_dir(),
                file_name=name,
                snapshot_id=snapshot_id,
            ),
            on_click="ignore",
        )
    st.caption(f"Contact details {'masked' if mask else 'in full'} in the file; every download's manifest says so.")

st.subheader("Save this segment")
st.caption(
    "A saved segment keeps its filters (open bounds stay open) and is exported again after every nightly "
    "build, with a manifest."
)
name = st.text_input("Name", key="segment_name")
replace = name.strip() in saved and st.checkbox(f"Replace the saved segment “{name.strip()}”", key="segment_replace")
if st.button("Save segment", key="segment_save", disabled=not name.strip()):
    try:
        data.save_segment(data.data_dir(), definition.model_copy(update={"name": name.strip()}), replace=bool(replace))
    except data.SegmentError as exc:
        st.error(str(exc))
    else:
        st.success(f"Saved “{name.strip()}”.")

if saved:
    st.subheader("Saved segments")
    rows = []
    for segment in saved.values():
        manifest = data.read_json(data.exports_dir(data.data_dir()) / f"{segment.file_stem()}.manifest.json")
        try:
            now, left_out = data.segment_count(reader, segment)
        except (data.SegmentError, data.AccessDenied):
            now, left_out = None, None
        rows.append(
            {
                "Segment": segment.name,
                "Channel": CHANNEL_LABELS[segment.channel],
                "Filters": data.describe_conditions(segment.conditions, glossary.label),
                "Customers now": None if now is None else now - left_out,
                "Last export: rows": manifest.get("row_count"),
                "Last export: when": (manifest.get("exported_at") or "")[:16].replace("T", " ") or None,
                "Contact details": manifest.get("contact_details", "–"),
            }
        )
    st.dataframe(rows, hide_index=True, placeholder=ui.MISSING)
    exported = [s for s in saved.values() if data.last_export_file(data.data_dir(), s) is not None]
    if exported:
        pick, button = st.columns([3, 1])
        segment = pick.selectbox("Last export of", exported, format_func=lambda s: s.name, key="saved_export_pick")
        path = data.last_export_file(data.data_dir(), segment)
        button.download_button(
            "Download last export (CSV)",
            # Through the data layer: masked unless this viewer may have its contact details, and audited.
            data=lambda segment=segment: data.last_export_csv(reader, data.data_dir(), segment),
            file_name=path.name,
            mime="text/csv",
            key="download_saved_export",
            on_click="ignore",
        )
