"""Orchestration: simulate the company, write the three sources and the ground truth atomically.

Order matters because the process is coupled: marketing engagement (clicks) lifts purchases;
purchases raise tickets and conversions; bad tickets raise dropout; dropout dampens engagement.
Everything is written into temporary folders that replace ``out`` and ``truth_out`` only at the end,
so a crash never leaves half a company behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from simulator import behaviour, marketing, mess, sales, shop, support, truth
from simulator.config import SimulationConfig, chunks, rng_for
from simulator.people import build_population
from simulator.profiles import profile

Progress = Callable[[str, int, int], None]

SALES_DB = "sales/sales.sqlite"


def generate(cfg: SimulationConfig, progress: Progress | None = None) -> dict:
    """Write the company to ``cfg.out`` and its ground truth to ``cfg.truth_dir``, replacing both.

    ``progress(stage, done, total)`` is called as stages advance (stages may interleave: the
    sales database is written by a worker process while marketing and support are written).
    Returns the mess report, also written to ``mess_report.json``.
    """
    out, truth_dir = Path(cfg.out).resolve(), cfg.truth_dir.resolve()
    if out == truth_dir or out in truth_dir.parents or truth_dir in out.parents:
        raise ValueError("out and truth_out must be separate folders (the pipeline must never read the truth)")
    tmp_out, tmp_truth = _fresh_tmp(out), _fresh_tmp(truth_dir)
    try:
        report = _generate_into(cfg, tmp_out, tmp_truth, progress or (lambda stage, done, total: None))
        _swap(tmp_out, out)
        _swap(tmp_truth, truth_dir)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        shutil.rmtree(tmp_truth, ignore_errors=True)
        raise
    return report


def _fresh_tmp(target: Path) -> Path:
    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _swap(tmp: Path, target: Path) -> None:
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _generate_into(cfg: SimulationConfig, out: Path, truth_dir: Path, progress: Progress) -> dict:
    log = mess.MalformedLog()
    srng = rng_for(cfg.seed, "schema-change")
    mk_change = int(cfg.days * srng.uniform(0.55, 0.75))
    sup_change = int(cfg.days * srng.uniform(0.35, 0.50))

    progress("persons", 0, 1)
    pop = build_population(cfg)
    persons = pop.persons
    progress("persons", 1, 1)

    progress("marketing engagement", 0, 1)
    contacts, contact_of_person = marketing.build_contacts(cfg, persons)
    campaigns = marketing.build_campaigns(cfg)
    mk = marketing.simulate_engagement(cfg, contacts, campaigns, contact_of_person)
    progress("marketing engagement", 1, 1)

    purchases, dropout_t, tickets = _simulate_purchases(cfg, persons, mk, progress)

    visible_end = cfg.visible_end_s
    vis = purchases["t"] < visible_end
    lifted = vis & (purchases["click"] >= 0)
    click_campaign = mk.clicks.campaign[purchases["click"][lifted]]
    conversions = {
        "contact": contact_of_person[purchases["person"][lifted]],
        "campaign": click_campaign.astype(np.int64),
        "ts": purchases["t"][lifted],
        "revenue": np.round(purchases["amount"][lifted], 2),
    }
    campaign_discount = np.zeros(int(vis.sum()), dtype=np.float64)
    campaign_discount[lifted[vis]] = campaigns["discount_pct"].to_numpy()[click_campaign]
    fut = ~vis
    future = pl.DataFrame(
        {"person_idx": purchases["person"][fut], "t": purchases["t"][fut], "amount": purchases["amount"][fut]}
    )

    shape = profile(cfg.profile)
    visible_orders = {
        "person": purchases["person"][vis],
        "t": purchases["t"][vis],
        "amount": purchases["amount"][vis],
        "campaign_discount": campaign_discount,
    }
    progress("sales", 0, 1)
    s_contacts = sales.build_contacts(cfg, persons)
    job = sales.SalesJob(cfg, out / ".sales-work", out / SALES_DB) if shape.sales_db else None
    if job is not None:
        job.start(persons, pop.accounts, pop.reps, s_contacts, visible_orders)
    # The child has its copy; keep only what the ground truth still needs (memory at large scale).
    n_visible_orders = int(vis.sum())
    del purchases, vis, lifted, fut, campaign_discount, click_campaign
    s_contacts = s_contacts.select(
        "person_idx", "contact_id", "first_name", "last_name", "email", "phone", "email_kind"
    )
    counts: dict[str, int] = {}
    mk_counts, event_stats, support_lines = {}, {"duplicate_share": 0.0, "late_share": 0.0}, 0
    tix = support.visible_tickets(cfg, tickets, persons)
    del tickets
    try:
        if shape.marketing:
            mk_counts, event_stats = marketing.write_marketing(
                cfg, out, mk, dropout_t, conversions, mk_change, log, progress
            )
        mk.sends.clear()
        if shape.support:
            progress("support", 0, 1)
            support_lines = support.write_support(cfg, out, tix, sup_change, log, progress)
            progress("support", 1, 1)
        if shape.orders_csv:
            counts["sales_orders"] = shop.write_orders_csv(cfg, out, visible_orders, log)
        if job is not None:
            sales_counts, sales_malformed = job.wait()
            log.rows.append(sales_malformed)
            counts.update(sales_counts)
    except BaseException:
        if job is not None:
            job.kill()
        raise
    if job is not None:
        shutil.rmtree(out / ".sales-work")
    progress("sales", 1, 1)
    counts.update(mk_counts)
    if shape.support:
        counts["support_tickets"] = support_lines

    progress("ground truth", 0, 1)
    files = {
        folder: len(list((out / folder).glob("*")))
        for folder in (marketing.CAMPAIGNS_DIR, marketing.CONTACTS_DIR, marketing.EVENTS_DIR, support.EXPORT_DIR)
        if (out / folder).exists()
    }
    report = _truth(
        cfg,
        truth_dir,
        persons,
        dropout_t,
        future,
        n_visible_orders,
        s_contacts,
        mk,
        tix,
        log,
        counts,
        files,
        event_stats,
        mk_change,
        sup_change,
        shape,
        np.unique(visible_orders["person"]),
    )
    progress("ground truth", 1, 1)
    return report


def _simulate_purchases(cfg, persons: pl.DataFrame, mk: marketing.Marketing, progress: Progress):
    season = behaviour.Season(cfg)
    cols = {c: persons[c].to_numpy() for c in ("purchase_rate", "dropout_prob", "spend_shape", "spend_scale", "t0")}
    parts = []
    parts_chunks = chunks(persons.height)
    progress("purchases", 0, len(parts_chunks))
    for chunk_no, (lo, hi) in enumerate(parts_chunks):
        parts.append(
            behaviour.simulate_chunk(
                rng_for(cfg.seed, "purchases", chunk_no),
                cfg,
                season,
                lo,
                cols["purchase_rate"][lo:hi],
                cols["dropout_prob"][lo:hi],
                cols["spend_shape"][lo:hi],
                cols["spend_scale"][lo:hi],
                cols["t0"][lo:hi],
                mk.clicks,
            )
        )
        progress("purchases", chunk_no + 1, len(parts_chunks))
    purchases = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("person", "t", "amount", "click")}
    dropout_t = np.concatenate([p.dropout_t for p in parts])
    tickets = {k: np.concatenate([p.tickets[k] for p in parts]) for k in parts[0].tickets}
    return purchases, dropout_t, tickets


def _truth(
    cfg,
    truth_dir,
    persons,
    dropout_t,
    future,
    n_visible_orders,
    s_contacts,
    mk,
    tix,
    log,
    counts,
    files,
    event_stats,
    mk_change,
    sup_change,
    shape,
    ordering_persons,
):
    visible_end = cfg.visible_end_s
    vis_contacts = mk.contacts.filter(pl.col("signup_t") < visible_end)
    if not shape.marketing:
        vis_contacts = vis_contacts.clear()
    if not shape.support:
        tix = tix.clear()
    if shape.orders_csv:
        # The shop knows a customer by their customer number, which is what the orders carry.
        s_contacts = persons.filter(pl.col("person_idx").is_in(ordering_persons.tolist())).select(
            "person_idx",
            contact_id=shop.customer_number(pl.col("person_idx")),
            first_name=pl.lit(None, pl.String),
            last_name=pl.lit(None, pl.String),
            email=pl.lit(None, pl.String),
            phone=pl.lit(None, pl.String),
            email_kind=pl.lit("missing"),
        )
    record_map = pl.concat(
        [
            s_contacts.select(
                source=pl.lit("sales_contacts"),
                source_key=pl.col("contact_id").cast(pl.String),
                person_idx="person_idx",
                email_kind="email_kind",
            ),
            vis_contacts.select(
                source=pl.lit("marketing_contacts"),
                source_key="email",
                person_idx="person_idx",
                email_kind="email_kind",
            ),
            tix.select(
                source=pl.lit("support_tickets"),
                source_key=pl.col("ticket_id").cast(pl.String),
                person_idx="person",
                email_kind="email_kind",
            ),
        ]
    ).with_columns(
        normalised_key=pl.when(pl.col("source") == "marketing_contacts")
        .then(pl.col("source_key").str.strip_chars().str.to_lowercase())
        .otherwise(pl.col("source_key")),
        person_id=pl.col("person_idx") + 1,
    )

    who = ("person_idx", "first_name", "last_name")
    records = pl.concat(
        [
            s_contacts.select(*who, "email", "phone", source=pl.lit("sales")),
            vis_contacts.select(*who, "email", "phone", source=pl.lit("marketing")),
            tix.rename({"person": "person_idx"}).select(
                *who, email="req_email", phone="req_phone", source=pl.lit("support")
            ),
        ]
    )
    ident = truth.identity_rates(records, persons, persons.height)

    n_future = future.height
    future = future.sort("person_idx", "t", maintain_order=True).select(
        person_id=pl.col("person_idx") + 1, ordered_at=truth.dt_expr("t", cfg), total_amount=pl.col("amount").round(2)
    )
    malformed = log.frame()
    per_source_rows = {
        src: sum(v for k, v in counts.items() if k.startswith(src + "_")) for src in ("sales", "marketing", "support")
    }
    per_source_bad = {src: int((malformed["source"] == src).sum()) for src in per_source_rows}
    n_sales_contacts = s_contacts.height
    alive_at_end = (dropout_t >= visible_end).mean()
    dup_contacts = round((n_sales_contacts - s_contacts["person_idx"].n_unique()) / n_sales_contacts, 4)
    share_bad = {s: round(per_source_bad[s] / max(per_source_rows[s], 1), 4) for s in per_source_rows}
    report = {
        "seed": cfg.seed,
        "profile": cfg.profile,
        "systems": [
            name
            for name, on in (
                ("sales_db", shape.sales_db),
                ("marketing", shape.marketing),
                ("support", shape.support),
                ("orders_csv", shape.orders_csv),
            )
            if on
        ],
        "customers": cfg.customers,
        "start_date": cfg.start.isoformat(),
        "end_date": cfg.end_date.isoformat(),
        "days": cfg.days,
        "horizon_days": cfg.horizon_days,
        **truth.schema_days(cfg, mk_change, sup_change),
        "row_counts": dict(sorted(counts.items())),
        "files": files,
        # The headline numbers, flat (the details follow).
        "rates": {
            "persons_in_2plus_systems_share": ident["persons_in_2plus_systems_share"],
            "email_written_differently_share": ident["email_written_differently_share"],
            "email_typo_share": ident["email_typo_share"],
            "email_other_address_share": ident["email_other_address_share"],
            "email_shared_mailbox_share": ident["email_shared_mailbox_share"],
            "name_variant_share": ident["name_variant_share"],
            "phone_formats_count": ident["phone_formats_count"],
            "sales_duplicate_contacts_share": dup_contacts,
            "marketing_duplicate_events_share": event_stats["duplicate_share"],
            "marketing_late_events_share": event_stats["late_share"],
            **{f"malformed_share_{s}": v for s, v in share_bad.items()},
            "malformed_kinds_count": int(malformed["kind"].n_unique()),
        },
        "identity": ident,
        "sales_duplicate_contacts_share": dup_contacts,
        "marketing_events": event_stats,
        "malformed": {
            "rows_per_source": per_source_bad,
            "share_per_source": share_bad,
            "per_kind": {k: int(v) for k, v in sorted(malformed.group_by("kind").len().iter_rows())},
            "per_entity": {k: int(v) for k, v in sorted(malformed.group_by("entity").len().iter_rows())},
        },
        "process": {
            "parameters": truth.process_parameters(),
            "visible_orders": n_visible_orders,
            "future_orders": n_future,
            "persons_alive_at_end_share": round(float(alive_at_end), 4),
        },
    }
    truth.write_truth(
        truth_dir,
        cfg,
        truth.persons_frame(cfg, persons, dropout_t),
        record_map.drop("person_idx"),
        future,
        malformed,
        report,
    )
    return report
