"""The CDNOW transaction data shipped with the ``lifetimes`` package (the BG/NBD benchmark data set).

``lifetimes`` is a dev dependency only for these files and may not import under pandas 3, so the
files are located through ``importlib.metadata`` without importing the package.

* ``CDNOW_sample.txt`` -- the 1/10 sample used in Fader, Hardie & Lee (2005): 2,357 customers who
  first bought in Q1 1997, purchases to end of June 1998. Columns: master customer id, sample
  customer index, date (YYYYMMDD), number of CDs, dollar value.
* ``CDNOW_master.txt`` -- the full cohort (23,570 customers), same columns minus the sample index.
* ``cdnow_customers_summary_with_transactions.csv`` -- Hardie's calibration summary (x, t_x, T in
  weeks to 1997-09-30, zbar = mean repeat-transaction value), useful to cross-check our summary.
"""

from __future__ import annotations

import importlib.metadata
from datetime import date
from pathlib import Path

import polars as pl

#: End of the 39-week calibration period used in the papers.
CALIBRATION_END = date(1997, 9, 30)
#: End of the 78-week data (holdout end).
HOLDOUT_END = date(1998, 6, 30)


def cdnow_file(name: str = "CDNOW_sample.txt") -> Path:
    """Path of a data file bundled with lifetimes; FileNotFoundError (with the reason) if absent."""
    try:
        files = importlib.metadata.files("lifetimes")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("the 'lifetimes' distribution (which ships the CDNOW data) is not installed") from exc
    for f in files or []:
        if f.name == name and f.parent.name == "datasets":
            path = Path(str(f.locate()))
            if path.is_file():
                return path
            raise FileNotFoundError(f"lifetimes lists {f} but {path} does not exist")
    raise FileNotFoundError(f"lifetimes does not ship datasets/{name}")


def load_cdnow_transactions(name: str = "CDNOW_sample.txt") -> pl.DataFrame:
    """CDNOW transactions: ``customer_id``, ``customer_index``, ``date`` (Date), ``n_cds``, ``amount``.

    ``customer_id`` is the master id in both files; ``customer_index`` is the sample's own 1..2357
    numbering (the ``ID`` of Hardie's summary; null for the master file). The files are
    whitespace-aligned, which polars' CSV reader cannot split, so they are parsed line by line
    (70k lines at most).
    """
    path = cdnow_file(name)
    ids: list[int] = []
    index: list[int | None] = []
    days: list[str] = []
    cds: list[int] = []
    amounts: list[float] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or not parts[0].isdigit():  # blank line or header
                continue
            if len(parts) == 5:  # sample: master id, sample index, date, cds, value
                cid, idx, day, n, value = parts
                index.append(int(idx))
            elif len(parts) == 4:  # master: id, date, cds, value
                cid, day, n, value = parts
                index.append(None)
            else:
                raise ValueError(f"{path}:{lineno}: expected 4 or 5 columns, got {len(parts)}")
            ids.append(int(cid))
            days.append(day)
            cds.append(int(n))
            amounts.append(float(value))
    return pl.DataFrame(
        {"customer_id": ids, "customer_index": index, "date": days, "n_cds": cds, "amount": amounts},
        schema={
            "customer_id": pl.Int64,
            "customer_index": pl.Int64,
            "date": pl.String,
            "n_cds": pl.Int64,
            "amount": pl.Float64,
        },
    ).with_columns(pl.col("date").str.strptime(pl.Date, "%Y%m%d"))


def load_cdnow_reference_summary() -> pl.DataFrame:
    """Hardie's published calibration summary of the sample: ``ID, x, t_x, T, zbar`` (weeks, dollars)."""
    return pl.read_csv(cdnow_file("cdnow_customers_summary_with_transactions.csv"))
