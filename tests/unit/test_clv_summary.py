"""summary_from_transactions: the (x, t_x, T, zbar) the CLV models are fitted on."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from models_ml.clv import InvalidInputError, summary_from_transactions

END = date(2024, 1, 31)


def _tx(rows: list[tuple[str, date | datetime, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"cust": pl.String, "day": pl.Date, "amount": pl.Float64}, orient="row")


def test_summary_merges_same_day_ignores_after_end_and_excludes_first_purchase_from_monetary():
    tx = _tx(
        [
            ("a", date(2024, 1, 1), 100.0),  # first purchase: not part of monetary_value
            ("a", date(2024, 1, 8), 10.0),
            ("a", date(2024, 1, 8), 20.0),  # same day -> one purchase of 30
            ("a", date(2024, 1, 15), 50.0),
            ("a", date(2024, 2, 1), 999.0),  # after observation_end: ignored
            ("b", date(2024, 1, 29), 5.0),
        ]
    )
    out = summary_from_transactions(tx, "cust", "day", "amount", observation_end=END)
    assert out.to_dicts() == [
        {"cust": "a", "frequency": 2, "recency": 14.0, "T": 30.0, "monetary_value": 40.0},
        {"cust": "b", "frequency": 0, "recency": 0.0, "T": 2.0, "monetary_value": 0.0},
    ]
    weeks = summary_from_transactions(tx, "cust", "day", None, observation_end=END, freq_days=7)
    assert weeks.columns == ["cust", "frequency", "recency", "T"]
    assert weeks.row(0) == ("a", 2, 2.0, pytest.approx(30 / 7))


def test_summary_accepts_datetimes_and_merges_by_calendar_day():
    tx = pl.DataFrame(
        {
            "cust": ["a", "a", "a"],
            "ts": [datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 18), datetime(2024, 1, 3, 8)],
            "amount": [1.0, 2.0, 4.0],
        }
    )
    out = summary_from_transactions(tx, "cust", "ts", "amount", observation_end=END)
    assert out.row(0) == ("a", 1, 2.0, 30.0, 4.0)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"cust": ["a", None], "day": [END, END], "amount": [1.0, 2.0]}), "'cust' has 1 null"),
        (pl.DataFrame({"cust": ["a", "a"], "day": [END, END], "amount": [1.0, -5.0]}), "negative total"),
        (pl.DataFrame({"cust": ["a"], "day": ["2024-01-01"], "amount": [1.0]}), "must be Date or Datetime"),
        (pl.DataFrame({"cust": ["a"], "day": [date(2024, 3, 1)], "amount": [1.0]}), "no transactions on"),
        (pl.DataFrame({"cust": ["a"], "day": [END], "amount": [float("nan")]}), "NaN"),
        (pl.DataFrame({"cust": ["a"], "when": [END], "amount": [1.0]}), "lack column"),
    ],
)
def test_summary_rejects_bad_transactions(frame, message):
    with pytest.raises(InvalidInputError, match=message):
        summary_from_transactions(frame, "cust", "day", "amount", observation_end=END)


def test_cdnow_summary_matches_hardies_published_summary():
    from models_ml import cdnow

    try:
        tx = cdnow.load_cdnow_transactions("CDNOW_sample.txt")
        reference = cdnow.load_cdnow_reference_summary()
    except FileNotFoundError as exc:
        pytest.skip(f"CDNOW files not available (they ship with the dev dependency 'lifetimes'): {exc}")
    ours = summary_from_transactions(
        tx, "customer_index", "date", "amount", observation_end=cdnow.CALIBRATION_END, freq_days=7
    )
    joined = ours.join(reference, left_on="customer_index", right_on="ID", how="full", coalesce=True)
    assert joined.height == 2357 and joined.null_count().sum_horizontal().item() == 0
    assert (joined["frequency"] == joined["x"]).all()
    # Hardie's file is rounded to 2 decimals (weeks and dollars)
    for ours_col, ref_col in [("recency", "t_x"), ("T", "T_right"), ("monetary_value", "zbar")]:
        assert (joined[ours_col] - joined[ref_col]).abs().max() <= 0.005 + 1e-9, ours_col
