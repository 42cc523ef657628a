"""BG/NBD + Gamma-Gamma (models_ml.clv): the published CDNOW estimates, parameter recovery on simulated
data, the model's defining properties, and loud failures.

Literature values (CDNOW 1/10 sample, calibration to 1997-09-30, weeks, same-day purchases merged):
* Fader, Hardie & Lee (2005a) "Counting your customers the easy way", Marketing Science 24(2):
  r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4; E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226.
* Fader, Hardie & Lee (2005b) "RFM and CLV: using iso-value curves", JMR 42(4), and Hardie's note
  "The Gamma-Gamma model of monetary value": p = 6.25, q = 3.74, gamma = 15.44 (946 repeat buyers,
  zbar = mean repeat-transaction value).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from models_ml import clv
from models_ml.clv import (
    BetaGeoModel,
    BetaGeoParams,
    GammaGammaModel,
    GammaGammaParams,
    InvalidInputError,
    ModelFitError,
    NotFittedError,
    compress_rfm,
    customer_lifetime_value,
    simulate_bgnbd,
    simulate_gamma_gamma,
    summary_from_transactions,
)

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}
CDNOW_PARAMS = BetaGeoParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


@pytest.fixture(scope="module")
def cdnow_summary() -> pl.DataFrame:
    from models_ml import cdnow

    try:
        tx = cdnow.load_cdnow_transactions("CDNOW_sample.txt")
    except FileNotFoundError as exc:
        pytest.skip(f"CDNOW sample not available (it ships with the dev dependency 'lifetimes'): {exc}")
    return summary_from_transactions(
        tx, "customer_index", "date", "amount", observation_end=cdnow.CALIBRATION_END, freq_days=7
    )


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow_summary: pl.DataFrame) -> BetaGeoModel:
    model = BetaGeoModel()
    model.fit(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    return model


# ------------------------------------------------------------------ the literature on CDNOW


def test_bgnbd_reproduces_published_cdnow_estimates(cdnow_summary, cdnow_bgnbd):
    params = cdnow_bgnbd.params
    assert cdnow_summary.height == 2357
    assert params.n == 2357
    # The paper prints 3 decimals, so "equal when rounded" (|diff| <= 5e-4) is the tightest honest check;
    # we get r=0.24259, alpha=4.41360, a=0.79292, b=2.42591.
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(params, name) == pytest.approx(published, abs=5e-4), name
    assert params.log_likelihood == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.1)


def test_bgnbd_conditional_expectation_matches_paper_example(cdnow_bgnbd):
    # Section 5 of the BG/NBD paper (and Hardie's Excel note): 1.226 expected purchases in the
    # 39-week holdout.
    assert float(cdnow_bgnbd.expected_purchases(39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=5e-4)


def test_gamma_gamma_reproduces_published_cdnow_estimates(cdnow_summary):
    params = GammaGammaModel().fit(cdnow_summary["frequency"], cdnow_summary["monetary_value"])
    assert params.n == 946  # repeat buyers in the calibration period
    # monetary = mean of the repeat (not first) purchase days at full precision:
    # p=6.2496, q=3.7442, gamma=15.4435
    for name, published in PUBLISHED_GG.items():
        assert getattr(params, name) == pytest.approx(published, abs=5e-3), name


def test_gamma_gamma_on_hardies_rounded_zbar_gives_lifetimes_15_45():
    """Why lifetimes' docs say gamma = 15.45: they fit Hardie's summary, whose zbar is rounded to cents."""
    from models_ml import cdnow

    try:
        ref = cdnow.load_cdnow_reference_summary()
    except FileNotFoundError as exc:
        pytest.skip(f"CDNOW reference summary not available: {exc}")
    params = GammaGammaModel().fit(ref["x"], ref["zbar"])
    assert (round(params.p, 2), round(params.q, 2), round(params.gamma, 2)) == (6.25, 3.74, 15.45)


# ------------------------------------------------------------------ recovery on simulated data


def test_bgnbd_recovers_simulated_parameters():
    # 20k customers, T ~ U(26, 104) weeks. Over 20 seeds the relative sampling s.d. of the estimates is
    # about r 1%, alpha 1.5%, a 4.5%, b 5.5%; the tolerances below are ~4 s.d.
    true = BetaGeoParams(r=0.5, alpha=6.0, a=0.6, b=2.0)
    rng = np.random.default_rng(20240607)
    x, t_x, T = simulate_bgnbd(true, rng.uniform(26, 104, 20_000), rng)
    fitted = BetaGeoModel().fit(x, t_x, T)
    tolerance = {"r": 0.05, "alpha": 0.07, "a": 0.18, "b": 0.22}
    for name, rel in tolerance.items():
        assert getattr(fitted, name) == pytest.approx(getattr(true, name), rel=rel), name


def test_gamma_gamma_recovers_simulated_parameters():
    # ~17k repeat buyers; relative s.d. over 20 seeds about p 3.5%, q 2%, gamma 5.5%; tolerances ~4 s.d.
    true = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
    rng = np.random.default_rng(7)
    x = rng.poisson(2.0, 20_000).astype(float)
    zbar = simulate_gamma_gamma(true, x, rng)
    fitted = GammaGammaModel().fit(x, zbar)
    for name, rel in {"p": 0.14, "q": 0.08, "gamma": 0.22}.items():
        assert getattr(fitted, name) == pytest.approx(getattr(true, name), rel=rel), name


def test_expected_purchases_new_matches_simulated_mean():
    rng = np.random.default_rng(3)
    x, _, _ = simulate_bgnbd(CDNOW_PARAMS, np.full(200_000, 52.0), rng)
    expected = float(BetaGeoModel(CDNOW_PARAMS).expected_purchases_new(52.0))
    standard_error = x.std() / math.sqrt(x.size)
    assert abs(x.mean() - expected) < 4 * standard_error


def test_conditional_expectation_averages_to_unconditional_increment():
    """Law of total expectation: mean over customers of E[Y(t) | x, t_x, T] = E[X(T + t)] - E[X(T)]."""
    rng = np.random.default_rng(11)
    model = BetaGeoModel(CDNOW_PARAMS)
    x, t_x, T = simulate_bgnbd(CDNOW_PARAMS, np.full(200_000, 30.0), rng)
    conditional = model.expected_purchases(20.0, x, t_x, T)
    increment = float(model.expected_purchases_new(50.0) - model.expected_purchases_new(30.0))
    assert abs(conditional.mean() - increment) < 4 * conditional.std() / math.sqrt(x.size)


# ------------------------------------------------------------------ exactness of the implementation


def _eq10_by_direct_series(p: BetaGeoParams, t: float, x: int, t_x: float, T: float) -> float:
    """Eq. (10) as printed in the paper, 2F1 summed term by term (independent of the Euler transform)."""
    z = t / (p.alpha + T + t)
    A, B, C = p.r + x, p.b + x, p.a + p.b + x - 1
    total, term, k = 1.0, 1.0, 0
    while abs(term) > 1e-17 * abs(total) or k < 5:
        term *= (A + k) * (B + k) / ((C + k) * (k + 1)) * z
        total += term
        k += 1
    head = (p.a + p.b + x - 1) / (p.a - 1) * (1 - ((p.alpha + T) / (p.alpha + T + t)) ** (p.r + x) * total)
    odds = 0.0 if x == 0 else p.a / (p.b + x - 1) * ((p.alpha + T) / (p.alpha + t_x)) ** (p.r + x)
    return head / (1 + odds)


@pytest.mark.parametrize(
    "params", [CDNOW_PARAMS, BetaGeoParams(0.5, 10.0, 1.7, 5.0), BetaGeoParams(2.0, 30.0, 0.2, 0.5)]
)
def test_conditional_expectation_equals_eq10(params):
    model = BetaGeoModel(params)
    for x, t_x in [(0, 0.0), (1, 10.0), (5, 30.0), (20, 39.0)]:
        for t in [0.5, 5.0, 39.0, 100.0]:
            got = float(model.expected_purchases(t, x, t_x, 40.0))
            assert got == pytest.approx(_eq10_by_direct_series(params, t, x, t_x, 40.0), rel=1e-9)


def test_heavy_buyers_with_long_horizon_stay_finite():
    """Regression: scipy's hyp2f1 returns NaN for c >~ 200 with z > 0.9; the series fallback takes over."""
    model = BetaGeoModel(BetaGeoParams(r=1.0, alpha=1.0, a=3.0, b=30.0))
    x = np.array([0, 1, 5, 200, 5000])
    out = model.expected_purchases(100.0, x, np.array([0, 0.5, 3, 9, 9.99]), 10.0)
    assert np.isfinite(out).all() and (out >= 0).all()
    heavy_alive = model.expected_purchases(100.0, 200, 10.0, 10.0)  # last purchase at T: certainly alive
    z = 100.0 / 111.0
    series = clv._hyp2f1_series(3.0 + 30 - 1 - 1.0, 2.0, np.array([232.0]), np.array([z]))
    direct = 232.0 / 2.0 * (1 - (1 - z) ** 2 * series[0]) * float(model.probability_alive(200, 10.0, 10.0))
    assert float(heavy_alive) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("singular", ["a=1", "a+b+x-1=0"])
