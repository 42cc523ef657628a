"""The known process behind every purchase, dropout and ticket.

Later work fits BG/NBD + Gamma-Gamma and churn models to the visible data and compares them with
the ground truth, so the process is deliberately simple and fully stated here. Time is in days.

Per person i (all draws independent across persons):

* ``lambda_i ~ Gamma(shape=r=0.9, rate=alpha=15)``             base purchase rate per day (mean 0.06)
* ``rep_effect`` of the account's owner rep ~ LogNormal(0, 0.2), rescaled to mean 1 over reps;
  ``purchase_rate_i = lambda_i * rep_effect``  (reps differ in effectiveness)
* ``p_i ~ Beta(a=1.0, b=12.0)``                                  dropout probability (mean 0.077)
* ``nu_i ~ Gamma(shape=q=5, rate=gamma)``, gamma = 75 (B2C) / 400 (B2B);
  spend of each order ``z ~ Gamma(shape=p=4, rate=nu_i)``, so the ground truth stores
  ``spend_shape = p`` and ``spend_scale = 1/nu_i`` (mean order value = shape * scale).
* first purchase (the BG/NBD "trial") at ``t0 ~ Uniform(start, end)``: every person is acquired
  inside the visible window, so visible and future orders come from one process.

Repeat purchases form a Poisson process with intensity
``purchase_rate_i * season(day) * (1 + L * lifted_i(t))`` while the person is alive:

* ``season(day) = weekly[dow] * (1 + 0.25 * cos(2 pi (doy - 335) / 365.25))`` with
  weekly = (0.95, 1.0, 1.0, 1.05, 1.1, 1.2, 0.7) / mean (Mon..Sun); constant within a day.
* campaign lift: ``lifted_i(t) = 1`` for 10 days after any click of person i on a campaign,
  ``L = 1.0``. A purchase inside a lift window is reported by marketing as a *conversion*
  (revenue = order amount) attributed to the latest click.

Dropout (BG/NBD): after each *repeat* purchase the person becomes inactive for good with probability
``p_i``; ``true_dropout_at`` is the time of that purchase. A bad support experience (a ticket rated
*bad*, or resolved after more than 5 days) raises it for every later purchase to
``p_i + 0.25 * (1 - p_i)``.

Support: each purchase raises a ticket with probability 0.10, ``Exp(mean 3 days)`` after it.
Priority low/normal/high/urgent = 25/50/18/7 %. Resolution ``LogNormal(ln 1.2 days, 1.0)`` times
1.5/1/0.7/0.4 by priority; the first reply comes ``min(Exp(3 h), 40 % of resolution)`` after
creation; 40 % of tickets wait in *pending* half-way; a solved ticket closes 4 days later. Half of
the requesters answer the satisfaction survey ``min(Exp(1 day), 3.5 days)`` after the solve;
the answer is *bad* with probability ``sigmoid(-1.6 + 0.45 * resolution_days)``.

Simulation is exact, not stepped: repeat purchases are a base Poisson process with intensity
``purchase_rate * season`` (drawn in "seasonal time", the inverse of the cumulative season) merged
with, inside each lift window, an independent Poisson process with intensity
``purchase_rate * L * season`` (a window ends at the person's next click, so windows never overlap);
dropout then truncates each person's sequence. Everything is array arithmetic over all persons of a
chunk at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import DAY, HOUR, SimulationConfig


@dataclass(frozen=True)
class ProcessParams:
    r: float = 0.9
    alpha: float = 15.0
    a: float = 1.0
    b: float = 12.0
    spend_p: float = 4.0
    spend_q: float = 5.0
    spend_gamma_b2c: float = 75.0
    spend_gamma_b2b: float = 400.0
    rep_effect_sigma: float = 0.2
    weekly: tuple[float, ...] = (0.95, 1.0, 1.0, 1.05, 1.1, 1.2, 0.7)
    yearly_amplitude: float = 0.25
    yearly_peak_doy: int = 335
    lift: float = 1.0
    lift_days: float = 10.0
    bad_experience_extra_dropout: float = 0.25
    long_resolution_days: float = 5.0
    ticket_prob: float = 0.10
    ticket_delay_days: float = 3.0
    priority_probs: tuple[float, ...] = (0.25, 0.50, 0.18, 0.07)  # low, normal, high, urgent
    priority_speed: tuple[float, ...] = (1.5, 1.0, 0.7, 0.4)
    resolution_median_days: float = 1.2
    resolution_sigma: float = 1.0
    first_reply_hours: float = 3.0
    pending_prob: float = 0.40
    close_after_days: float = 4.0
    rating_prob: float = 0.5
    rating_delay_days: float = 1.0
    bad_rating_intercept: float = -1.6
    bad_rating_slope: float = 0.45


PARAMS = ProcessParams()

PRIORITIES = ("low", "normal", "high", "urgent")
VIAS = ("email", "web", "phone", "chat")
VIA_PROBS = (0.45, 0.30, 0.15, 0.10)
NO_TIME = np.iinfo(np.int64).max  # "never" in int64 time arrays


def draw_rep_effects(rng: np.random.Generator, n_reps: int, params: ProcessParams = PARAMS) -> np.ndarray:
    effect = rng.lognormal(0.0, params.rep_effect_sigma, n_reps)
    return effect / effect.mean()


def draw_latent(
    rng: np.random.Generator,
    cfg: SimulationConfig,
    is_b2b: np.ndarray,
    rep_effect: np.ndarray,
    params: ProcessParams = PARAMS,
) -> dict[str, np.ndarray]:
    n = len(is_b2b)
    base_rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    gamma = np.where(is_b2b, params.spend_gamma_b2b, params.spend_gamma_b2c)
    nu = rng.gamma(params.spend_q, 1.0 / gamma)
    return {
        "base_rate": base_rate,
        "rep_effect": rep_effect,
        "purchase_rate": base_rate * rep_effect,
        "dropout_prob": rng.beta(params.a, params.b, n),
        "spend_shape": np.full(n, params.spend_p),
        "spend_scale": 1.0 / nu,
        "t0": rng.integers(0, cfg.visible_end_s, n, dtype=np.int64),
    }


class Season:
    """Daily intensity multipliers over the whole horizon and their exact cumulative integral."""

    def __init__(self, cfg: SimulationConfig, params: ProcessParams = PARAMS):
        n_days = cfg.days + cfg.horizon_days
        dates = np.datetime64(cfg.start.isoformat(), "D") + np.arange(n_days)
        dow = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
        weekly = np.asarray(params.weekly) / np.mean(params.weekly)
        self.daily = weekly[dow] * (
            1 + params.yearly_amplitude * np.cos(2 * np.pi * (doy - params.yearly_peak_doy) / 365.25)
        )
        self.knots_t = np.arange(n_days + 1, dtype=np.float64) * DAY
        self.knots_s = np.concatenate([[0.0], np.cumsum(self.daily)])  # in "seasonal days"

    def cum(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.knots_t, self.knots_s)

    def inverse(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, self.knots_s, self.knots_t)


@dataclass
class Clicks:
    """Every click of the whole horizon, sorted by (person, time); index = click id."""

    person: np.ndarray  # int64 person_idx
    ts: np.ndarray  # int64 seconds
    campaign: np.ndarray  # int32 campaign_idx


@dataclass
class ChunkResult:
    # purchases, sorted by (person, time)
    person: np.ndarray
    t: np.ndarray
    amount: np.ndarray
    click: np.ndarray  # global click id that lifted it, -1 if none
    # per person of the chunk
    dropout_t: np.ndarray  # NO_TIME if still alive at the horizon end
    # tickets (unsorted), raised by kept purchases
    tickets: dict[str, np.ndarray]


def _sorted_uniforms(rng: np.random.Generator, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group g, ``counts[g]`` sorted Uniform(0,1) draws, without sorting anything.

    Normalised cumulative sums of counts+1 exponentials are distributed as sorted uniforms.
    Returns (group of each draw, draw), grouped in order.
    """
    size = counts + 1
    group = np.repeat(np.arange(len(counts)), size)
    cs = np.cumsum(rng.standard_exponential(int(size.sum())))
    end = np.cumsum(size) - 1
    before = np.concatenate([[0.0], cs[end[:-1]]])
    within = cs - before[group]
    keep = np.ones(len(cs), dtype=bool)
    keep[end] = False
    return group[keep], within[keep] / within[end][group[keep]]


