"""Streamlit glue shared by the pages: the viewer, the cached reader, cached queries, empty states,
PII masking.

The snapshot's connection is cached per snapshot id, so a newly published snapshot is picked up
on the next rerun (the pointer is read on every rerun; it is one small file) while a page that is
rendering keeps the snapshot it started with. Every reader carries the signed-in viewer, and
cached answers are keyed by what the viewer may see, so one role never gets another's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import streamlit as st

from app import data, login
from app.format import change, kpi_value
from crm.security.roles import AccessDenied, Viewer
from crm.serving.snapshots import Snapshot, SnapshotError

QUERY_TTL_SECONDS = 600
SHOW_PII_KEY = "show_pii"


@st.cache_resource(max_entries=3, show_spinner=False)
def _connection(snapshot_id: str, _snapshot: Snapshot):
    return data.open_snapshot(_snapshot)


def _reader(snapshot_id: str, _snapshot: Snapshot) -> data.SnapshotReader:
    return data.SnapshotReader(_snapshot, current_viewer(), connection=_connection(snapshot_id, _snapshot))


def current_viewer() -> Viewer:
    """The signed-in viewer (the app's entry point signs people in before any page runs)."""
    viewer = login.current_viewer()
    if viewer is None:
        st.stop()
    return viewer


def require_permission(permission: str, what: str = "") -> Viewer:
    """For a page that needs one permission (e.g. "steward"): a plain refusal otherwise."""
    viewer = current_viewer()
    if not viewer.can(permission):
        st.error(f"Your role ({viewer.role}) cannot open this page{': ' + what if what else ''}.")
        st.stop()
    return viewer


def current_snapshot() -> Snapshot | None:
    try:
        return data.find_snapshot()
    except SnapshotError as exc:
        st.error(f"The published snapshot cannot be read: {exc}")
        st.stop()


def reader() -> data.SnapshotReader:
    """The current snapshot's reader; shows the empty state and stops the page when there is none."""
    snapshot = current_snapshot()
    if snapshot is None:
        st.info(data.NO_SNAPSHOT)
        st.stop()
    return _reader(snapshot.snapshot_id, snapshot)


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False, max_entries=500)
def _cached(snapshot_id: str, scope: tuple, name: str, args: tuple, _snapshot: Snapshot) -> Any:
    return getattr(data, name)(_reader(snapshot_id, _snapshot), *args)


def query(function: Callable, *args) -> Any:
    """``function(reader, *args)`` from app.data, cached per snapshot, viewer scope and arguments; a
    refusal of the data layer becomes a plain message and stops the page."""
    current = reader()
    try:
        return _cached(
            current.snapshot.snapshot_id, current.viewer.cache_key, function.__name__, tuple(args), current.snapshot
        )
    except AccessDenied as exc:
        st.error(str(exc))
        st.stop()


def call(function: Callable, *args, **kwargs) -> Any:
    """``function(*args)`` from app.data, uncached; a refusal of the data layer becomes a plain message."""
    try:
        return function(*args, **kwargs)
    except AccessDenied as exc:
        st.error(str(exc))
        st.stop()


def require_scores() -> None:
    if not reader().has_scores:
        st.info(data.NO_SCORES)
        st.stop()


def show_pii() -> bool:
    """Contact details in clear: only for a viewer with the ``unmask`` permission who switched them on."""
    viewer = login.current_viewer()
    return viewer is not None and viewer.can("unmask") and bool(st.session_state.get(SHOW_PII_KEY, False))


def masked(frame: pl.DataFrame) -> pl.DataFrame:
    """Emails and phones masked unless the viewer may see them and switched them on in the sidebar
    (the data layer already masks everything for a viewer without the permission)."""
    return frame if show_pii() else data.mask_frame(frame)


def masked_record(record: dict[str, Any]) -> dict[str, Any]:
    contact = {name: [record.get(name)] for name in ("email", "phone")}
    return {**record, **masked(pl.DataFrame(contact, schema={name: pl.String for name in contact})).row(0, named=True)}


def metric_row(kpis: list[data.Kpi]) -> None:
    for column, kpi in zip(st.columns(len(kpis)), kpis, strict=True):
        column.metric(
            kpi.label,
            kpi_value(kpi.current, kpi.kind),
            change(kpi.change),
            help=None if kpi.previous is None else f"previous period: {kpi_value(kpi.previous, kpi.kind)}",
        )
