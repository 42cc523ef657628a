"""The orders-only profile's export: one CSV of every visible order, as a small German web shop writes it.

``orders/bestellungen.csv`` (UTF-8 with a byte-order mark, ``;``-separated, CRLF line ends):

| column | what |
| --- | --- |
| ``Bestellnummer`` | order number (``B-`` + six digits, growing with time) |
| ``Kundennummer`` | the shop's customer number (one per person: ``K`` + six digits) |
| ``Bestelldatum`` | order day, ``DD.MM.YYYY`` |
| ``Menge`` | items in the order (1..6) |
| ``Betrag`` | order value with a decimal comma (``129,90``) |

Mess (about 0.8 % of the lines, each broken in one field, listed in the ground truth's
``malformed.parquet`` as ``orders/bestellungen.csv:<line>``): a day that does not exist
(``31.04.2023``), a non-numeric amount (``12,50 EUR``), a negative amount, a missing customer
number, and a line with a field too many.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from simulator import mess
from simulator.config import SimulationConfig, rng_for

ORDERS_FILE = "orders/bestellungen.csv"
COLUMNS = ("Bestellnummer", "Kundennummer", "Bestelldatum", "Menge", "Betrag")
MALFORMED_RATE = 0.008


def customer_number(person_idx: pl.Expr) -> pl.Expr:
    return pl.lit("K") + (person_idx + 100_001).cast(pl.String)


def write_orders_csv(cfg: SimulationConfig, out: Path, orders: dict[str, np.ndarray], log: mess.MalformedLog) -> int:
    """Write the visible orders (person, t in seconds, amount); returns the number of order lines."""
    rng = rng_for(cfg.seed, "shop", "orders")
    frame = (
        pl.DataFrame({"person": orders["person"], "t": orders["t"], "amount": orders["amount"]})
        .sort("t", "person")
        .with_columns(
            number=pl.lit("B-") + (pl.int_range(pl.len()) + 100_001).cast(pl.String),
            customer=customer_number(pl.col("person")),
            day=((pl.col("t") // 86_400) * 86_400 * 1000 + _start_ms(cfg)).cast(pl.Datetime("ms")).dt.date(),
            items=pl.Series(1 + np.minimum(rng.poisson(0.8, len(orders["t"])), 5)),
        )
        .with_columns(
            date_text=pl.col("day").dt.strftime("%d.%m.%Y"),
            amount_text=mess.decimal_comma(pl.col("amount")),
        )
    )
    n = frame.height
    kinds = (mess.BAD_DATE, mess.NON_NUMERIC, mess.NEGATIVE_QUANTITY, mess.MISSING_REQUIRED, mess.BROKEN_CSV_LINE)
    rows, kind = mess.pick(rng, n, MALFORMED_RATE, kinds, (3, 2, 2, 2, 1))
    date_text = frame["date_text"].to_list()
    amount_text = frame["amount_text"].to_list()
    customer = frame["customer"].to_list()
    fields: list[str | None] = []
    broken_rows: set[int] = set()
    for row, k in zip(rows.tolist(), kind.tolist(), strict=True):
        if k == mess.BAD_DATE:
            day, month, year = date_text[row].split(".")
            date_text[row] = (
                f"{'30' if month == '02' else '31' if month in ('04', '06', '09', '11') else '32'}.{month}.{year}"
            )
            fields.append("order_date")
        elif k == mess.NON_NUMERIC:
            amount_text[row] = amount_text[row] + " EUR"
            fields.append("total_amount")
        elif k == mess.NEGATIVE_QUANTITY:
            amount_text[row] = "-" + amount_text[row]
            fields.append("total_amount")
        elif k == mess.MISSING_REQUIRED:
            customer[row] = ""
            fields.append("customer_ref")
        else:
            broken_rows.add(row)
            fields.append(None)
    lines = [
        f"{o};{c};{d};{q};{a}" + (";n/a" if i in broken_rows else "")
        for i, (o, c, d, q, a) in enumerate(
            zip(frame["number"], customer, date_text, frame["items"], amount_text, strict=True)
        )
    ]
    body = ("\r\n".join([";".join(COLUMNS), *lines]) + "\r\n").encode("utf-8")
    path = out / ORDERS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + body)
    log.add("sales", "sales_orders", [f"{ORDERS_FILE}:{r + 2}" for r in rows.tolist()], kind.tolist(), fields)
    return n


def _start_ms(cfg: SimulationConfig) -> int:
    return cfg.start_epoch_s * 1000
