"""The RFM segment grid (dbt seed) and the scoring rule the dbt macros implement.

The dbt unit tests (dbt_project/models/marts/customer_rfm.yml) run the SQL itself during every
build; this checks the seed's shape and documents the scoring arithmetic in plain Python.
"""

import csv
import math
from pathlib import Path

SEED = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds" / "rfm_segments.csv"
SEGMENTS = {
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
}


def _grid() -> dict[tuple[int, int], str]:
    with SEED.open() as f:
        return {(int(r["r_score"]), int(r["fm_score"])): r["segment"] for r in csv.DictReader(f)}


def quintile_scores(values: list[float], best_is_high: bool = True) -> list[int]:
    """1 + floor(5 * (rank - 1) / n), rank from the worst value, ties sharing the lowest rank."""
    n = len(values)
    order = sorted(values, reverse=not best_is_high)
    return [1 + math.floor(5 * order.index(v) / n) for v in values]


def test_grid_has_every_cell_once_and_all_eleven_segments():
    grid = _grid()
    assert set(grid) == {(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert set(grid.values()) == SEGMENTS


def test_grid_corners_are_the_classic_ones():
    grid = _grid()
    assert grid[(5, 5)] == "Champions"
    assert grid[(5, 1)] == "New"
    assert grid[(1, 1)] == "Lost"
    assert grid[(1, 5)] == "Can't lose them"
    assert grid[(3, 3)] == "Need attention"


def test_quintile_scores_share_ties_and_rank_from_the_worst():
    # frequency of six customers: two one-order customers tie and both score 1
    assert quintile_scores([3, 4, 1, 2, 3, 1]) == [3, 5, 1, 2, 3, 1]
    # recency in days: fewer days is better
    assert quintile_scores([10, 0, 532, 81, 638, 5], best_is_high=False) == [3, 5, 1, 2, 1, 4]
