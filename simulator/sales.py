"""The sales system (SFA): a SQLite database holding each row's latest state.

Ids grow with ``created_at`` as a database sequence would. Rows change after creation (order status
moves, contact and account edits, product price changes, deal stages) and ``updated_at`` shows the
last change up to the end date. Parameters:

* contacts are created 0-3 days before their person's first order; 4.5 % of persons get a second
  contact record later (the duplicate); after it exists, half of their orders use it; 35 % of
  contacts are edited later.
* order status: shipped 0.5-4 days after placing; 3 % cancelled within two days instead; 4 % of
  shipped orders come back 3-25 days later. The database shows the status as of the end date.
* order lines: 1 + Poisson(0.25) lines (B2B 1 + Poisson(0.8)), quantity 1 + Poisson(0.3) (B2B
  1 + Poisson(3)); products are picked near the price the order needs, and unit prices are the
  list prices scaled so the lines add up to the process's spend: ``total_amount`` is the simulated
  order value (after discount) up to cent rounding.
* 0.8 % of orders and of order lines are malformed in exactly one field; ``created_at``/``updated_at``
  stay valid because the database maintains them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from simulator import mess
from simulator.config import DAY, HOUR, SimulationConfig, rng_for, ts_expr, ts_text
from simulator.people import RecordMess, render_records
from simulator.refdata import PRODUCT_ADJECTIVES, PRODUCT_CATEGORIES, PRODUCT_NOUNS

N_PRODUCTS = 240
DUPLICATE_CONTACT = 0.045
CONTACT_EDITED = 0.35
ACCOUNT_EDITED = 0.25
PRODUCT_REPRICED = 0.25
CANCELLED, RETURNED = 0.03, 0.04
MALFORMED = 0.008
SALES_MESS = RecordMess(email_missing=0.01)
UNKNOWN_PRODUCT_BASE = 900_000
INSERT_BATCH = 100_000
ORDER_BLOCK = 100_000  # orders built, rendered and inserted together (fixed: seeds the block streams)

DDL = {
    "sales_reps": "id INTEGER PRIMARY KEY, full_name TEXT, email TEXT, region TEXT, hire_date DATE, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "accounts": "id INTEGER PRIMARY KEY, name TEXT, type TEXT, region TEXT, owner_rep_id INTEGER, "
    "payment_terms_days INTEGER, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "contacts": "id INTEGER PRIMARY KEY, account_id INTEGER, first_name TEXT, last_name TEXT, email TEXT, "
    "phone TEXT, city TEXT, postcode TEXT, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "products": "id INTEGER PRIMARY KEY, name TEXT, category TEXT, list_price REAL, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "opportunities": "id INTEGER PRIMARY KEY, account_id INTEGER, owner_rep_id INTEGER, stage TEXT, amount REAL, "
    "stage_changed_at TIMESTAMP, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "opportunity_stage_history": "id INTEGER PRIMARY KEY, opportunity_id INTEGER, stage TEXT, entered_at TIMESTAMP, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "orders": "id INTEGER PRIMARY KEY, contact_id INTEGER, account_id INTEGER, ordered_at TIMESTAMP, status TEXT, "
    "channel TEXT, discount_pct REAL, payment_terms_days INTEGER, owner_rep_id INTEGER, total_amount REAL, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
    "order_lines": "id INTEGER PRIMARY KEY, order_id INTEGER, product_id INTEGER, quantity INTEGER, unit_price REAL, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL",
}
# Incremental readers select by updated_at. The two big tables get no index: building them would
# cost the generator seconds at large scale, and a one-day window still scans 10M orders in ~1 s.
INDEXES = ("contacts", "opportunities", "accounts")
STAGES = ("prospecting", "qualified", "proposal", "negotiation", "won", "lost")


def _later(rng, created: np.ndarray, end: int, share: float) -> np.ndarray:
    """updated_at: for ``share`` of rows a later edit before the end, else the creation time."""
    edited = rng.random(len(created)) < share
    later = created + (rng.random(len(created)) * np.maximum(end - created, 0)).astype(np.int64)
    return np.where(edited, later, created)


def build_contacts(cfg: SimulationConfig, persons: pl.DataFrame) -> pl.DataFrame:
    """Sales contact records: one per person plus the duplicates; ids in creation order."""
    rng = rng_for(cfg.seed, "sales", "contacts")
    n = persons.height
    end = cfg.visible_end_s - 1
    t0 = persons["t0"].to_numpy()
    created = t0 - (rng.random(n) * np.minimum(t0, 3 * DAY)).astype(np.int64)
    dup_who = np.flatnonzero(rng.random(n) < DUPLICATE_CONTACT)
    dup_created = created[dup_who] + (rng.random(len(dup_who)) * (end - created[dup_who])).astype(np.int64)
    who = np.concatenate([np.arange(n), dup_who])
    c_created = np.concatenate([created, dup_created])
    rec = render_records(persons, who, rng, SALES_MESS)
    return (
        rec.with_columns(
            created_t=pl.Series(c_created),
            updated_t=pl.Series(_later(rng, c_created, end, CONTACT_EDITED)),
            is_duplicate=pl.Series(np.arange(len(who)) >= n),
            account_idx=persons["account_idx"].gather(who),
        )
        .sort("created_t", "person_idx", "is_duplicate", maintain_order=True)
        .with_columns(contact_id=pl.int_range(pl.len(), dtype=pl.Int64) + 1)
    )


def table_batches(
    cfg: SimulationConfig,
    persons: pl.DataFrame,
    accounts: pl.DataFrame,
    reps: pl.DataFrame,
    contacts: pl.DataFrame,
    orders_in: dict[str, np.ndarray],
    log: mess.MalformedLog,
) -> Iterator[tuple[str, pl.DataFrame, Patches]]:
    """(table, frame, patches) in SQL column order, values as they will be stored.

    Orders and their lines are produced in blocks of consecutive order ids, so memory stays flat
    however many orders there are.
    """
    rng = rng_for(cfg.seed, "sales", "tables")
    end = cfg.visible_end_s - 1
    ts = lambda c: ts_expr(c, cfg)  # noqa: E731

    # --- reps and products: in the database from day one ---------------------------------------------
    r_created = reps["rep_idx"].to_numpy() * 60
    sales_reps = reps.with_columns(
        id=pl.col("rep_idx") + 1,
        hire_date=ts_expr(-pl.col("hired_days_before_start") * DAY, cfg).str.slice(0, 10),
        created_at=ts(pl.Series(r_created)),
        updated_at=ts(pl.Series(_later(rng, r_created, end, 0.3))),
    ).select("id", "full_name", "email", "region", "hire_date", "created_at", "updated_at")

    products = _products(rng, cfg)

    # --- accounts: created with their first contact ----------------------------------------------------
    acc_created = contacts.group_by("account_idx").agg(created_t=pl.col("created_t").min())
    acc = (
        accounts.join(acc_created, on="account_idx", how="inner")
        .sort("created_t", "account_idx", maintain_order=True)
        .with_columns(account_id=pl.int_range(pl.len(), dtype=pl.Int64) + 1)
    )
    acc = acc.with_columns(updated_t=pl.Series(_later(rng, acc["created_t"].to_numpy(), end, ACCOUNT_EDITED)))
    account_id_of = np.zeros(accounts.height, dtype=np.int64)
    account_id_of[acc["account_idx"].to_numpy()] = acc["account_id"].to_numpy()
    sales_accounts = acc.select(
        id="account_id",
        name="account_name",
        type="segment",
        region="region",
        owner_rep_id=pl.col("owner_rep_idx") + 1,
        payment_terms_days="payment_terms_days",
        created_at=ts("created_t"),
        updated_at=ts("updated_t"),
    )
    sales_contacts = contacts.select(
        id="contact_id",
        account_id=pl.Series(account_id_of[contacts["account_idx"].to_numpy()]),
        first_name="first_name",
        last_name="last_name",
        email="email",
        phone="phone",
        city="city",
        postcode="postcode",
        created_at=ts("created_t"),
        updated_at=ts("updated_t"),
    )

    opps, history = _opportunities(rng, cfg, acc)
    yield "sales_reps", sales_reps, {}
    yield "products", products.select("id", "name", "category", "list_price", "created_at", "updated_at"), {}
    yield "accounts", sales_accounts, {}
    yield "contacts", sales_contacts, {}
    yield "opportunities", opps, {}
    yield "opportunity_stage_history", history, {}
    yield from _orders(cfg, persons, accounts, contacts, account_id_of, products, orders_in, log)


def _products(rng, cfg: SimulationConfig) -> pl.DataFrame:
    end = cfg.visible_end_s - 1
    cat = rng.integers(0, len(PRODUCT_CATEGORIES), N_PRODUCTS)
    noun_i = rng.integers(0, 5, N_PRODUCTS)
    adj = np.array(PRODUCT_ADJECTIVES)[rng.integers(0, len(PRODUCT_ADJECTIVES), N_PRODUCTS)]
    nouns = np.array([PRODUCT_NOUNS[PRODUCT_CATEGORIES[c]][i] for c, i in zip(cat, noun_i, strict=True)])
    price = np.round(np.exp(rng.normal(3.6, 1.1, N_PRODUCTS)), 0) - 0.01
    price = np.maximum(price, 1.99)
    created = np.arange(N_PRODUCTS, dtype=np.int64) * 30
    return pl.DataFrame(
        {
            "id": np.arange(1, N_PRODUCTS + 1, dtype=np.int64),
            "name": [f"{a} {b} {i:03d}" for a, b, i in zip(adj, nouns, range(1, N_PRODUCTS + 1), strict=True)],
            "category": np.array(PRODUCT_CATEGORIES)[cat],
            "list_price": price,
            "created_t": created,
        }
    ).with_columns(
        created_at=ts_expr("created_t", cfg),
        updated_at=ts_expr(pl.Series(_later(rng, created, end, PRODUCT_REPRICED)), cfg),
    )


def _opportunities(rng, cfg: SimulationConfig, acc: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Deals of B2B accounts walking prospecting -> ... -> won/lost; history has one row per stage entered."""
    end = cfg.visible_end_s - 1
    b2b = acc.filter(pl.col("segment") == "B2B")
    n_per = rng.poisson(1.2, b2b.height)
    a_id = np.repeat(b2b["account_id"].to_numpy(), n_per)
    a_rep = np.repeat(b2b["owner_rep_idx"].to_numpy() + 1, n_per)
    a_created = np.repeat(b2b["created_t"].to_numpy(), n_per)
    k = len(a_id)
    created = a_created + (rng.random(k) * (end - a_created)).astype(np.int64)
    # Reach each next stage with 70 %; at the end of the road a deal is won with 55 %.
    advance = rng.random((k, 3)) < 0.7
    reached = 1 + np.argmin(np.c_[advance, np.zeros(k, bool)], axis=1)  # open stages entered: 1..4
    won = (reached == 4) & (rng.random(k) < 0.55)
    closes = (reached < 4) | (rng.random(k) < 0.85)  # some negotiations are still going
    n_stages = reached + closes.astype(np.int64)
    durations = (rng.exponential(14, (k, 5)) * DAY).astype(np.int64) + HOUR
    entered = created[:, None] + np.c_[np.zeros(k, np.int64), np.cumsum(durations[:, :4], axis=1)]
    stage_code = np.tile(np.arange(5), (k, 1))
    stage_code[np.arange(k), np.minimum(reached, 4)] = np.where(won, 4, 5)  # terminal stage in slot `reached`
    valid = (np.arange(5)[None, :] < n_stages[:, None]) & (entered <= end)
    order = np.argsort(created, kind="stable")
    opp_id = np.empty(k, dtype=np.int64)
    opp_id[order] = np.arange(1, k + 1)
    rows, cols = np.nonzero(valid)
    hist = pl.DataFrame(
        {
            "opportunity_id": opp_id[rows],
            "stage": np.array(STAGES)[stage_code[rows, cols]],
            "entered_t": entered[rows, cols],
        }
    )
    hist = hist.sort("entered_t", "opportunity_id", maintain_order=True).with_columns(
        id=pl.int_range(pl.len(), dtype=pl.Int64) + 1
    )
    last = hist.group_by("opportunity_id").agg(pl.col("stage").last(), pl.col("entered_t").last().alias("changed_t"))
    opps = (
        pl.DataFrame(
            {
                "id": opp_id,
                "account_id": a_id,
                "owner_rep_id": a_rep,
                "amount": np.round(np.exp(rng.normal(8.5, 0.8, k)), -1),
                "created_t": created,
            }
        )
        .join(last, left_on="id", right_on="opportunity_id", how="left")
        .sort("id")
        .select(
            "id",
            "account_id",
            "owner_rep_id",
            "stage",
            "amount",
            stage_changed_at=ts_expr("changed_t", cfg),
            created_at=ts_expr("created_t", cfg),
            updated_at=ts_expr("changed_t", cfg),
        )
    )
    history = hist.select(
        "id",
        "opportunity_id",
        "stage",
        entered_at=ts_expr("entered_t", cfg),
        created_at=ts_expr("entered_t", cfg),
        updated_at=ts_expr("entered_t", cfg),
    )
    return opps, history