def _rank_in_groups(sorted_group: np.ndarray) -> np.ndarray:
    """0,1,2... within runs of equal values of an already grouped array."""
    n = len(sorted_group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    run = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n) - run


def simulate_chunk(
    rng: np.random.Generator,
    cfg: SimulationConfig,
    season: Season,
    lo: int,
    rate: np.ndarray,
    dropout_prob: np.ndarray,
    spend_shape: np.ndarray,
    spend_scale: np.ndarray,
    t0: np.ndarray,
    clicks: Clicks,
    params: ProcessParams = PARAMS,
) -> ChunkResult:
    """Purchases, tickets and dropout for persons ``lo .. lo+len(rate)-1`` over the whole horizon."""
    n = len(rate)
    horizon = cfg.horizon_end_s
    L = params.lift

    # --- base repeat purchases: Poisson(rate * season) from t0 to the horizon end -------------------
    s0, s_end = season.cum(t0.astype(np.float64)), season.cum(np.array([float(horizon)]))[0]
    grp, frac = _sorted_uniforms(rng, rng.poisson(rate * (s_end - s0)))
    base_t = season.inverse(s0[grp] + frac * (s_end - s0[grp])).astype(np.int64)
    base_t = np.clip(base_t, t0[grp] + 1, horizon - 1)

    # --- lift: inside each click's window an independent Poisson(rate * L * season) adds purchases.
    # Windows end at the person's next click, so they never overlap and the superposition has
    # exactly the intensity rate * season * (1 + L * lifted).
    c_lo, c_hi = np.searchsorted(clicks.person, [lo, lo + n])
    cg, ct = clicks.person[c_lo:c_hi] - lo, clicks.ts[c_lo:c_hi]
    w_end = np.minimum(ct + int(params.lift_days * DAY), horizon - 1)
    same_next = np.zeros(len(cg), dtype=bool)  # the person's next click exists
    same_next[:-1] = cg[1:] == cg[:-1]
    w_end[same_next] = np.minimum(w_end[same_next], ct[1:][same_next[:-1]])
    w_start = np.maximum(ct, t0[cg] + 1)
    w_s0, w_s1 = season.cum(w_start.astype(np.float64)), season.cum(w_end.astype(np.float64))
    w_count = np.where(w_end > w_start, rng.poisson(rate[cg] * L * np.maximum(w_s1 - w_s0, 0)), 0)
    wi, wfrac = _sorted_uniforms(rng, w_count)
    extra_t = season.inverse(w_s0[wi] + wfrac * (w_s1[wi] - w_s0[wi])).astype(np.int64)
    extra_t = np.clip(extra_t, w_start[wi], w_end[wi])
    extra_grp = cg[wi]

    # --- merge the two sorted streams (both ordered by person, then time) --------------------------
    stride = horizon + 1
    base_key, extra_key = grp * stride + base_t, extra_grp * stride + extra_t
    extra_pos = np.searchsorted(base_key, extra_key, side="right") + np.arange(len(extra_key))
    is_extra = np.zeros(len(base_key) + len(extra_key), dtype=bool)
    is_extra[extra_pos] = True
    rep_grp = np.empty(len(is_extra), dtype=np.int64)
    rep_t = np.empty(len(is_extra), dtype=np.int64)
    rep_grp[is_extra], rep_grp[~is_extra] = extra_grp, grp
    rep_t[is_extra], rep_t[~is_extra] = extra_t, base_t

    # Last-click attribution: a purchase inside a lift window belongs to the latest click.
    rep_click = np.full(len(rep_t), -1, dtype=np.int64)
    if c_hi > c_lo:
        ckey = cg * stride + ct
        pos = np.searchsorted(ckey, rep_grp * stride + rep_t, side="right") - 1
        pc = np.clip(pos, 0, None)
        inside = (pos >= 0) & (cg[pc] == rep_grp) & (rep_t - ct[pc] <= params.lift_days * DAY)
        rep_click[inside] = c_lo + pos[inside]

    # --- all purchases: the first (trial) at t0, then the accepted repeats -------------------------
    n_rep = np.bincount(rep_grp, minlength=n)
    first_pos = np.arange(n) + np.concatenate([[0], np.cumsum(n_rep)[:-1]])
    total = n + len(rep_t)
    is_first = np.zeros(total, dtype=bool)
    is_first[first_pos] = True
    p_grp = np.empty(total, dtype=np.int64)
    p_t = np.empty(total, dtype=np.int64)
    p_click = np.full(total, -1, dtype=np.int64)
    p_grp[is_first], p_t[is_first] = np.arange(n), t0
    p_grp[~is_first], p_t[~is_first], p_click[~is_first] = rep_grp, rep_t, rep_click
    j = _rank_in_groups(p_grp)

    # --- tickets for every purchase (before dropout is known: outcomes do not depend on it) -------
    tickets = _draw_tickets(rng, p_grp, p_t, horizon, params)
    first_bad = np.full(n, NO_TIME, dtype=np.int64)
    np.minimum.at(first_bad, tickets["grp"], tickets["bad_t"])

    # --- dropout after repeat purchases; a bad experience before the purchase raises it -----------
    p = dropout_prob[p_grp]
    p_eff = np.where(p_t > first_bad[p_grp], p + params.bad_experience_extra_dropout * (1 - p), p)
    drops = (j >= 1) & (rng.random(total) < p_eff)
    drop_rows = np.flatnonzero(drops)
    first_drop_grp, first_idx = np.unique(p_grp[drop_rows], return_index=True)
    drop_j = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    drop_j[first_drop_grp] = j[drop_rows[first_idx]]
    dropout_t = np.full(n, NO_TIME, dtype=np.int64)
    dropout_t[first_drop_grp] = p_t[drop_rows[first_idx]]

    keep = j <= drop_j[p_grp]
    kept_grp = p_grp[keep]
    amount = rng.gamma(spend_shape[kept_grp], spend_scale[kept_grp])

    tkeep = j[tickets["purchase_row"]] <= drop_j[tickets["grp"]]
    tickets = {k: v[tkeep] for k, v in tickets.items()}
    tickets["person"] = tickets.pop("grp") + lo
    del tickets["purchase_row"]
    return ChunkResult(
        person=kept_grp + lo,
        t=p_t[keep],
        amount=amount,
        click=p_click[keep],
        dropout_t=dropout_t,
        tickets=tickets,
    )


