"""The purchase / dropout process of simulator/behaviour.py behaves as its docstring states.

Later work fits BG/NBD and Gamma-Gamma to the simulated data and compares with the truth, so the
simulated process must really be the documented one: checked here on the process alone, with
large samples and tolerances several standard errors wide.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from simulator.behaviour import NO_TIME, PARAMS, Clicks, Season, simulate_chunk
from simulator.config import DAY, SimulationConfig, rng_for

CFG = SimulationConfig(customers=1000, seed=3, start=date(2024, 1, 1), days=365, horizon_days=365)
NO_CLICKS = Clicks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))
# Without tickets no bad experience changes the dropout probability.
QUIET = replace(PARAMS, ticket_prob=0.0)


def _run(n, rate, p, clicks=NO_CLICKS, params=QUIET, t0=None, seed=1):
    season = Season(CFG, params)
    t0 = np.zeros(n, dtype=np.int64) if t0 is None else t0
    return season, simulate_chunk(
        rng_for(seed, "test"),
        CFG,
        season,
        0,
        np.full(n, rate),
        np.full(n, p),
        np.full(n, 4.0),
        np.full(n, 25.0),
        t0,
        clicks,
        params,
    )


def test_season_integral_is_exact_and_averages_one_over_a_year():
    season = Season(CFG)
    t = np.linspace(0, CFG.horizon_end_s - 1, 10_001)
    assert np.allclose(season.inverse(season.cum(t)), t, atol=1e-3)
    assert np.all(np.diff(season.cum(t)) > 0)
    assert season.daily[:365].mean() == pytest.approx(1.0, abs=0.01)
    # Saturday beats Sunday, December beats June.
    assert season.daily[5] > season.daily[6] and season.daily[340] > season.daily[160]


def test_without_dropout_repeat_purchases_are_poisson_with_the_seasonal_rate():
    n, rate = 20_000, 0.02
    season, r = _run(n, rate, 0.0)
    counts = np.bincount(r.person, minlength=n) - 1  # minus the first purchase
    expected = rate * season.cum(np.array([float(CFG.horizon_end_s)]))[0]
    assert counts.mean() == pytest.approx(expected, rel=0.02)
    assert counts.var() == pytest.approx(expected, rel=0.06)  # Poisson: variance = mean
    assert np.all(r.dropout_t == NO_TIME)
    first = np.r_[True, r.person[1:] != r.person[:-1]]
    assert np.all(r.t[first] == 0) and np.all(np.diff(r.t)[~first[1:]] > 0), "sorted by person, then time"


def test_dropout_happens_after_a_repeat_purchase_with_probability_p():
    n = 20_000
    _, r = _run(n, 0.05, 0.25)
    counts = np.bincount(r.person, minlength=n)
    alive = r.dropout_t == NO_TIME
    # Dropped persons made 1 + k purchases, k >= 1, geometric: P(k) = (1-p)^(k-1) p.
    k = counts[~alive] - 1
    assert k.min() >= 1 and k.mean() == pytest.approx(1 / 0.25, rel=0.05)
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, r.person, r.t)
    assert np.all(last[~alive] == r.dropout_t[~alive]), "the dropout time is the last purchase"
    # Nobody drops out after the trial purchase alone (BG/NBD).
    assert np.all(r.dropout_t[counts == 1] == NO_TIME)


def test_clicks_lift_purchases_inside_their_window_and_are_attributed():
    n = 4_000
    # every person clicks every 30 days: windows of 10 days cover a third of the time
    times = np.arange(5, CFG.days + CFG.horizon_days - 10, 30) * DAY
    clicks = Clicks(
        np.repeat(np.arange(n), len(times)).astype(np.int64),
        np.tile(times, n).astype(np.int64),
        np.tile(np.arange(len(times)), n).astype(np.int32),
    )
    params = replace(QUIET, weekly=(1,) * 7, yearly_amplitude=0.0)
    _, r = _run(n, 0.03, 0.0, clicks, params)
    rep = np.r_[False, r.person[1:] == r.person[:-1]]
    inside = r.click >= 0
    assert np.all(clicks.person[r.click[inside]] == r.person[inside])
    since = r.t[inside] - clicks.ts[r.click[inside]]
    assert since.min() >= 0 and since.max() <= params.lift_days * DAY
    share_time_lifted = params.lift_days / 30
    rate_in = (rep & inside).sum() / share_time_lifted
    rate_out = (rep & ~inside).sum() / (1 - share_time_lifted)
    assert rate_in / rate_out == pytest.approx(1 + params.lift, rel=0.08)


def test_bad_support_experiences_raise_dropout():
    n = 30_000
    always = replace(PARAMS, ticket_prob=1.0)
    never = replace(PARAMS, ticket_prob=0.0)
    _, with_tickets = _run(n, 0.05, 0.05, params=always)
    _, without = _run(n, 0.05, 0.05, params=never)
    assert (with_tickets.dropout_t < NO_TIME).mean() > (without.dropout_t < NO_TIME).mean() + 0.05
    t = with_tickets.tickets
    assert np.all(t["created"] > 0) and np.all(t["solved"] > t["created"]) and np.all(t["closed"] > t["solved"])
    rated = t["score"] > 0
    slow = t["resolution_days"] > 5
    bad_share_slow = (t["score"][rated & slow] == 2).mean()
    bad_share_fast = (t["score"][rated & ~slow] == 2).mean()
    assert bad_share_slow > bad_share_fast + 0.2, "long resolutions get bad ratings"


def test_spend_follows_the_gamma_gamma_scale():
    n = 5_000
    _, r = _run(n, 0.05, 0.0)
    assert r.amount.mean() == pytest.approx(4.0 * 25.0, rel=0.03)
    assert np.all(r.amount > 0)