def test_removable_singularities_are_continuous(singular):
    if singular == "a=1":

        def at(v: float) -> np.ndarray:
            return BetaGeoModel(BetaGeoParams(0.5, 10.0, v, 2.0)).expected_purchases(39, [0, 3], [0, 20], 40)

        centre = 1.0
    else:  # a + b - 1 = 0 makes c = 0 for x = 0, a pole of 2F1 that eq. (10)'s prefactor cancels

        def at(v: float) -> np.ndarray:
            return BetaGeoModel(BetaGeoParams(0.5, 10.0, 0.7, v)).expected_purchases(39, [0, 3], [0, 20], 40)

        centre = 0.3
    exact = at(centre)
    assert np.isfinite(exact).all()
    np.testing.assert_allclose(exact, 0.5 * (at(centre - 1e-3) + at(centre + 1e-3)), rtol=1e-5)


def test_weighted_fit_equals_unaggregated_fit():
    rng = np.random.default_rng(5)
    T = rng.integers(30, 365, 20_000).astype(float)
    x, t_x, T = simulate_bgnbd(BetaGeoParams(0.5, 60.0, 0.6, 2.0), T, rng)
    t_x = np.round(t_x)  # whole days, so many customers share (x, t_x, T)
    xu, tu, Tu, w, inverse = compress_rfm(x, t_x, T)
    assert len(xu) < 0.6 * len(x) and w.sum() == len(x)
    np.testing.assert_array_equal(xu[inverse], x)
    np.testing.assert_array_equal(tu[inverse], t_x)
    full, weighted = BetaGeoModel().fit(x, t_x, T), BetaGeoModel().fit(xu, tu, Tu, weights=w)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(weighted, name) == pytest.approx(getattr(full, name), rel=1e-5), name
    assert weighted.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-6 * abs(full.log_likelihood))

    zbar = simulate_gamma_gamma(GammaGammaParams(6.0, 4.0, 15.0), x, rng).round(0) + 1.0
    gg_full = GammaGammaModel().fit(x, zbar)
    pairs = pl.DataFrame({"x": x, "m": zbar}).group_by("x", "m").len()
    gg_weighted = GammaGammaModel().fit(pairs["x"], pairs["m"], weights=pairs["len"])
    for name in ("p", "q", "gamma"):
        assert getattr(gg_weighted, name) == pytest.approx(getattr(gg_full, name), rel=1e-5), name