STATUSES = ("placed", "shipped", "returned", "cancelled")
CHANNELS = ("web", "phone", "store", "partner")


def _orders(cfg, persons, accounts, contacts, account_id_of, products, orders_in, log):
    """Orders and lines, a block of consecutive order ids at a time (ids follow ``ordered_at``)."""
    # The contact an order is booked on: the person's first record, or (after it exists) half the
    # time the duplicate.
    n_persons = persons.height
    primary = contacts.filter(~pl.col("is_duplicate")).select("person_idx", "contact_id")
    dup = contacts.filter(pl.col("is_duplicate")).select("person_idx", dup_id="contact_id", dup_t="created_t")
    lookup = {
        "contact": np.zeros(n_persons, dtype=np.int64),
        "dup": np.zeros(n_persons, dtype=np.int64),
        "dup_t": np.full(n_persons, np.iinfo(np.int64).max, dtype=np.int64),
        "account_idx": persons["account_idx"].to_numpy(),
        "is_b2b": accounts["segment"].to_numpy() == "B2B",
        "rep": accounts["owner_rep_idx"].to_numpy() + 1,
        "terms": accounts["payment_terms_days"].to_numpy(),
        "account_id": account_id_of,
        "prices": products["list_price"].to_numpy(),
        "product_id": products["id"].to_numpy(),
    }
    lookup["contact"][primary["person_idx"].to_numpy()] = primary["contact_id"].to_numpy()
    lookup["dup"][dup["person_idx"].to_numpy()] = dup["dup_id"].to_numpy()
    lookup["dup_t"][dup["person_idx"].to_numpy()] = dup["dup_t"].to_numpy()

    order = np.lexsort((orders_in["person"], orders_in["t"]))
    next_line_id = 1
    for block_no, lo in enumerate(range(0, len(order), ORDER_BLOCK)):
        rows = order[lo : lo + ORDER_BLOCK]
        block = {k: v[rows] for k, v in orders_in.items()}
        rng = rng_for(cfg.seed, "sales", "orders", block_no)
        orders, lines = _order_block(rng, cfg, lookup, block, first_id=lo + 1, first_line_id=next_line_id)
        next_line_id += lines.height
        orders, lines = _orders_frame(cfg, orders), _lines_frame(cfg, lines)
        yield "orders", orders, _break(rng, orders, "sales_orders", "orders", ORDER_BREAKS, log)
        yield "order_lines", lines, _break(rng, lines, "sales_order_lines", "order_lines", LINE_BREAKS, log)


