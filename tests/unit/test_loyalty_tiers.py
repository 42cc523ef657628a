"""Loyalty tiers move only when the score clears a threshold by the hysteresis margin; benefits cost."""

import numpy as np
import polars as pl
import pytest

from crm.settings import load_scoring_config
from models_ml.loyalty import (
    assign_tiers,
    benefits_text,
    loyalty_scores,
    points_to_next_tier,
    tier_costs,
    with_benefits,
)
from models_ml.scoring_config import TIERS, BenefitSettings, LoyaltySettings, TierBenefits

SETTINGS = LoyaltySettings(tiers={"Silver": 40, "Gold": 65, "Platinum": 85}, hysteresis=4)


def test_new_customers_get_the_plain_tier():
    assert assign_tiers(np.array([0, 39.9, 40, 64.9, 65, 85, 100]), None, SETTINGS) == [
        "Bronze",
        "Bronze",
        "Silver",
        "Silver",
        "Gold",
        "Platinum",
        "Platinum",
    ]


@pytest.mark.parametrize(
    ("previous", "score", "expected"),
    [
        ("Bronze", 42.0, "Bronze"),  # crossed Silver by 2 < 4: stays
        ("Bronze", 44.0, "Silver"),  # crossed by the margin: up
        ("Bronze", 70.0, "Gold"),  # a big jump goes as far as the margin allows (Gold needs 69)
        ("Bronze", 67.0, "Silver"),  # Gold not cleared by the margin: only Silver
        ("Gold", 62.0, "Gold"),  # 3 below Gold's bound: stays
        ("Gold", 60.9, "Silver"),  # more than 4 below: down
        ("Gold", 30.0, "Bronze"),  # far below: down to where the score belongs
        ("Platinum", 81.5, "Platinum"),
        ("Platinum", 80.9, "Gold"),
        ("Silver", 50.0, "Silver"),
    ],
)
def test_hysteresis(previous, score, expected):
    assert assign_tiers(np.array([score]), [previous], SETTINGS) == [expected]


def test_small_wobbles_around_a_threshold_never_flap():
    rng = np.random.default_rng(1)
    scores = 65 + rng.uniform(-3.9, 3.9, 200)  # a customer hovering around Gold's bound for 200 nights
    tier, history = "Silver", []
    for s in scores:
        tier = assign_tiers(np.array([s]), [tier], SETTINGS)[0]
        history.append(tier)
    assert set(history) == {"Silver"}
    # and without hysteresis the same path flaps
    plain = [assign_tiers(np.array([s]), None, SETTINGS)[0] for s in scores]
    assert len(set(plain)) == 2


def test_points_to_next_tier_include_the_margin():
    pts = points_to_next_tier(np.array([50.0, 90.0]), ["Silver", "Platinum"], SETTINGS)
    assert pts[0] == pytest.approx(65 + 4 - 50)
    assert np.isnan(pts[1])


def test_score_ranks_value_engagement_and_satisfaction():
    frame = pl.DataFrame(
        {
            "clv_12m": [10.0, 500.0, 500.0],
            "revenue_365d": [5.0, 800.0, 800.0],
            "engagement_decayed": [0.0, 3.0, 3.0],
            "recency_days": [200.0, 5.0, 5.0],
            "good_ratings_lifetime": [0.0, 2.0, 0.0],
            "bad_ratings_lifetime": [0.0, 0.0, 2.0],
            "slow_tickets_lifetime": [0.0, 0.0, 1.0],
        }
    )
    s = loyalty_scores(frame, SETTINGS).to_list()
    assert all(0 <= v <= 100 for v in s)
    assert s[1] > s[2] > s[0]  # same value and engagement: satisfaction decides


def test_benefits_cost_follows_the_policy():
    policy = BenefitSettings(
        shipping_cost_per_order=5.0,
        priority_support_cost_per_year=20.0,
        cost_of_capital_annual=0.1,
        tiers={
            "Bronze": TierBenefits(),
            "Silver": TierBenefits(discount_pct=2, free_shipping=True),
            "Gold": TierBenefits(discount_pct=5, payment_deferral_days=73),
            "Platinum": TierBenefits(discount_pct=10, free_shipping=True, priority_support=True),
        },
    )
    frame = pl.DataFrame(
        {
            "loyalty_tier": ["Bronze", "Silver", "Gold", "Platinum"],
            "clv_12m": [100.0, 1000.0, 2000.0, 3000.0],
            "expected_purchases_365d": [1.0, 4.0, 5.0, 10.0],
        }
    )
    out = with_benefits(frame, policy)
    assert out["benefits_yearly_cost"].to_list() == pytest.approx(
        [0.0, 0.02 * 1000 + 5 * 4, 0.05 * 2000 + 2000 * 0.1 * 73 / 365, 0.1 * 3000 + 5 * 10 + 20]
    )
    assert out["benefits"].to_list()[0] == "no benefits"
    assert out["benefits"].to_list()[2] == "5% discount; 73 extra days to pay"
    costs = tier_costs(out)
    assert costs["customers"].to_list() == [1, 1, 1, 1]
    assert costs["yearly_cost"].sum() == pytest.approx(out["benefits_yearly_cost"].sum())


def test_the_shipped_config_is_valid_and_every_tier_has_benefits():
    cfg = load_scoring_config()
    assert cfg.churn.horizon_days == 90 and cfg.retrain.cadence_days == 7
    assert [benefits_text(cfg.benefits.tiers[t]) for t in ("Bronze", "Platinum")][1].endswith("priority support")


def test_tiers_and_points_for_many_customers_are_each_customers_own():
    """The vectorised tiers and points equal the rule applied to one customer at a time."""
    rng = np.random.default_rng(3)
    score = np.round(rng.uniform(0, 100, 2000), 1)
    score[::97] = np.nan
    previous = [[None, "Bronze", "Silver", "Gold", "Platinum", "Diamond"][i % 6] for i in range(2000)]
    bounds = SETTINGS.lower_bounds()
    h = SETTINGS.hysteresis
    index = {t: i for i, t in enumerate(TIERS)}
    expected_tiers, expected_points = [], []
    for s, prev in zip(score, previous, strict=True):
        plain = sum(s >= b for b in bounds) - 1
        up = sum(s >= b + (h if i else 0) for i, b in enumerate(bounds)) - 1
        down = sum(s >= b - (h if i else 0) for i, b in enumerate(bounds)) - 1
        tier = TIERS[plain] if prev not in index else TIERS[min(max(index[prev], up), down)]
        expected_tiers.append(tier)
        j = index[tier]
        expected_points.append(max(0.0, bounds[j + 1] + h - s) if j + 1 < len(TIERS) else np.nan)
    tiers = assign_tiers(score, previous, SETTINGS)
    assert tiers == expected_tiers
    np.testing.assert_array_equal(points_to_next_tier(score, tiers, SETTINGS), np.array(expected_points))
