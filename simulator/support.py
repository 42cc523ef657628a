"""The support desk's paged incremental export (``support/export/page_NNNNNN.jsonl``).

A ticket's life (new -> open -> [pending] -> solved -> [rated] -> closed) comes from the process in
:mod:`simulator.behaviour`. The export holds one page per day with changes; a ticket appears on
each day it changed, with its state at the end of that day. Requester details are written per
ticket (people type their details afresh each time), so one person's tickets disagree with each
other the way real ones do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from simulator import mess
from simulator.behaviour import NO_TIME, PRIORITIES, VIAS
from simulator.config import DAY, SimulationConfig, day_name, rng_for, ts_text
from simulator.people import RecordMess, render_records
from simulator.refdata import BAD_COMMENTS, GOOD_COMMENTS, LATIN1_SUBJECTS, TICKET_SUBJECTS

EXPORT_DIR = "support/export"
SUPPORT_MESS = RecordMess(email_missing=0.03, phone_missing=0.45)
MALFORMED = 0.012
FIRST_TICKET_ID = 1001

NEW, OPEN, PENDING, SOLVED, CLOSED = "new", "open", "pending", "solved", "closed"


def visible_tickets(cfg: SimulationConfig, tickets: dict[str, np.ndarray], persons: pl.DataFrame) -> pl.DataFrame:
    """Tickets created in the visible window, with ids in creation order and requester details."""
    t = pl.DataFrame({k: v for k, v in tickets.items()}).filter(pl.col("created") < cfg.visible_end_s)
    t = t.sort("created", "person", maintain_order=True).with_columns(
        ticket_id=pl.int_range(pl.len(), dtype=pl.Int64) + FIRST_TICKET_ID
    )
    rng = rng_for(cfg.seed, "support", "requesters")
    req = render_records(persons, t["person"].to_numpy(), rng, SUPPORT_MESS)
    return pl.concat([t, req.drop("person_idx").rename({"email": "req_email", "phone": "req_phone"})], how="horizontal")


def _versions(cfg: SimulationConfig, t: pl.DataFrame) -> pl.DataFrame:
    """One row per (ticket, day it changed): its last change that day; ordered as the export is."""
    steps = [
        ("created", NEW),
        ("opened", OPEN),
        ("pending", PENDING),
        ("solved", SOLVED),
        ("rating_t", SOLVED),
        ("closed", CLOSED),
    ]
    ev = pl.concat(
        [
            t.select(
                row=pl.int_range(pl.len(), dtype=pl.Int64),
                ts=pl.col(col),
                status=pl.lit(status),
                step=pl.lit(i, dtype=pl.Int8),
            )
            for i, (col, status) in enumerate(steps)
        ]
    ).filter((pl.col("ts") < cfg.visible_end_s) & (pl.col("ts") < NO_TIME))
    return (
        ev.with_columns(day=pl.col("ts") // DAY)
        .sort("row", "ts", "step", maintain_order=True)
        .unique(["row", "day"], keep="last", maintain_order=True)
        .sort("day", "ts", "row", maintain_order=True)
    )


BLOCK_DAYS = 30  # pages rendered together: bounds memory at large scale
ATTRIBUTES = (
    "ticket_id",
    "first_name",
    "last_name",
    "req_email",
    "req_phone",
    "via",
    "priority",
    "subject",
    "comment",
    "created",
    "solved",
    "rating_t",
    "score",
)


def write_support(
    cfg: SimulationConfig, out: Path, t: pl.DataFrame, schema_change_day: int, log: mess.MalformedLog, progress
) -> int:
    rng = rng_for(cfg.seed, "support", "export")
    v = _versions(cfg, t)
    n = v.height
    idx, kind = mess.pick(
        rng,
        n,
        MALFORMED,
        (mess.BAD_DATE, mess.UNKNOWN_VALUE, mess.MISSING_REQUIRED, mess.BROKEN_JSON, mess.WRONG_ENCODING),
        (3, 3, 2, 2, 1),
    )
    # Unknown values alternate between the two coded fields, so both checks get exercised.
    which = np.where(np.arange(len(idx)) % 2 == 0, "unknown_priority", "unknown_status")
    kind = np.where(kind == mess.UNKNOWN_VALUE, which, kind)
    k = pl.Series("_k", [None] * n, dtype=pl.String)
    k.scatter(idx, pl.Series(kind, dtype=pl.String))
    latin = pl.Series("_latin", [None] * n, dtype=pl.String)
    wrong = idx[kind == mess.WRONG_ENCODING]
    latin.scatter(wrong, pl.Series(LATIN1_SUBJECTS).gather(rng.integers(0, len(LATIN1_SUBJECTS), len(wrong))))
    v = v.with_columns(k, latin)

    day = v["day"].to_numpy()
    days = np.unique(day)
    page_of_day = {int(d): i for i, d in enumerate(days, start=1)}
    attrs = t.select(ATTRIBUTES)
    (out / EXPORT_DIR).mkdir(parents=True, exist_ok=True)
    locations, loc_kinds, fields = [], [], []
    for b0 in range(0, cfg.days, BLOCK_DAYS):
        lo, hi = np.searchsorted(day, [b0, b0 + BLOCK_DAYS])
        if hi == lo:
            continue
        part = v.slice(int(lo), int(hi - lo))
        text = _render(cfg, pl.concat([part, attrs[part["row"].to_numpy()]], how="horizontal"))
        pday = part["day"].to_numpy()
        pkinds = part["_k"].to_numpy()
        for d in np.unique(pday):
            page_no = page_of_day[int(d)]
            r0, r1 = np.searchsorted(pday, [d, d + 1])
            page = text.slice(int(r0), int(r1 - r0))
            if d >= schema_change_day:
                page = page.rename({"priority": "urgency"})
            header = {
                "page": page_no,
                "export_date": day_name(cfg, d),
                "after_cursor": f"page_{page_no + 1:06d}",
                "end_of_stream": page_no == len(days),
                "count": page.height,
            }
            buf = (json.dumps(header) + "\n").encode() + page.write_ndjson(None).encode()
            edits = {}
            name = f"{EXPORT_DIR}/page_{page_no:06d}.jsonl"
            for row in np.flatnonzero(pkinds[r0:r1] != None):  # noqa: E711 (numpy elementwise)
                kk = pkinds[r0 + row]
                line = int(row) + 2
                if kk == mess.BROKEN_JSON:
                    edits[line] = "truncate_json"
                elif kk == mess.WRONG_ENCODING:
                    edits[line] = "latin1"
                locations.append(f"{name}:{line}")
                loc_kinds.append(mess.UNKNOWN_VALUE if kk.startswith("unknown_") else kk)
                fields.append(
                    FIELD_OF.get(kk)
                    if kk != "unknown_priority"
                    else "urgency"
                    if d >= schema_change_day
                    else "priority"
                )
            (out / name).write_bytes(mess.splice_lines(buf, edits))
        if progress:
            progress("support pages", min(b0 + BLOCK_DAYS, cfg.days), cfg.days)
    log.add("support", "support_tickets", locations, loc_kinds, fields)
    return n


FIELD_OF = {mess.BAD_DATE: "created_at", mess.MISSING_REQUIRED: "status", "unknown_status": "status"}
_SUBJECTS, _GOOD, _BAD = pl.Series(TICKET_SUBJECTS), pl.Series(GOOD_COMMENTS), pl.Series(BAD_COMMENTS)


def _render(cfg: SimulationConfig, v: pl.DataFrame) -> pl.DataFrame:
    """Ticket versions -> the export's JSON fields, with each malformed row broken in one field."""
    k = pl.col("_k")
    rated = pl.col("ts") >= pl.col("rating_t")
    created = ts_text(v["created"], cfg)
    solved = ts_text(v["solved"].clip(upper_bound=cfg.horizon_end_s), cfg)
    return v.select(
        id=pl.col("ticket_id"),
        requester=pl.struct(
            name=pl.concat_str(["first_name", "last_name"], separator=" ", ignore_nulls=True),
            email=pl.col("req_email"),
            phone=pl.col("req_phone"),
        ),
        via=pl.Series(VIAS).gather(v["via"]),
        priority=pl.when(k == "unknown_priority")
        .then(pl.lit("critical"))
        .otherwise(pl.Series(PRIORITIES).gather(v["priority"])),
        status=pl.when(k == "unknown_status")
        .then(pl.lit("reopened"))
        .when(k == mess.MISSING_REQUIRED)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("status")),
        subject=pl.coalesce(pl.col("_latin"), _SUBJECTS.gather(v["subject"] % len(TICKET_SUBJECTS))),
        created_at=pl.when(k == mess.BAD_DATE).then(mess.bad_date(created)).otherwise(created),
        updated_at=ts_text(v["ts"], cfg),
        solved_at=pl.when(pl.col("ts") >= pl.col("solved")).then(solved),
        satisfaction_rating=pl.struct(
            score=pl.when(rated)
            .then(pl.when(pl.col("score") == 2).then(pl.lit("bad")).otherwise(pl.lit("good")))
            .when(pl.col("ts") >= pl.col("solved"))
            .then(pl.lit("offered"))
            .otherwise(pl.lit("unoffered")),
            comment=pl.when(rated & (pl.col("score") == 2))
            .then(_BAD.gather(v["comment"] % len(BAD_COMMENTS)))
            .when(rated)
            .then(_GOOD.gather(v["comment"] % len(GOOD_COMMENTS))),
        ),
    )
