"""Company profiles: which systems a simulated company exports, and how it is shaped.

Real companies are shaped unlike the default simulated one, and the pipeline must build any of
them from its configuration alone. Every profile runs the same customer process (simulator/
behaviour.py) and writes a ground truth; only what is exported, and how, differs:

* ``full``: the default company: a sales database, marketing file drops, a paged support export;
  a quarter of the persons buy for companies (B2B).
* ``orders-only``: a small web shop that exports one CSV of orders, nothing else: German column
  names, ``;`` as delimiter, dates ``DD.MM.YYYY``, decimal commas, UTF-8 with a byte-order mark
  (as a spreadsheet writes it), a long history, and its own mess (bad dates, non-numeric and
  negative amounts, missing customer numbers, broken lines). Config: config/sources.orders-only.yml.
* ``b2b-no-marketing``: a wholesaler: every person buys for a company, a few large accounts with
  many contacts each; a sales database and a support export, no marketing system.
  Config: config/sources.b2b-no-marketing.yml.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    b2b_share: float
    b2b_extra_contacts: float  # a B2B account has 2 + Poisson(this) persons
    sales_db: bool
    marketing: bool
    support: bool
    orders_csv: bool
    default_days: int
    config: str  # the sources config that reads this profile's export


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "full",
            "sales database, marketing file drops, support export; mixed B2B/B2C",
            b2b_share=0.25,
            b2b_extra_contacts=1.6,
            sales_db=True,
            marketing=True,
            support=True,
            orders_csv=False,
            default_days=730,
            config="config/sources.demo.yml",
        ),
        Profile(
            "orders-only",
            "one orders CSV of a web shop (German names, ';', DD.MM.YYYY, decimal comma), long history",
            b2b_share=0.0,
            b2b_extra_contacts=1.6,
            sales_db=False,
            marketing=False,
            support=False,
            orders_csv=True,
            default_days=1_461,
            config="config/sources.orders-only.yml",
        ),
        Profile(
            "b2b-no-marketing",
            "sales database and support export only; every customer buys for one of a few large accounts",
            b2b_share=1.0,
            b2b_extra_contacts=14.0,
            sales_db=True,
            marketing=False,
            support=True,
            orders_csv=False,
            default_days=730,
            config="config/sources.b2b-no-marketing.yml",
        ),
    )
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}") from None