# ------------------------------------------------------------------ properties of the predictions


def test_probability_alive_properties():
    model = BetaGeoModel(CDNOW_PARAMS)
    T = np.linspace(5, 200, 50)
    p = model.probability_alive(3, 4.0, T)
    assert ((p >= 0) & (p <= 1)).all()
    assert (np.diff(p) < 0).all()  # the longer the silence since the last purchase, the likelier dead
    assert (np.diff(model.probability_alive(3, np.linspace(0, 5, 20), 5.0)) > 0).all()  # recent is alive
    # BG/NBD only lets customers drop out right after a repeat purchase: x = 0 means alive for sure.
    np.testing.assert_array_equal(model.probability_alive(0, 0.0, T), 1.0)
    assert float(model.probability_alive(3, 40.0, 40.0)) == pytest.approx(1 / (1 + 0.793 / (2.426 + 2)))


def test_expected_purchases_non_negative_and_increasing_in_t():
    model = BetaGeoModel(CDNOW_PARAMS)
    t = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 60)])
    for x, t_x, T in [(0, 0.0, 39.0), (1, 2.0, 39.0), (7, 38.0, 39.0), (40, 10.0, 60.0)]:
        e = model.expected_purchases(t, x, t_x, T)
        assert e[0] == 0.0
        assert (e >= 0).all() and (np.diff(e) > 0).all()
    assert (np.diff(model.expected_purchases_new(t)) > 0).all()


def test_clv_combines_purchases_and_spend_and_discounting_lowers_it():
    bg = BetaGeoModel(CDNOW_PARAMS)
    gg = GammaGammaModel(GammaGammaParams(6.25, 3.74, 15.44))
    x, t_x, T = np.array([0, 1, 4, 10]), np.array([0, 5.0, 30, 38]), np.full(4, 39.0)
    m = np.array([0, 20.0, 35, 12])
    value = customer_lifetime_value(bg, gg, x, t_x, T, m, horizon_days=365, freq_days=7)
    expected = bg.expected_purchases(365 / 7, x, t_x, T) * gg.conditional_expected_average_profit(x, m)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert float(gg.conditional_expected_average_profit(0, 0.0)) == pytest.approx(6.25 * 15.44 / 2.74)
    discounted = customer_lifetime_value(
        bg.params, gg.params, x, t_x, T, m, horizon_days=365, freq_days=7, discount_rate_annual=0.10
    )
    assert ((discounted < value) & (discounted > value / 1.10)).all()
    zero = customer_lifetime_value(bg, gg, x, t_x, T, m, horizon_days=0, freq_days=7)
    np.testing.assert_array_equal(zero, 0.0)