def _draw_tickets(
    rng: np.random.Generator, p_grp: np.ndarray, p_t: np.ndarray, horizon: int, params: ProcessParams
) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(rng.random(len(p_t)) < params.ticket_prob)
    created = p_t[rows] + (rng.exponential(params.ticket_delay_days, len(rows)) * DAY).astype(np.int64) + 60
    ok = created < horizon
    rows, created = rows[ok], created[ok]
    m = len(rows)
    priority = rng.choice(len(PRIORITIES), m, p=np.asarray(params.priority_probs))
    res_days = (
        rng.lognormal(np.log(params.resolution_median_days), params.resolution_sigma, m)
        * np.asarray(params.priority_speed)[priority]
    )
    res_s = np.maximum((res_days * DAY).astype(np.int64), HOUR // 2)
    opened = created + np.minimum(rng.exponential(params.first_reply_hours, m) * HOUR, 0.4 * res_s).astype(np.int64) + 1
    solved = created + res_s
    pending = np.where(rng.random(m) < params.pending_prob, opened + (solved - opened) // 2, NO_TIME)
    pending = np.where(pending <= opened, NO_TIME, pending)
    rated = rng.random(m) < params.rating_prob
    rating_t = np.where(
        rated,
        solved + (np.minimum(rng.exponential(params.rating_delay_days, m), 3.5) * DAY).astype(np.int64) + 60,
        NO_TIME,
    )
    p_bad = 1.0 / (1.0 + np.exp(-(params.bad_rating_intercept + params.bad_rating_slope * res_days)))
    bad = rated & (rng.random(m) < p_bad)
    score = np.where(rated, np.where(bad, 2, 1), 0)  # 0 none, 1 good, 2 bad
    slow = res_days > params.long_resolution_days
    bad_t = np.where(bad, rating_t, np.where(slow, solved, NO_TIME))
    return {
        "grp": p_grp[rows],
        "purchase_row": rows,
        "created": created,
        "opened": opened,
        "pending": pending,
        "solved": solved,
        "closed": solved + int(params.close_after_days * DAY),
        "rating_t": rating_t,
        "score": score,
        "bad_t": bad_t,
        "priority": priority.astype(np.int8),
        "via": rng.choice(len(VIAS), m, p=np.asarray(VIA_PROBS)).astype(np.int8),
        "subject": rng.integers(0, 1 << 16, m).astype(np.int32),
        "comment": rng.integers(0, 1 << 16, m).astype(np.int32),
        "resolution_days": res_days,
    }
