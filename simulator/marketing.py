"""The marketing platform: its contacts, campaigns, what contacts did, and its daily file drops.

Engagement is simulated before purchases because clicks lift purchase rates; conversions are
derived afterwards from the purchases that fell inside a click's lift window. Parameters:

* 60 % of persons sign up, ``Uniform(-90, +180)`` days around their first purchase (never before
  the start); 85 % opt in to email at sign-up, 35 % to SMS (another 15 % later, once their phone is
  known); 70 % give a phone at sign-up, half of the others add it later.
* campaigns launch on weekdays (Poisson 0.45/day, 0.25 Sat, 0.1 Sun), 20 % SMS; each eligible contact
  receives each campaign with probability 0.42 (email) / 0.30 (SMS).
* per send: 2 % soft bounce (all sends to a mistyped address bounce), else delivered; opened with the
  contact's ``open_p ~ Beta(2, 5)`` after ``Exp(5 h)``; clicked with ``click_p ~ Beta(2, 6)``;
  1 % of email opens unsubscribe (no email after that). After a person's true dropout only 35 % of
  the opens that would have happened still happen (the lift process never sees those clicks, so
  this does not feed back into purchases).
* file mess: 3 % of events arrive one (2 %) or two (1 %) days late; 1.5 % are delivered twice (same
  event_id, same or next file); ~0.9 % of lines are malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from simulator import mess
from simulator.behaviour import NO_TIME, Clicks
from simulator.config import DAY, HOUR, SimulationConfig, chunks, day_name, rng_for, ts_expr, ts_text
from simulator.people import TYPO, RecordMess, render_records
from simulator.refdata import CAMPAIGN_OFFERS, CAMPAIGN_THEMES

SIGNUP_SHARE = 0.60
EMAIL_OPT_IN = 0.85
SMS_OPT_IN = 0.35
SMS_LATER = 0.15
PHONE_AT_SIGNUP = 0.70
EMAIL_SEND_PROB = 0.42
SMS_SEND_PROB = 0.30
SOFT_BOUNCE = 0.02
UNSUB_PER_OPEN = 0.01
OPENS_AFTER_DROPOUT = 0.35
LATE_1, LATE_2 = 0.02, 0.01
DUPLICATE = 0.015
MALFORMED_EVENTS = 0.009
MALFORMED_CONTACTS = 0.02
ENGAGEMENT_CHUNK = 50_000  # contacts per engagement chunk (fixed: the random streams depend on it)
NEVER = np.iinfo(np.int32).max  # "did not happen" in the int32 per-send time columns
# Events are built and written in blocks of launch days: bounds memory; an event spills at most a
# few days past its block (open delay, late delivery), which the writer carries over.
EVENT_BLOCK_DAYS = 30

EVENT_TYPES = ("sent", "delivered", "open", "click", "unsubscribe", "bounce", "conversion")
SENT, DELIVERED, OPEN, CLICK, UNSUB, BOUNCE, CONVERSION = range(7)
MISSPELT = {
    "sent": "send",
    "delivered": "delivred",
    "open": "opened",
    "click": "clicked",
    "unsubscribe": "unsub",
    "bounce": "bounced",
    "conversion": "purchase",
}
DEVICES = ("mobile", "desktop", "tablet")
EVENTS_DIR, CONTACTS_DIR, CAMPAIGNS_DIR = "marketing/events", "marketing/contacts", "marketing/campaigns"
EVENT_COLUMNS = ["event_id", "email", "campaign_id", "event_type", "event_ts", "revenue"]
CONTACT_COLUMNS = [
    "Email",
    "First Name",
    "Last Name",
    "Phone",
    "Email Opt In",
    "Email Opt In Date",
    "SMS Opt In",
    "SMS Opt In Date",
    "Unsubscribed Date",
    "Last Modified",
]
MARKETING_MESS = RecordMess(phone_missing=0.0)


@dataclass
class Marketing:
    contacts: pl.DataFrame  # row = contact_idx
    campaigns: pl.DataFrame  # row = campaign_idx, in launch order
    contact_of_person: np.ndarray  # -1 for persons without a marketing contact
    clicks: Clicks
    sends: list[dict[str, np.ndarray]]  # visible sends, per contact chunk, grouped by event block
    unsub_t: np.ndarray  # per contact, NO_TIME if never

    def sends_of_block(self, b: int) -> dict[str, np.ndarray]:
        cols = [k for k in self.sends[0] if k != "_bounds"]
        return {k: np.concatenate([p[k][p["_bounds"][b] : p["_bounds"][b + 1]] for p in self.sends]) for k in cols}


def build_contacts(cfg: SimulationConfig, persons: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    rng = rng_for(cfg.seed, "marketing", "contacts")
    n = persons.height
    t0 = persons["t0"].to_numpy()
    who = np.flatnonzero(rng.random(n) < SIGNUP_SHARE)
    signup = t0[who] + (rng.uniform(-90, 180, len(who)) * DAY).astype(np.int64)
    # Nobody signs up before the platform's history starts: redraw those inside the window.
    early = signup < 0
    signup[early] = (rng.random(int(early.sum())) * (t0[who][early] + 180 * DAY)).astype(np.int64)
    signup = np.minimum(signup, cfg.horizon_end_s - 1)
    rec = render_records(persons, who, rng, MARKETING_MESS)
    m = len(who)
    phone_now = rng.random(m) < PHONE_AT_SIGNUP
    phone_t = np.where(
        phone_now,
        signup,
        np.where(rng.random(m) < 0.5, signup + (rng.exponential(200, m) * DAY).astype(np.int64), NO_TIME),
    )
    sms_at_signup = phone_now & (rng.random(m) < SMS_OPT_IN)
    sms_later = ~sms_at_signup & (rng.random(m) < SMS_LATER)
    sms_t = np.where(
        sms_at_signup,
        signup,
        np.where(
            sms_later & (phone_t < NO_TIME),
            np.maximum(phone_t, signup + (rng.exponential(120, m) * DAY).astype(np.int64)),
            NO_TIME,
        ),
    )
    contacts = rec.with_columns(
        signup_t=pl.Series(signup),
        phone_t=pl.Series(phone_t),
        sms_t=pl.Series(sms_t),
        email_optin=pl.Series(rng.random(m) < EMAIL_OPT_IN),
        open_p=pl.Series(rng.beta(2, 5, m)),
        click_p=pl.Series(rng.beta(2, 6, m)),
    )
    # The platform keys contacts by address: one contact per (normalised) address, the first
    # person to sign up with it keeps it (a shared info@ mailbox belongs to whoever signed up first).
    contacts = (
        contacts.with_columns(_norm=pl.col("email").str.strip_chars().str.to_lowercase())
        .sort("signup_t", "person_idx", maintain_order=True)
        .unique("_norm", keep="first", maintain_order=True)
        .drop("_norm")
        .with_columns(contact_idx=pl.int_range(pl.len(), dtype=pl.Int64))
    )
    contact_of_person = np.full(n, -1, dtype=np.int64)
    contact_of_person[contacts["person_idx"].to_numpy()] = contacts["contact_idx"].to_numpy()
    return contacts, contact_of_person


def build_campaigns(cfg: SimulationConfig) -> pl.DataFrame:
    rng = rng_for(cfg.seed, "marketing", "campaigns")
    n_days = cfg.days + cfg.horizon_days
    dates = np.datetime64(cfg.start.isoformat(), "D") + np.arange(n_days)
    dow = (dates.astype(np.int64) + 3) % 7
    per_day = rng.poisson(np.select([dow == 5, dow == 6], [0.25, 0.10], 0.45))
    day = np.repeat(np.arange(n_days), per_day)
    k = len(day)
    launch = day * DAY + 8 * HOUR + rng.integers(0, 4 * HOUR, k)
    launch.sort()
    offer_idx = rng.integers(0, len(CAMPAIGN_OFFERS), k)
    theme = np.array(CAMPAIGN_THEMES)[rng.integers(0, len(CAMPAIGN_THEMES), k)]
    return pl.DataFrame(
        {
            "campaign_idx": np.arange(k, dtype=np.int64),
            "launch_t": launch.astype(np.int64),
            "channel": np.where(rng.random(k) < 0.2, "sms", "email"),
            "theme": theme,
            "offer": np.array([o for o, _ in CAMPAIGN_OFFERS])[offer_idx],
            "discount_pct": np.array([d for _, d in CAMPAIGN_OFFERS])[offer_idx],
        }
    ).with_columns(
        campaign_id=pl.lit("CMP-") + (pl.col("campaign_idx") + 1).cast(pl.String).str.zfill(5),
        name=pl.col("theme") + " #" + (pl.col("campaign_idx") + 1).cast(pl.String),
    )


def _sample_sends(rng, contact, win_lo, launches, camp_ids, prob):
    """Each contact receives each campaign launched in [win_lo, horizon) with probability ``prob``.

    One Bernoulli draw per (contact, eligible campaign) pair; pairs come out grouped by contact and
    in launch order, so nothing needs sorting or de-duplicating.
    """
    lo = np.searchsorted(launches, win_lo)
    n_elig = len(launches) - lo
    kept = np.flatnonzero(rng.random(int(n_elig.sum()), dtype=np.float32) < prob)
    owner = np.repeat(np.arange(len(contact), dtype=np.int32), n_elig)[kept]
    first_pair = np.cumsum(n_elig) - n_elig
    pick = lo[owner] + (kept - first_pair[owner])
    return contact[owner], camp_ids[pick]


def simulate_engagement(
    cfg: SimulationConfig, contacts: pl.DataFrame, campaigns: pl.DataFrame, contact_of_person: np.ndarray
) -> Marketing:
    launch = campaigns["launch_t"].to_numpy()
    is_email = campaigns["channel"].to_numpy() == "email"
    email_idx, sms_idx = np.flatnonzero(is_email), np.flatnonzero(~is_email)
    c_signup = contacts["signup_t"].to_numpy()
    c_sms = contacts["sms_t"].to_numpy()
    c_optin = contacts["email_optin"].to_numpy()
    c_typo = contacts["email_kind"].to_numpy() == TYPO
    c_open, c_click = contacts["open_p"].to_numpy(), contacts["click_p"].to_numpy()
    c_person = contacts["person_idx"].to_numpy()
    visible_end = cfg.visible_end_s

    sends_parts, clicks_parts = [], []
    n_blocks = -(-cfg.days // EVENT_BLOCK_DAYS)
    unsub_t = np.full(contacts.height, NO_TIME, dtype=np.int64)
    for chunk_no, (lo, hi) in enumerate(chunks(contacts.height, ENGAGEMENT_CHUNK)):
        rng = rng_for(cfg.seed, "marketing", "engagement", chunk_no)
        ids = np.arange(lo, hi)
        e_ids = ids[c_optin[lo:hi]]
        ec, ecamp = _sample_sends(rng, e_ids, c_signup[e_ids], launch[email_idx], email_idx, EMAIL_SEND_PROB)
        s_ids = ids[c_sms[lo:hi] < NO_TIME]
        sc, scamp = _sample_sends(rng, s_ids, c_sms[s_ids], launch[sms_idx], sms_idx, SMS_SEND_PROB)
        contact = np.concatenate([ec, sc]).astype(np.int32)
        camp = np.concatenate([ecamp, scamp]).astype(np.int32)
        n_email = len(ec)
        m = len(contact)
        sent = (launch[camp] + rng.integers(0, 2 * HOUR, m)).astype(np.int32)
        bounce = rng.random(m, dtype=np.float32) < SOFT_BOUNCE
        bounce[:n_email] |= c_typo[contact[:n_email]]
        delivered = sent + rng.integers(1, 300, m, dtype=np.int32)
        # Delays are drawn only for the sends that reach that step.
        o = np.flatnonzero(~bounce & (rng.random(m, dtype=np.float32) < c_open[contact]))
        open_t = np.full(m, NEVER, dtype=np.int32)
        open_t[o] = delivered[o] + np.minimum(rng.exponential(5 * HOUR, len(o)), 3 * DAY).astype(np.int32) + 1
        c = o[rng.random(len(o), dtype=np.float32) < c_click[contact[o]]]
        click_t = np.full(m, NEVER, dtype=np.int32)
        click_t[c] = open_t[c] + rng.exponential(180, len(c)).astype(np.int32) + 5
        u = o[(o < n_email) & (rng.random(len(o), dtype=np.float32) < UNSUB_PER_OPEN)]
        unsub_at = open_t[u].astype(np.int64) + rng.integers(10, 600, len(u))
        # The first unsubscribe ends the email stream: later email sends never happen.
        first_unsub = np.full(hi - lo, NO_TIME, dtype=np.int64)
        np.minimum.at(first_unsub, contact[u] - lo, unsub_at)
        unsub_t[lo:hi] = first_unsub
        unsub_col = np.full(m, NEVER, dtype=np.int32)
        is_first = unsub_at == first_unsub[contact[u] - lo]
        unsub_col[u[is_first]] = unsub_at[is_first]
        ok = np.ones(m, dtype=bool)
        ok[:n_email] = sent[:n_email] <= first_unsub[contact[:n_email] - lo]
        has_click = ok & (click_t < NEVER)
        clicks_parts.append((c_person[contact[has_click]], click_t[has_click], camp[has_click]))
        keep = ok & (sent < visible_end)
        part = {
            "contact": contact[keep],
            "campaign": camp[keep],
            "sent": sent[keep],
            "bounce": bounce[keep],
            "delivered": delivered[keep],
            "open_t": open_t[keep],
            "click_t": click_t[keep],
            "unsub_t": unsub_col[keep],
        }
        # Writers walk the sends in blocks of launch days: group each part by block now (a stable
        # radix sort on a small integer), so a block is a slice of every part.
        block = (launch[part["campaign"]] // (EVENT_BLOCK_DAYS * DAY)).astype(np.int16)
        order = np.argsort(block, kind="stable")
        part = {k: v[order] for k, v in part.items()}
        part["_bounds"] = np.searchsorted(block[order], np.arange(n_blocks + 1))
        sends_parts.append(part)

    if not sends_parts:  # a company so small that nobody signed up
        i32 = np.zeros(0, dtype=np.int32)
        columns = ("contact", "campaign", "sent", "delivered", "open_t", "click_t", "unsub_t")
        sends_parts.append(dict.fromkeys(columns, i32))
        sends_parts[0].update(bounce=np.zeros(0, dtype=bool), _bounds=np.zeros(n_blocks + 1, dtype=np.int64))
        clicks_parts.append((i32, i32, i32))
    cp = np.concatenate([c[0] for c in clicks_parts]).astype(np.int64)
    ct = np.concatenate([c[1] for c in clicks_parts]).astype(np.int64)
    cc = np.concatenate([c[2] for c in clicks_parts]).astype(np.int32)
    order = np.lexsort((ct, cp))
    return Marketing(
        contacts=contacts,
        campaigns=campaigns,
        contact_of_person=contact_of_person,
        clicks=Clicks(person=cp[order], ts=ct[order], campaign=cc[order]),
        sends=sends_parts,
        unsub_t=unsub_t,
    )


# ----------------------------------------------------------------------------------------------------
# Writing the file drops
# ----------------------------------------------------------------------------------------------------


def _dropout_thinning(rng, mk: Marketing, s: dict[str, np.ndarray], dropout_t: np.ndarray) -> dict[str, np.ndarray]:
    """After dropout most opens (and their clicks) do not happen; unsubscribes are kept as they shaped the stream."""
    person = mk.contacts["person_idx"].to_numpy()[s["contact"]]
    u = rng.random(len(person), dtype=np.float32)
    after = s["sent"] > dropout_t[person]
    lose = after & (s["open_t"] < NEVER) & (s["unsub_t"] == NEVER) & (u >= OPENS_AFTER_DROPOUT)
    s["open_t"] = np.where(lose, NEVER, s["open_t"])
    s["click_t"] = np.where(lose, NEVER, s["click_t"])
    return s


def _event_rows(sends: dict[str, np.ndarray], conv: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sends (and conversions) -> one row per event, as parallel arrays."""
    parts = []
    for etype, ts, mask in (
        (SENT, sends["sent"], None),
        (BOUNCE, sends["delivered"], sends["bounce"]),
        (DELIVERED, sends["delivered"], ~sends["bounce"]),
        (OPEN, sends["open_t"], sends["open_t"] < NEVER),
        (CLICK, sends["click_t"], sends["click_t"] < NEVER),
        (UNSUB, sends["unsub_t"], sends["unsub_t"] < NEVER),
    ):
        sel = slice(None) if mask is None else mask
        t = ts[sel]
        parts.append(
            {
                "contact": sends["contact"][sel],
                "campaign": sends["campaign"][sel],
                "etype": np.full(len(t), etype, dtype=np.int8),
                "ts": t.astype(np.int64),
                "revenue": np.full(len(t), np.nan),
            }
        )
    parts.append(
        {
            "contact": conv["contact"].astype(np.int32),
            "campaign": conv["campaign"].astype(np.int32),
            "etype": np.full(len(conv["ts"]), CONVERSION, dtype=np.int8),
            "ts": conv["ts"].astype(np.int64),
            "revenue": conv["revenue"].astype(np.float64),
        }
    )
    return _concat(parts)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(arrays: dict[str, np.ndarray], rows) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in arrays.items()}