# ------------------------------------------------------------------ loud failures


def test_fit_refuses_too_few_customers():
    with pytest.raises(ModelFitError, match="need at least 20"):
        BetaGeoModel().fit([1, 0, 2] * 3, [3.0, 0.0, 5.0] * 3, [10.0] * 9)


def test_fit_refuses_data_without_repeat_buyers():
    with pytest.raises(ModelFitError, match="no customer made a repeat purchase"):
        BetaGeoModel().fit(np.zeros(100), np.zeros(100), np.full(100, 30.0))
    with pytest.raises(ModelFitError, match="no repeat buyers"):
        GammaGammaModel().fit(np.zeros(100), np.zeros(100))


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([1.0, np.nan], [1.0, 0.0], [5.0, 5.0], "frequency has 1 NaN"),
        ([1.0, -1.0], [1.0, 0.0], [5.0, 5.0], "frequency has 1 negative"),
        ([1.5, 1.0], [1.0, 1.0], [5.0, 5.0], "whole numbers"),
        ([1.0, 1.0], [6.0, 1.0], [5.0, 5.0], "recency exceeds T"),
        ([0.0, 1.0], [2.0, 1.0], [5.0, 5.0], "frequency 0 but recency > 0"),
        ([1.0, 1.0], [1.0, 1.0], [5.0, -5.0], "T has 1 negative"),
        ([1.0, 1.0, 1.0], [1.0, 1.0], [5.0, 5.0], "differ in length"),
    ],
)
def test_invalid_inputs_are_named(x, t_x, T, message):
    with pytest.raises(InvalidInputError, match=message):
        BetaGeoModel().fit(x, t_x, T)


def test_gamma_gamma_refuses_non_positive_spend_of_repeat_buyers():
    x = np.ones(50)
    with pytest.raises(InvalidInputError, match="monetary_value <= 0"):
        GammaGammaModel().fit(x, np.r_[np.zeros(1), np.full(49, 10.0)])
    with pytest.raises(InvalidInputError, match="negative"):
        GammaGammaModel().fit(x, np.r_[-1.0, np.full(49, 10.0)])


def test_unidentified_model_raises_instead_of_returning_runaway_parameters():
    # Every repeat buyer bought right up to T: no sign of dropout at all, so a -> 0 without end.
    rng = np.random.default_rng(0)
    x = rng.poisson(5, 500).astype(float)
    T = np.full(500, 50.0)
    with pytest.raises(ModelFitError, match="no finite maximum-likelihood estimate"):
        BetaGeoModel().fit(x, np.where(x > 0, T, 0.0), T)


def test_non_convergence_raises(monkeypatch):
    monkeypatch.setattr(clv, "GRAD_TOL", 0.0)  # an unreachable tolerance stands in for a stuck optimiser
    rng = np.random.default_rng(1)
    x, t_x, T = simulate_bgnbd(CDNOW_PARAMS, rng.uniform(20, 40, 500), rng)
    with pytest.raises(ModelFitError, match="did not converge"):
        BetaGeoModel().fit(x, t_x, T)


def test_predicting_without_parameters_raises():
    with pytest.raises(NotFittedError):
        BetaGeoModel().probability_alive(1, 1.0, 2.0)
    with pytest.raises(NotFittedError):
        GammaGammaModel().conditional_expected_average_profit(1, 10.0)
    with pytest.raises(InvalidInputError, match="must be positive"):
        BetaGeoParams(r=0.0, alpha=1.0, a=1.0, b=1.0)


def test_analytic_gradients_match_finite_differences():
    """The fits trust analytic gradients; a wrong one would stop the optimiser at the wrong point."""
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(2)
    x, t_x, T = simulate_bgnbd(CDNOW_PARAMS, rng.uniform(20, 40, 300), rng)
    w = rng.integers(1, 4, x.size).astype(float)
    zbar = simulate_gamma_gamma(GammaGammaParams(6.0, 4.0, 15.0), x, rng)
    repeat = x > 0
    cases = [
        (clv._BetaGeoLikelihood(x, t_x, T, w), np.log([0.3, 4.0, 0.9, 2.0])),
        (clv._GammaGammaLikelihood(x[repeat], zbar[repeat], w[repeat]), np.log([5.0, 3.0, 12.0])),
    ]
    for nll, theta in cases:
        numeric = approx_fprime(theta, lambda th, nll=nll: nll(th)[0], 1e-7)
        np.testing.assert_allclose(nll(theta)[1], numeric, rtol=1e-5, atol=1e-6)