def _order_block(rng, cfg, lk: dict[str, np.ndarray], block: dict[str, np.ndarray], first_id: int, first_line_id: int):
    end = cfg.visible_end_s - 1
    person, t = block["person"], block["t"]
    m = len(person)
    use_dup = (t >= lk["dup_t"][person]) & (rng.random(m) < 0.5)
    contact_id = np.where(use_dup, lk["dup"][person], lk["contact"][person])
    acc_idx = lk["account_idx"][person]
    is_b2b = lk["is_b2b"][acc_idx]

    ch = rng.random(m)
    channel = np.where(
        is_b2b, np.select([ch < 0.3, ch < 0.7], [0, 1], 3), np.select([ch < 0.6, ch < 0.7], [0, 1], 2)
    ).astype(np.int8)
    has_disc = rng.random(m) < np.where(is_b2b, 0.5, 0.2)
    offered = np.where(
        is_b2b, np.array([5, 10, 15])[rng.integers(0, 3, m)], np.array([5, 10, 15, 20])[rng.integers(0, 4, m)]
    )
    discount = np.where(has_disc, offered, 0)
    discount = np.where(block["campaign_discount"] > 0, block["campaign_discount"], discount).astype(np.float64)

    # status as of the end date
    cancelled = rng.random(m) < CANCELLED
    shipped_t = t + ((0.5 + rng.random(m) * 3.5) * DAY).astype(np.int64)
    cancel_t = t + (rng.random(m) * 2 * DAY).astype(np.int64) + 60
    returned = ~cancelled & (rng.random(m) < RETURNED)
    return_t = shipped_t + ((3 + rng.random(m) * 22) * DAY).astype(np.int64)
    status = np.select(
        [cancelled & (cancel_t <= end), cancelled, returned & (return_t <= end), shipped_t <= end], [3, 0, 2, 1], 0
    ).astype(np.int8)
    updated = np.select([status == 3, status == 2, status == 1], [cancel_t, return_t, shipped_t], t)

    # lines: products near the needed price, unit prices scaled so the lines add up to the spend
    n_lines = 1 + rng.poisson(np.where(is_b2b, 0.8, 0.25))
    line_order = np.repeat(np.arange(m), n_lines)
    k = len(line_order)
    qty = 1 + rng.poisson(np.where(is_b2b[line_order], 3.0, 0.3))
    gross = block["amount"] / (1 - discount / 100)
    target = gross[line_order] / (n_lines[line_order] * qty) * rng.lognormal(0, 0.35, k)
    prices = lk["prices"]
    by_price = np.argsort(prices, kind="stable")
    pos = np.clip(np.searchsorted(prices[by_price], target) + rng.integers(-2, 3, k), 0, len(prices) - 1)
    product_idx = by_price[pos]
    list_total = np.bincount(line_order, weights=qty * prices[product_idx], minlength=m)
    unit = np.maximum(np.round(prices[product_idx] * (gross / list_total)[line_order], 2), 0.01)
    total = np.round(np.bincount(line_order, weights=qty * unit, minlength=m) * (1 - discount / 100), 2)

    order_id = np.arange(first_id, first_id + m, dtype=np.int64)
    orders = pl.DataFrame(
        {
            "id": order_id,
            "contact_id": contact_id,
            "account_id": lk["account_id"][acc_idx],
            "t": t,
            "status": status,
            "channel": channel,
            "discount_pct": discount,
            "payment_terms_days": lk["terms"][acc_idx],
            "owner_rep_id": lk["rep"][acc_idx],
            "total_amount": total,
            "updated_t": updated,
        }
    )
    lines = pl.DataFrame(
        {
            "id": np.arange(first_line_id, first_line_id + k, dtype=np.int64),
            "order_id": order_id[line_order],
            "product_id": lk["product_id"][product_idx],
            "quantity": qty.astype(np.int64),
            "unit_price": unit,
            "t": t[line_order],
        }
    )
    return orders, lines