def write_marketing(
    cfg: SimulationConfig,
    out: Path,
    mk: Marketing,
    dropout_t: np.ndarray,
    conversions: dict[str, np.ndarray],
    schema_change_day: int,
    log: mess.MalformedLog,
    progress,
) -> tuple[dict[str, int], dict]:
    """Writes the three file drops; returns row counts per entity and the event delivery stats."""
    stats = {"lines": 0, "duplicate_lines": 0, "late_lines": 0}
    counts = {"marketing_campaigns": _write_campaigns(cfg, out, mk.campaigns)}
    counts["marketing_contacts"] = _write_contacts(cfg, out, mk, log)
    _write_events(cfg, out, mk, dropout_t, conversions, schema_change_day, log, progress, stats)
    counts["marketing_events"] = stats["lines"]
    return counts, {
        "duplicate_share": round(stats["duplicate_lines"] / max(stats["lines"], 1), 4),
        "late_share": round(stats["late_lines"] / max(stats["lines"], 1), 4),
        **stats,
    }


def _write_campaigns(cfg: SimulationConfig, out: Path, campaigns: pl.DataFrame) -> int:
    vis = campaigns.filter(pl.col("launch_t") < cfg.visible_end_s).with_columns(
        day=(pl.col("launch_t") // DAY), launch_ts=ts_expr("launch_t", cfg)
    )
    (out / CAMPAIGNS_DIR).mkdir(parents=True, exist_ok=True)
    for (day,), part in vis.partition_by("day", as_dict=True, maintain_order=True).items():
        part.select("campaign_id", "name", "channel", "offer", "discount_pct", "launch_ts").write_csv(
            out / CAMPAIGNS_DIR / f"campaigns_{day_name(cfg, day)}.csv", float_precision=0
        )
    return vis.height


def _write_contacts(cfg: SimulationConfig, out: Path, mk: Marketing, log: mess.MalformedLog) -> int:
    """The consent export: one row per contact per day it was created or changed (its state that evening)."""
    c = mk.contacts.with_columns(unsub_t=pl.Series(mk.unsub_t))
    change_cols = ["signup_t", "phone_t", "sms_t", "unsub_t"]
    changes = (
        c.select("contact_idx", pl.concat_list(change_cols).alias("t"))
        .explode("t")
        .filter(pl.col("t") < cfg.visible_end_s)
        .join(c, on="contact_idx", how="left")
        .filter(pl.col("t") >= pl.col("signup_t"))
        .with_columns(day=pl.col("t") // DAY)
        .sort("day", "contact_idx", "t", maintain_order=True)
        .unique(["day", "contact_idx"], keep="last", maintain_order=True)
    )
    rows = changes.select(
        "day",
        "contact_idx",
        Email=pl.col("email"),
        **{
            "First Name": pl.col("first_name"),
            "Last Name": pl.col("last_name"),
            "Phone": pl.when(pl.col("phone_t") <= pl.col("t")).then(pl.col("phone")),
            "Email Opt In": pl.col("email_optin") & (pl.col("unsub_t") > pl.col("t")),
            "Email Opt In Date": pl.when(pl.col("email_optin")).then(ts_expr("signup_t", cfg)),
            "SMS Opt In": pl.col("sms_t") <= pl.col("t"),
            "SMS Opt In Date": pl.when(pl.col("sms_t") <= pl.col("t")).then(ts_expr("sms_t", cfg)),
            "Unsubscribed Date": pl.when(pl.col("unsub_t") <= pl.col("t")).then(ts_expr("unsub_t", cfg)),
            "Last Modified": ts_expr("t", cfg),
        },
    ).with_columns(line=pl.int_range(pl.len()).over("day") + 2)

    rng = rng_for(cfg.seed, "marketing", "contacts-mess")
    non_ascii = (
        rows.select(pl.concat_str(["First Name", "Last Name"], ignore_nulls=True).str.contains(r"[^\x00-\x7F]"))
        .to_series()
        .to_numpy()
    )
    kinds = (mess.BAD_DATE, mess.BROKEN_CSV_LINE, mess.WRONG_ENCODING)
    idx, kind = mess.pick(rng, rows.height, MALFORMED_CONTACTS, kinds, (3, 3, 1))
    # Latin-1 lines need a character outside ASCII; the other rows get a broken line instead.
    kind = np.where((kind == mess.WRONG_ENCODING) & ~non_ascii[idx], mess.BROKEN_CSV_LINE, kind)
    extra_enc = np.flatnonzero(non_ascii)
    extra_enc = extra_enc[~np.isin(extra_enc, idx)][: max(1, len(extra_enc) // 10)]
    idx = np.concatenate([idx, extra_enc])
    kind = np.concatenate([kind, np.full(len(extra_enc), mess.WRONG_ENCODING)])
    bad = np.zeros(rows.height, dtype=bool)
    bad[idx[kind == mess.BAD_DATE]] = True
    rows = rows.with_columns(
        pl.when(pl.Series(bad))
        .then(mess.bad_date(pl.col("Last Modified")))
        .otherwise(pl.col("Last Modified"))
        .alias("Last Modified")
    )
    field_op = np.where(np.arange(len(kind)) % 2 == 0, "drop_field", "extra_field")
    line_ops = np.where(kind == mess.WRONG_ENCODING, "latin1", field_op)
    meta = rows.select("day", "line")[idx].with_columns(kind=pl.Series(kind), op=pl.Series(line_ops))

    (out / CONTACTS_DIR).mkdir(parents=True, exist_ok=True)
    edits_by_day: dict[int, dict[int, str]] = {}
    for d, ln, k, op in meta.iter_rows():
        if k != mess.BAD_DATE:
            edits_by_day.setdefault(d, {})[ln] = op
    for (day,), part in rows.partition_by("day", as_dict=True, maintain_order=True).items():
        buf = part.select(CONTACT_COLUMNS).write_csv(None).encode()
        data = mess.splice_lines(buf, edits_by_day.get(day, {}))
        (out / CONTACTS_DIR / f"contacts_{day_name(cfg, day)}.csv").write_bytes(data)
    loc = meta.with_columns(
        location=pl.lit(CONTACTS_DIR + "/contacts_")
        + pl.col("day").map_elements(lambda d: day_name(cfg, d), return_dtype=pl.String)
        + ".csv:"
        + pl.col("line").cast(pl.String)
    )
    log.add(
        "marketing",
        "marketing_contacts",
        loc["location"],
        loc["kind"],
        loc["kind"].replace_strict({mess.BAD_DATE: "Last Modified"}, default=None, return_dtype=pl.String),
    )
    return rows.height


def _write_events(cfg, out, mk: Marketing, dropout_t, conversions, schema_change_day, log, progress, stats) -> None:
    emails = mk.contacts["email"]
    campaign_ids = mk.campaigns["campaign_id"]
    conv_day = conversions["ts"] // DAY
    (out / EVENTS_DIR).mkdir(parents=True, exist_ok=True)
    pending: dict[str, np.ndarray] | None = None
    next_id = 0
    day_names = [day_name(cfg, d) for d in range(cfg.days)]
    for b_no, d0 in enumerate(range(0, cfg.days, EVENT_BLOCK_DAYS)):
        d1 = min(cfg.days, d0 + EVENT_BLOCK_DAYS)
        rng = rng_for(cfg.seed, "marketing", "events", b_no)
        sends = _dropout_thinning(rng, mk, mk.sends_of_block(b_no), dropout_t)
        c_sel = (conv_day >= d0) & (conv_day < d1)
        ev = _event_rows(sends, _take(conversions, c_sel))
        if len(ev["ts"]) and ev["ts"].max() >= cfg.visible_end_s:  # only the last block reaches past the end
            ev = _take(ev, ev["ts"] < cfg.visible_end_s)
        n = len(ev["ts"])
        # Ids follow generation order (deterministic); platforms' ids are not chronological either.
        ev["event_no"] = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        u = rng.random(n)
        ev["file_day"] = ev["ts"] // DAY + np.where(u < LATE_2, 2, np.where(u < LATE_2 + LATE_1, 1, 0))
        ev["copy"] = np.zeros(n, dtype=np.int8)
        dups = _take(ev, rng.random(n) < DUPLICATE)
        dups["file_day"] = dups["file_day"] + rng.integers(0, 2, len(dups["ts"]))
        dups["copy"][:] = 1
        ev = _concat([pending, ev, dups] if pending is not None else [ev, dups])
        if d1 >= cfg.days:  # what would arrive after the end date is not in any file yet
            ready, pending = _take(ev, ev["file_day"] < cfg.days), None
        else:
            # Later blocks only produce events at or after day d1, so days before d1 are complete.
            done = ev["file_day"] < d1
            ready, pending = _take(ev, done), _take(ev, ~done)
        _write_event_files(cfg, out, ready, emails, campaign_ids, schema_change_day, day_names, rng, log, stats)
        if progress:
            progress("marketing events", d1, cfg.days)


def _file_order(ev: dict[str, np.ndarray]) -> np.ndarray:
    """Row order for writing: by drop day, then event time; ties in generation order.

    A key that is unique per row (day, time within the day's window, event number, copy) sorts
    faster without a stable sort and still has exactly one order.
    """
    day, ts = ev["file_day"].astype(np.uint64), ev["ts"]
    rel = (ts - (ev["file_day"] - 3) * DAY).astype(np.uint64)  # an event is at most 3 days older than its file
    no = ev["event_no"].astype(np.uint64)
    if len(no) and (int(no.max()) >= 1 << 28 or int(day.max()) >= 1 << 15):
        return np.lexsort((ev["copy"], ev["event_no"], ts, ev["file_day"]))
    key = (day << np.uint64(48)) | (rel << np.uint64(29)) | (no << np.uint64(1)) | ev["copy"].astype(np.uint64)
    return np.argsort(key)


def _write_event_files(
    cfg, out, ev: dict[str, np.ndarray], emails, campaign_ids, schema_change_day, day_names, rng, log, stats
) -> None:
    """A block of complete drop days -> one CSV per day, rows in time order."""
    n = len(ev["ts"])
    if n == 0:
        return
    ev = _take(ev, _file_order(ev))
    file_day, etype = ev["file_day"], ev["etype"]
    stats["lines"] += n
    stats["duplicate_lines"] += int((ev["copy"] == 1).sum())
    stats["late_lines"] += int((file_day > ev["ts"] // DAY).sum())
    days, first_row = np.unique(file_day, return_index=True)
    bounds = np.r_[first_row, n]
    line = np.arange(n) - np.repeat(first_row, np.diff(bounds)) + 2  # header is line 1

    idx, kind = mess.pick(
        rng,
        n,
        MALFORMED_EVENTS,
        (mess.BAD_DATE, mess.UNKNOWN_VALUE, mess.MISSING_REQUIRED, mess.NON_NUMERIC, mess.BROKEN_CSV_LINE),
        (3, 3, 2, 1, 2),
    )
    kind = np.where((kind == mess.NON_NUMERIC) & (etype[idx] != CONVERSION), mess.BAD_DATE, kind)

    # revenue and device are filled only where they exist (conversions; engagement after the change)
    conv = np.flatnonzero(etype == CONVERSION)
    revenue = pl.repeat(None, n, dtype=pl.String, eager=True).alias("revenue")
    revenue.scatter(conv, pl.select(mess.money(pl.lit(pl.Series(ev["revenue"][conv])))).to_series())
    with_device = np.flatnonzero(np.isin(etype, [OPEN, CLICK, UNSUB, CONVERSION]) & (file_day >= schema_change_day))
    device = pl.repeat(None, n, dtype=pl.String, eager=True).alias("device")
    device.scatter(with_device, pl.Series(DEVICES).gather(rng.choice(3, len(with_device), p=[0.6, 0.35, 0.05])))
    text = pl.DataFrame(
        {
            "event_id": ev["event_no"] + 1,
            "email": emails.gather(ev["contact"]),
            "campaign_id": campaign_ids.gather(ev["campaign"]),
            "event_type": pl.Series(EVENT_TYPES).gather(ev["etype"]),
            "event_ts": ts_text(ev["ts"], cfg),
            "revenue": revenue,
            "device": device,
        }
    )
    # Break the chosen rows in one field each (only those rows are touched). Events files are
    # written unquoted (no value needs quotes), so a comma inside a value really adds a field; it
    # goes after the line's last value, as a non-empty field, because readers forgive a trailing
    # empty field.
    bad = text[idx].with_columns(_rev=pl.Series(ev["revenue"][idx]))
    has_device = file_day[idx] >= schema_change_day
    for col, k, value, where in (
        ("event_ts", mess.BAD_DATE, mess.bad_date(pl.col("event_ts")), True),
        ("event_type", mess.UNKNOWN_VALUE, pl.col("event_type").replace(MISSPELT), True),
        ("email", mess.MISSING_REQUIRED, pl.lit(""), True),
        ("revenue", mess.NON_NUMERIC, pl.lit("GBP ") + mess.money(pl.col("_rev")), True),
        ("revenue", mess.BROKEN_CSV_LINE, pl.col("revenue").fill_null("") + ",n/a", ~has_device),
        ("device", mess.BROKEN_CSV_LINE, pl.col("device").fill_null("") + ",n/a", has_device),
    ):
        sel = (kind == k) & where
        if sel.any():
            fixed = bad.filter(pl.Series(sel)).with_columns(value.alias(col))[col]  # literals broadcast
            text = text.with_columns(text[col].clone().scatter(idx[sel], fixed))
    field_of = {
        mess.BAD_DATE: "event_ts",
        mess.UNKNOWN_VALUE: "event_type",
        mess.MISSING_REQUIRED: "email",
        mess.NON_NUMERIC: "revenue",
    }
    log.add(
        "marketing",
        "marketing_events",
        [f"{EVENTS_DIR}/events_{day_names[d]}.csv:{ln}" for d, ln in zip(file_day[idx], line[idx], strict=True)],
        kind,
        [field_of.get(k) for k in kind],
    )

    # From the schema change day on, files carry the trailing device column.
    for i, d in enumerate(days):
        cols = EVENT_COLUMNS + (["device"] if d >= schema_change_day else [])
        part = text.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])).select(cols)
        part.write_csv(out / EVENTS_DIR / f"events_{day_names[d]}.csv", quote_style="never")