# kind -> (weight, column it breaks, the broken value computed from the row)
ORDER_BREAKS = {
    mess.BAD_DATE: (3, "ordered_at", mess.bad_date(pl.col("ordered_at"))),
    mess.UNKNOWN_VALUE: (3, "status", pl.lit("delivered")),
    mess.MISSING_REQUIRED: (2, "contact_id", pl.lit(None)),
    mess.NON_NUMERIC: (2, "total_amount", mess.decimal_comma(pl.col("total_amount"))),
}
LINE_BREAKS = {
    mess.NEGATIVE_QUANTITY: (3, "quantity", -pl.col("quantity")),
    mess.UNKNOWN_PRODUCT: (3, "product_id", UNKNOWN_PRODUCT_BASE + pl.col("product_id")),
    mess.NON_NUMERIC: (2, "unit_price", mess.decimal_comma(pl.col("unit_price"))),
    mess.MISSING_REQUIRED: (2, "product_id", pl.lit(None)),
}

# A batch of rows for one table: typed columns plus the few cells to overwrite (row, value) after
# conversion to Python values, so a broken cell can hold text in a numeric column without turning
# the whole column into text.
Patches = dict[str, tuple[list[int], list]]


def _break(rng, df: pl.DataFrame, entity: str, table: str, breaks: dict, log) -> Patches:
    kinds = tuple(breaks)
    idx, kind = mess.pick(rng, df.height, MALFORMED, kinds, tuple(b[0] for b in breaks.values()))
    log.add("sales", entity, (table + ":" + df["id"].gather(idx).cast(pl.String)), kind, [breaks[k][1] for k in kind])
    patches: Patches = {}
    for k, (_, column, value) in breaks.items():
        rows = idx[kind == k]
        if len(rows):
            values = df[rows].with_columns(value.alias(column))[column].to_list()  # literals broadcast
            old_rows, old_values = patches.get(column, ([], []))
            patches[column] = (old_rows + rows.tolist(), old_values + values)
    return patches


def _orders_frame(cfg, o: pl.DataFrame) -> pl.DataFrame:
    created = ts_text(o["t"], cfg)
    return o.select(
        "id",
        "contact_id",
        "account_id",
        ordered_at=created,
        status=pl.Series(STATUSES).gather(o["status"]),
        channel=pl.Series(CHANNELS).gather(o["channel"]),
        discount_pct="discount_pct",
        payment_terms_days="payment_terms_days",
        owner_rep_id="owner_rep_id",
        total_amount="total_amount",
        created_at=created,
        updated_at=ts_text(o["updated_t"], cfg),
    )


def _lines_frame(cfg, lines: pl.DataFrame) -> pl.DataFrame:
    created = ts_text(lines["t"], cfg)
    return lines.select(
        "id", "order_id", "product_id", "quantity", "unit_price", created_at=created, updated_at=created
    )


def write_sqlite(path: Path, batches: Iterable[tuple[str, pl.DataFrame, Patches]]) -> dict[str, int]:
    """executemany inside one transaction, no journal, no fsync: the file is rebuilt from scratch.

    Rows become Python values one slice at a time, so memory stays flat at any size. Returns the
    number of rows written per table.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    counts = dict.fromkeys(DDL, 0)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA page_size=8192")
        con.execute("BEGIN")
        for name, cols in DDL.items():
            con.execute(f"CREATE TABLE {name} ({cols})")
        for name, frame, patches in batches:
            sql = f"INSERT INTO {name} VALUES ({','.join('?' * frame.width)})"
            for offset in range(0, frame.height, INSERT_BATCH):
                part = frame.slice(offset, INSERT_BATCH)
                columns = {c: part[c].to_list() for c in part.columns}
                for column, (rows, values) in patches.items():
                    target = columns[column]
                    for r, v in zip(rows, values, strict=True):
                        if offset <= r < offset + INSERT_BATCH:
                            target[r - offset] = v
                con.executemany(sql, zip(*columns.values(), strict=True))
            counts[name] += frame.height
        for name in INDEXES:
            con.execute(f"CREATE INDEX ix_{name}_updated_at ON {name} (updated_at)")
        con.execute("COMMIT")
    finally:
        con.close()
    return counts


# ----------------------------------------------------------------------------------------------------
# Running the sales system in its own process
# ----------------------------------------------------------------------------------------------------
# Building the tables and inserting tens of millions of rows through sqlite3 is single-threaded
# Python work; a separate process does it while the parent writes marketing and support. Inputs and
# outputs travel as files in a work folder (not pickles), and the child is started with ``-m`` so it
# never re-imports the caller's main module.


class SalesJob:
    def __init__(self, cfg: SimulationConfig, work: Path, db_path: Path):
        self.cfg, self.work, self.db_path = cfg, work, db_path
        self.proc: subprocess.Popen | None = None

    def start(self, persons, accounts, reps, contacts, orders_in: dict[str, np.ndarray]) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg
        (self.work / "config.json").write_text(
            json.dumps(
                {
                    "customers": cfg.customers,
                    "seed": cfg.seed,
                    "start": cfg.start.isoformat(),
                    "days": cfg.days,
                    "horizon_days": cfg.horizon_days,
                    "out": str(cfg.out),
                    "profile": cfg.profile,
                }
            )
        )
        persons.select("account_idx").write_ipc(self.work / "persons.arrow")
        accounts.write_ipc(self.work / "accounts.arrow")
        reps.write_ipc(self.work / "reps.arrow")
        contacts.write_ipc(self.work / "contacts.arrow")
        pl.DataFrame(orders_in).write_ipc(self.work / "orders_in.arrow")
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # The worker is one Python thread feeding sqlite3; leave the cores to the parent's polars.
        env.setdefault("POLARS_MAX_THREADS", "1")
        with open(self.work / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "simulator.sales_worker", str(self.work), str(self.db_path)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )

    def wait(self) -> tuple[dict[str, int], pl.DataFrame]:
        assert self.proc is not None
        if self.proc.wait() != 0:
            tail = (self.work / "stderr.txt").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"sales worker failed (exit {self.proc.returncode}):\n{tail}")
        counts = json.loads((self.work / "counts.json").read_text())
        malformed = pl.read_parquet(self.work / "malformed.parquet")
        return counts, malformed

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


ENTITY_COUNT_KEY = {
    "sales_reps": "sales_reps",
    "accounts": "sales_accounts",
    "contacts": "sales_contacts",
    "products": "sales_products",
    "opportunities": "sales_opportunities",
    "opportunity_stage_history": "sales_opportunity_stage_history",
    "orders": "sales_orders",
    "order_lines": "sales_order_lines",
}
