"""Customer lifetime value: BG/NBD (how many purchases) x Gamma-Gamma (how much per purchase).

Both models are fitted by maximum likelihood with numpy/scipy only:

* **BG/NBD** -- Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to
  the Pareto/NBD model", Marketing Science 24(2). While alive a customer buys as a Poisson process
  with rate ``lambda ~ Gamma(r, alpha)``; after every *repeat* purchase they drop out with probability
  ``p ~ Beta(a, b)``. The data per customer are ``x`` (repeat purchases), ``t_x`` (time of the last
  purchase, measured from the first one) and ``T`` (time from the first purchase to the end of the
  observation window).
* **Gamma-Gamma** -- Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer
  base analysis", JMR 42(4), and Hardie's note "The Gamma-Gamma model of monetary value" (2013).
  Each transaction value is ``Gamma(p, nu)`` with ``nu ~ Gamma(q, gamma)``; fitted on the mean repeat
  transaction value ``zbar`` of customers with ``x > 0``.

Why it is written this way:

* The likelihoods are the closed forms of the papers, evaluated in log space (``gammaln``, ``betaln``,
  a two-term log-sum-exp) with *analytic gradients* in log-parameters, so a million customers fit in a
  few seconds with L-BFGS-B. Terms that depend only on ``x`` are computed once per distinct ``x``.
* Identical ``(x, t_x, T)`` rows can be collapsed with :func:`compress_rfm` and fitted with weights;
  the weighted likelihood is exactly the unaggregated one.
* The conditional expectation (eq. 10 of the BG/NBD paper) needs the Gaussian hypergeometric
  function. We apply Euler's transformation
  ``2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-1-r-x) 2F1(a+b-1-r, a-1; a+b+x-1; z)``, which cancels the
  ``((alpha+T)/(alpha+T+t))^(r+x)`` prefactor and leaves a series whose first two parameters do not
  grow with ``x`` -- scipy's ``hyp2f1`` is accurate there, where the textbook form loses precision or
  overflows for heavy buyers. The removable singularities at ``a = 1`` and ``a + b + x - 1 = 0`` are
  handled by symmetric perturbation.
* Nothing is silent: invalid inputs raise :class:`InvalidInputError`, a fit that does not converge,
  runs to a parameter bound or has too little data raises :class:`ModelFitError`, and a numerically
  broken prediction raises :class:`NumericalError`. Outputs are never negative (round-off below zero
  is clipped; anything worse raises).

Plain Python on purpose: no Dagster imports (the scoring assets wrap these functions).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import optimize, special

__all__ = [
    "BetaGeoModel",
    "BetaGeoParams",
    "GammaGammaModel",
    "GammaGammaParams",
    "InvalidInputError",
    "MeanSpendModel",
    "MeanSpendParams",
    "ModelFitError",
    "NBDModel",
    "NBDParams",
    "PoissonModel",
    "PoissonParams",
    "PurchaseParams",
    "fit_purchase_model",
    "fit_spend_model",
    "purchase_model",
    "spend_model",
    "NotFittedError",
    "NumericalError",
    "compress_rfm",
    "customer_lifetime_value",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "summary_from_transactions",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

#: Fewer customers than this and the four BG/NBD (or three Gamma-Gamma) parameters are not identified.
MIN_CUSTOMERS = 20
#: Log-parameter box for the optimiser; an optimum on this box means "no finite MLE" and raises.
LOG_PARAM_BOUND = 18.0
#: Fitted parameters outside [1e-6, 1e6] mean the likelihood is running off to a degenerate limit
#: (e.g. r, alpha -> inf: no purchase-rate heterogeneity; a -> 0: no dropout). We raise rather than
#: return numbers that happen to be where the optimiser stopped on a flat ridge.
PLAUSIBLE_LOG_PARAM = math.log(1e6)
#: Accept a fit only when the largest |gradient| of the mean log-likelihood (per customer,
#: w.r.t. log-parameters) is below this.
GRAD_TOL = 1e-5
#: Relative round-off we silently clip to zero (anything more negative raises).
_NEG_ROUNDOFF = 1e-9
DAYS_PER_YEAR = 365.25


class InvalidInputError(ValueError):
    """Inputs are malformed: NaN/inf, negative values, recency after T, missing columns, ..."""


class ModelFitError(ValueError):
    """The model could not be fitted: too little data, no convergence, or no finite optimum."""


class NotFittedError(RuntimeError):
    """A prediction was asked of a model that has no parameters yet."""


class NumericalError(ArithmeticError):
    """A prediction came out non-finite or clearly negative (never returned silently)."""


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------


def _as_float_array(name: str, values: ArrayLike) -> FloatArray:
    if isinstance(values, pl.Series):
        if values.null_count():
            raise InvalidInputError(f"{name} has {values.null_count()} null value(s)")
        values = values.to_numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} is not numeric: {exc}") from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidInputError(f"{name} has {int(bad.sum())} NaN/inf value(s)")
    return arr


def _validate_rfm(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    broadcast: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Check (x, t_x, T) and return float arrays (1-D, or broadcast together when ``broadcast``)."""
    x = _as_float_array("frequency", frequency)
    t_x = _as_float_array("recency", recency)
    TT = _as_float_array("T", T)
    if broadcast:
        try:
            x, t_x, TT = np.broadcast_arrays(x, t_x, TT)
        except ValueError as exc:
            raise InvalidInputError(f"frequency, recency and T do not broadcast together: {exc}") from exc
    else:
        for name, arr in (("frequency", x), ("recency", t_x), ("T", TT)):
            if arr.ndim != 1:
                raise InvalidInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
        if not (len(x) == len(t_x) == len(TT)):
            raise InvalidInputError(f"frequency, recency and T differ in length: {len(x)}, {len(t_x)}, {len(TT)}")
    for name, arr in (("frequency", x), ("recency", t_x), ("T", TT)):
        n_neg = int((arr < 0).sum())
        if n_neg:
            raise InvalidInputError(f"{name} has {n_neg} negative value(s)")
    n_frac = int((x != np.floor(x)).sum())
    if n_frac:
        raise InvalidInputError(f"frequency must be whole numbers of repeat purchases; {n_frac} are not")
    # tolerate float round-off from unit conversions (t_x and T computed separately)
    over = t_x > TT * (1 + 1e-12) + 1e-12
    if over.any():
        i = int(np.flatnonzero(over.ravel())[0])
        raise InvalidInputError(
            f"recency exceeds T for {int(over.sum())} customer(s) "
            f"(first at position {i}: recency={t_x.ravel()[i]!r} > T={TT.ravel()[i]!r})"
        )
    inconsistent = (x == 0) & (t_x > 0)
    if inconsistent.any():
        raise InvalidInputError(
            f"{int(inconsistent.sum())} customer(s) have frequency 0 but recency > 0 "
            "(recency is the time of the last repeat purchase; it is 0 without one)"
        )
    return x, np.minimum(t_x, TT), TT


def _validate_weights(weights: ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n)
    w = _as_float_array("weights", weights)
    if w.shape != (n,):
        raise InvalidInputError(f"weights must have shape ({n},), got {w.shape}")
    if (w < 0).any():
        raise InvalidInputError(f"weights has {int((w < 0).sum())} negative value(s)")
    return w


def _nonnegative(name: str, values: FloatArray, scale: FloatArray | float = 1.0) -> FloatArray:
    """Clip round-off below zero; raise on non-finite or clearly negative results."""
    if not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise NumericalError(f"{name}: {n_bad} non-finite value(s) (parameters or horizon out of range?)")
    tol = _NEG_ROUNDOFF * np.maximum(np.abs(scale), 1.0)
    if (values < -tol).any():
        i = int(np.flatnonzero((values < -tol).ravel())[0])
        raise NumericalError(f"{name}: negative value {values.ravel()[i]!r} at position {i}")
    return np.maximum(values, 0.0)


def compress_rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """Collapse identical (x, t_x, T) rows.

    Returns ``(x, t_x, T, weights, inverse)`` where ``weights`` counts each distinct row and
    ``inverse`` maps every original row to its distinct row (``pred[inverse]`` expands scores back).
    Fitting the distinct rows with these weights gives exactly the unaggregated likelihood.
    """
    x, t_x, TT = _validate_rfm(frequency, recency, T)
    if x.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty, empty, np.zeros(0, dtype=np.intp)
    # lexsort + run boundaries: several times faster than np.unique(axis=0) on a million rows
    order = np.lexsort((TT, t_x, x))
    xs, ts, Ts = x[order], t_x[order], TT[order]
    new_row = np.empty(x.size, dtype=bool)
    new_row[0] = True
    new_row[1:] = (xs[1:] != xs[:-1]) | (ts[1:] != ts[:-1]) | (Ts[1:] != Ts[:-1])
    group_of_sorted = np.cumsum(new_row) - 1
    inverse = np.empty(x.size, dtype=np.intp)
    inverse[order] = group_of_sorted
    counts = np.bincount(group_of_sorted).astype(np.float64)
    return xs[new_row], ts[new_row], Ts[new_row], counts, inverse


# ----------------------------------------------------------------------------------------------
# RFM summary from a transaction log
# ----------------------------------------------------------------------------------------------


def _day_and_amount(
    transactions: pl.DataFrame, customer_col: str, date_col: str, amount_col: str | None
) -> tuple[pl.Expr, pl.Expr]:
    """The purchase day and amount expressions, after checking the columns a summary needs."""
    needed = [customer_col, date_col] + ([amount_col] if amount_col else [])
    missing = [c for c in needed if c not in transactions.columns]
    if missing:
        raise InvalidInputError(f"transactions lack column(s) {missing}; have {transactions.columns}")
    for col in needed:
        n_null = transactions.get_column(col).null_count()
        if n_null:
            raise InvalidInputError(f"column {col!r} has {n_null} null value(s)")
    dtype = transactions.schema[date_col]
    if dtype == pl.Date:
        day = pl.col(date_col)
    elif isinstance(dtype, pl.Datetime):
        day = pl.col(date_col).dt.date()
    else:
        raise InvalidInputError(f"column {date_col!r} must be Date or Datetime, got {dtype}")
    if amount_col is None:
        return day, pl.lit(0.0)
    if not transactions.schema[amount_col].is_numeric():
        raise InvalidInputError(f"column {amount_col!r} must be numeric, got {transactions.schema[amount_col]}")
    amount = pl.col(amount_col).cast(pl.Float64)
    n_nan = transactions.select(amount.is_nan().sum()).item()
    if n_nan:
        raise InvalidInputError(f"column {amount_col!r} has {n_nan} NaN value(s)")
    return day, amount


def summary_from_transactions(
    transactions: pl.DataFrame,
    customer_col: str,
    date_col: str,
    amount_col: str | None = None,
    *,
    observation_end: date,
    freq_days: float = 1.0,
) -> pl.DataFrame:
    """Per-customer ``frequency``, ``recency``, ``T`` (and ``monetary_value``) as the models expect.

    * Transactions after ``observation_end`` are ignored (calibration period); a customer's
      transactions on the same calendar day are merged into one purchase (amounts summed), as in the
      BG/NBD paper's CDNOW analysis.
    * ``frequency`` = number of distinct purchase days minus one (repeat purchases);
      ``recency`` = first -> last purchase day; ``T`` = first purchase day -> ``observation_end``;
      both in units of ``freq_days`` days and *fractional* (``freq_days=7`` gives the papers' weeks,
      e.g. 272 days = 38.857 weeks; lifetimes' integer ``freq='W'`` periods differ slightly).
    * ``monetary_value`` = mean value of the *repeat* purchase days (first purchase excluded, as in
      Fader, Hardie & Lee and lifetimes); 0 for customers without a repeat purchase.

    Raises :class:`InvalidInputError` on missing columns, nulls, non-date dates, negative day
    totals or an empty calibration period.
    """
    if freq_days <= 0 or not math.isfinite(freq_days):
        raise InvalidInputError(f"freq_days must be a positive number, got {freq_days!r}")
    if isinstance(observation_end, datetime):
        observation_end = observation_end.date()
    day, amount = _day_and_amount(transactions, customer_col, date_col, amount_col)

    daily = (
        transactions.lazy()
        .select(pl.col(customer_col).alias("_customer"), day.alias("_day"), amount.alias("_amount"))
        .filter(pl.col("_day") <= observation_end)
        .group_by("_customer", "_day")
        .agg(pl.col("_amount").sum())
        .collect()
    )
    if daily.height == 0:
        raise InvalidInputError(f"no transactions on or before observation_end={observation_end}")
    if amount_col is not None:
        n_negative = daily.select((pl.col("_amount") < 0).sum()).item()
        if n_negative:
            raise InvalidInputError(
                f"{n_negative} customer-day(s) have a negative total {amount_col!r}; "
                "net returns against their orders before summarising"
            )

    per_customer = (
        daily.sort("_customer", "_day")
        .group_by("_customer", maintain_order=True)
        .agg(
            pl.col("_day").first().alias("_first"),
            pl.col("_day").last().alias("_last"),
            pl.len().alias("_n_days"),
            pl.col("_amount").sum().alias("_total"),
            pl.col("_amount").first().alias("_first_amount"),
        )
    )
    frequency = (pl.col("_n_days") - 1).cast(pl.Int64)
    out = per_customer.select(
        pl.col("_customer").alias(customer_col),
        frequency.alias("frequency"),
        ((pl.col("_last") - pl.col("_first")).dt.total_days() / freq_days).alias("recency"),
        ((pl.lit(observation_end) - pl.col("_first")).dt.total_days() / freq_days).alias("T"),
        *(
            [
                pl.when(frequency > 0)
                .then((pl.col("_total") - pl.col("_first_amount")) / frequency)
                .otherwise(0.0)
                .alias("monetary_value")
            ]
            if amount_col is not None
            else []
        ),
    )
    return out.sort(customer_col)


# ----------------------------------------------------------------------------------------------
# optimisation helper
# ----------------------------------------------------------------------------------------------


def _maximise(
    fun_and_grad: Any, theta0: FloatArray, names: tuple[str, ...], model: str, degenerate_hint: str
) -> tuple[FloatArray, float, int]:
    """Minimise a mean negative log-likelihood over log-parameters; raise unless truly converged."""
    bounds = [(-LOG_PARAM_BOUND, LOG_PARAM_BOUND)] * len(theta0)
    with np.errstate(all="ignore"):
        res = optimize.minimize(
            fun_and_grad,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20},
        )
        theta, n_iter = res.x, int(res.nit)
        f, g = fun_and_grad(theta)
        if not (np.isfinite(f) and np.max(np.abs(g)) < GRAD_TOL):
            # L-BFGS-B often stops on a line-search failure just short of the optimum: polish.
            polish = optimize.minimize(
                fun_and_grad, theta, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 1000}
            )
            theta, n_iter = polish.x, n_iter + int(polish.nit)
            f, g = fun_and_grad(theta)
    if not np.isfinite(f) or not np.isfinite(g).all():
        raise ModelFitError(f"{model}: log-likelihood is not finite at the optimiser's end point")
    values = {n: float(f"{np.exp(t):.6g}") for n, t in zip(names, theta, strict=True)}
    runaway = [n for n, t in zip(names, theta, strict=True) if abs(t) >= PLAUSIBLE_LOG_PARAM]
    if runaway:
        raise ModelFitError(
            f"{model}: no finite maximum-likelihood estimate, parameter(s) {runaway} ran off to a degenerate "
            f"limit ({values}); the data do not identify the model ({degenerate_hint})"
        )
    if np.max(np.abs(g)) >= GRAD_TOL:
        raise ModelFitError(
            f"{model}: optimiser did not converge after {n_iter} iterations "
            f"(max |gradient| = {np.max(np.abs(g)):.3g} >= {GRAD_TOL} at {values}; scipy says: {res.message})"
        )
    return theta, float(f), n_iter


# ----------------------------------------------------------------------------------------------
# BG/NBD
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BetaGeoParams:
    """Fitted BG/NBD parameters: ``lambda ~ Gamma(r, alpha)``, ``p ~ Beta(a, b)``.

    ``alpha`` is in the time unit of the data the model was fitted on (e.g. weeks).
    ``log_likelihood`` is the total (weighted) log-likelihood; ``n`` the (weighted) customer count.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    n: float = float("nan")

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InvalidInputError(f"BG/NBD parameter {name} must be positive and finite, got {v!r}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class _BetaGeoLikelihood:
    """Mean negative log-likelihood of BG/NBD and its gradient in (log r, log alpha, log a, log b)."""

    def __init__(self, x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray) -> None:
        self.ux, inv = np.unique(x, return_inverse=True)
        self.inv = inv.ravel()
        self.w, self.x, self.t_x, self.T = w, x, t_x, T
        self.n = float(w.sum())
        self.wx = np.bincount(self.inv, weights=w, minlength=len(self.ux))
        self.pos_u = self.ux > 0
        self.ux_b = np.where(self.pos_u, self.ux - 1.0, 0.0)  # x - 1, only used where x > 0

    def total_log_likelihood(self, theta: FloatArray) -> float:
        return -self(theta)[0] * self.n

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(theta)
        ux, inv, w = self.ux, self.inv, self.w
        # per distinct x
        c0 = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
        cA = special.betaln(a, b + ux)
        cB = np.where(self.pos_u, special.betaln(a + 1.0, b + self.ux_b), -np.inf)
        # per customer
        rx = r + self.x
        ln_T = np.log(alpha + self.T)
        ln_tx = np.log(alpha + self.t_x)
        A = cA[inv] - rx * ln_T
        B = cB[inv] - rx * ln_tx
        # log(e^A + e^B) and the share wA = e^A / (e^A + e^B), with a single exp (B = -inf when x = 0)
        d = A - B
        e = np.exp(-np.abs(d))
        lse = np.maximum(A, B) + np.log1p(e)
        wA = np.where(d >= 0, 1.0, e) / (1.0 + e)
        wB = 1.0 - wA
        ll = float(np.dot(self.wx, c0) + np.dot(w, lse))

        # gradient w.r.t. natural parameters
        wwA = w * wA
        wwB = w * wB
        SA = np.bincount(inv, weights=wwA, minlength=len(ux))
        SB = self.wx - SA
        d_r = float(
            np.dot(self.wx, special.digamma(r + ux) - special.digamma(r) + np.log(alpha))
            - np.dot(wwA, ln_T)
            - np.dot(wwB, ln_tx)
        )
        d_alpha = float(r / alpha * self.n - np.dot(w * rx, wA / (alpha + self.T) + wB / (alpha + self.t_x)))
        psi_abx = special.digamma(a + b + ux)
        psi_bx1 = np.where(self.pos_u, special.digamma(b + self.ux_b), 0.0)
        d_a = float(
            np.dot(SA, special.digamma(a) - psi_abx)
            + np.dot(SB, special.digamma(a + 1.0) - psi_abx)
            - self.n * (special.digamma(a) - special.digamma(a + b))
        )
        d_b = float(
            np.dot(SA, special.digamma(b + ux) - psi_abx)
            + np.dot(SB, psi_bx1 - psi_abx)
            - self.n * (special.digamma(b) - special.digamma(a + b))
        )
        grad = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
        return -ll / self.n, -grad / self.n


def _bgnbd_p_alive(p: BetaGeoParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    pos = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds_dead = np.log(p.a / (p.b + np.maximum(x, 1.0) - 1.0)) + (p.r + x) * (
            np.log(p.alpha + T) - np.log(p.alpha + t_x)
        )
    return np.where(pos, special.expit(-log_odds_dead), 1.0)


def _hyp2f1_series(
    A: float, B: float, C: FloatArray, z: FloatArray, max_terms: int = 200_000, rtol: float = 1e-15
) -> FloatArray:
    """2F1(A, B; C; z) for 0 <= z < 1 by direct summation, vectorised over (C, z).

    Fallback for the points where scipy's ``hyp2f1`` gives up (it returns NaN for large ``C`` with
    ``z > 0.9``, where its 1 - z transformation overflows ``Gamma(C)``). There the series converges
    fast because ``C`` is large. Points that do not converge within ``max_terms`` stay NaN.
    """
    total = np.ones_like(z)
    term = np.ones_like(z)
    idx = np.arange(z.size)
    Cc, zc = C.copy(), z.copy()
    done = np.zeros(z.size, dtype=bool)
    for k in range(max_terms):
        ratio = (A + k) * (B + k) / ((Cc + k) * (k + 1.0)) * zc
        term = term * ratio
        total[idx] += term
        # stop once the terms shrink geometrically and the tail bound is below rtol
        rho = np.abs((A + k + 1) * (B + k + 1) / ((Cc + k + 1) * (k + 2.0)) * zc)
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = np.abs(term) * rho / (1.0 - rho)
        conv = (term == 0) | ((rho < 1) & (tail <= rtol * np.abs(total[idx])))
        if conv.any():
            done[idx[conv]] = True
            keep = ~conv
            idx, term, Cc, zc = idx[keep], term[keep], Cc[keep], zc[keep]
            if idx.size == 0:
                break
    total[~done] = np.nan
    return total


def _bgnbd_alive_expectation(
    r: float, alpha: float, a: float, b: float, t: FloatArray, x: FloatArray, T: FloatArray
) -> FloatArray:
    """E[purchases in (T, T+t] | alive at T, x], the bracket of eq. (10) after Euler's transformation:

    ``(a+b+x-1)/(a-1) * [1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)]``, ``z = t / (alpha + T + t)``;
    see the module docstring.
    """
    c = a + b + x - 1.0
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        h = special.hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        broken = ~np.isfinite(h)
        if broken.any():
            h = np.array(h, dtype=np.float64, copy=True)
            h[broken] = _hyp2f1_series(a + b - 1.0 - r, a - 1.0, c[broken], z[broken])
        # 1 - (1-z)^(a-1) h, split so that small z keeps full precision
        log1mz = np.log1p(-z)
        bracket = -np.expm1((a - 1.0) * log1mz) + np.exp((a - 1.0) * log1mz) * (1.0 - h)
        return c / (a - 1.0) * bracket


def _bgnbd_expected_if_alive(p: BetaGeoParams, t: FloatArray, x: FloatArray, T: FloatArray) -> FloatArray:
    """E[Y(t) | alive at T, x], with the removable singularities of eq. (10) handled; never negative."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b

    def core(a_: float, b_: float) -> FloatArray:
        return _bgnbd_alive_expectation(r, alpha, a_, b_, t, x, T)

    # Removable singularities: a = 1 (0/0 in the prefactor) and a + b + x - 1 = 0 (2F1 pole with c = 0).
    # Average symmetric perturbations: the error is O(delta^2) and the cancellation error ~eps/delta.
    delta = 1e-4
    alive = 0.5 * (core(1.0 - delta, b) + core(1.0 + delta, b)) if abs(a - 1.0) < delta else core(a, b)
    near_pole = np.abs(a + b + x - 1.0) < delta
    if near_pole.any():
        shifted = 0.5 * (core(a, b - delta) + core(a, b + delta)) if b > delta else core(a, b + delta)
        alive = np.where(near_pole, shifted, alive)
    scale = np.maximum(t / alpha, 1.0) * (a + b + x)
    return _nonnegative("expected purchases", alive, scale)


def _bgnbd_conditional_expectation(
    p: BetaGeoParams, t: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Eq. (10): P(alive at T) x E[Y(t) | alive at T, x]."""
    return _bgnbd_expected_if_alive(p, t, x, T) * _bgnbd_p_alive(p, x, t_x, T)


class BetaGeoModel:
    """BG/NBD repeat-purchase model fitted by maximum likelihood.

    >>> model = BetaGeoModel()
    >>> params = model.fit(frequency, recency, T)          # doctest: +SKIP
    >>> model.expected_purchases(52, frequency, recency, T)  # doctest: +SKIP
    """

    def __init__(self, params: BetaGeoParams | None = None, *, min_customers: int = MIN_CUSTOMERS) -> None:
        self.params = params
        self.min_customers = min_customers
        self.n_iter: int | None = None

    @classmethod
    def from_params(cls, params: BetaGeoParams) -> BetaGeoModel:
        return cls(params)

    def _require_params(self) -> BetaGeoParams:
        if self.params is None:
            raise NotFittedError("BetaGeoModel has no parameters: call fit() or from_params() first")
        return self.params

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BetaGeoParams:
        """Maximum-likelihood fit. ``weights`` count identical customers (see :func:`compress_rfm`)."""
        x, t_x, TT = _validate_rfm(frequency, recency, T)
        w = _validate_weights(weights, len(x))
        keep = w > 0
        if not keep.all():
            x, t_x, TT, w = x[keep], t_x[keep], TT[keep], w[keep]
        n = float(w.sum())
        if n < self.min_customers:
            raise ModelFitError(f"BG/NBD: {n:g} customers, need at least {self.min_customers}")
        n_repeat = float(w[x > 0].sum())
        if n_repeat == 0:
            raise ModelFitError("BG/NBD: no customer made a repeat purchase; purchase rates are not identified")
        if float(np.dot(w, TT)) <= 0:
            raise ModelFitError("BG/NBD: every customer has T = 0 (no observation time)")
        nll = _BetaGeoLikelihood(x, t_x, TT, w)
        rate = float(np.dot(w, x) / np.dot(w, TT))  # crude purchase rate per time unit
        theta0 = np.log([1.0, 1.0 / max(rate, 1e-6), 1.0, 2.0])
        theta, f, n_iter = _maximise(
            nll,
            theta0,
            ("r", "alpha", "a", "b"),
            "BG/NBD",
            "r, alpha -> inf: purchase rates show no heterogeneity; a -> 0 or b -> inf: no sign of dropout",
        )
        r, alpha, a, b = (float(v) for v in np.exp(theta))
        self.n_iter = n_iter
        self.params = BetaGeoParams(r=r, alpha=alpha, a=a, b=b, log_likelihood=-f * n, n=n)
        return self.params

    def log_likelihood(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
    ) -> float:
        """Total log-likelihood of data under the current parameters (e.g. a holdout)."""
        p = self._require_params()
        x, t_x, TT = _validate_rfm(frequency, recency, T)
        w = _validate_weights(weights, len(x))
        nll = _BetaGeoLikelihood(x, t_x, TT, w)
        return nll.total_log_likelihood(np.log([p.r, p.alpha, p.a, p.b]))

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(still active at T | x, t_x, T) -- eq. (11) of the paper; 1 for customers with x = 0."""
        x, t_x, TT = _validate_rfm(frequency, recency, T, broadcast=True)
        return _bgnbd_p_alive(self._require_params(), x, t_x, TT)

    def expected_purchases(self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` time units -- eq. (10)."""
        tt = _as_float_array("t", t)
        if (tt < 0).any():
            raise InvalidInputError("t (the prediction horizon) must be non-negative")
        x, t_x, TT = _validate_rfm(frequency, recency, T, broadcast=True)
        tt, x, t_x, TT = np.broadcast_arrays(tt, x, t_x, TT)
        return _bgnbd_conditional_expectation(self._require_params(), tt, x, t_x, TT)

    def expected_purchases_new(self, t: ArrayLike) -> FloatArray:
        """E[X(t)]: expected repeat purchases of a new customer within ``t`` of the first -- eq. (9)."""
        tt = _as_float_array("t", t)
        if (tt < 0).any():
            raise InvalidInputError("t must be non-negative")
        zero = np.zeros_like(tt)
        return _bgnbd_conditional_expectation(self._require_params(), tt, zero, zero, zero)

    def probability_no_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(no purchase in the next ``t`` | x, t_x, T): dead, or alive and buying nothing.

        Alive at T, a customer's rate is Gamma(r + x, alpha + T) (dropout happens only at a purchase),
        so P(none in t | alive) = ((alpha + T) / (alpha + T + t))^(r + x).
        """
        p = self._require_params()
        tt = _as_float_array("t", t)
        x, t_x, TT = _validate_rfm(frequency, recency, T, broadcast=True)
        alive = _bgnbd_p_alive(p, x, t_x, TT)
        none_if_alive = np.exp((p.r + x) * (np.log(p.alpha + TT) - np.log(p.alpha + TT + tt)))
        return np.clip(1.0 - alive + alive * none_if_alive, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# The limits of BG/NBD: no dropout (NBD), and no heterogeneity either (Poisson)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NBDParams:
    """BG/NBD's limit without dropout (a -> 0): every customer stays, buying at ``lambda ~ Gamma(r, alpha)``.

    What BG/NBD degrades to when a company's data show no sign of dropout (its ``a``, ``b`` run off to
    a degenerate limit): the purchase counts are still modelled, every customer is "alive".
    """

    r: float
    alpha: float
    log_likelihood: float = float("nan")
    n: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PoissonParams:
    """The limit of NBD without heterogeneity (r, alpha -> inf): one purchase rate for everyone."""

    rate: float
    n: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class _NBDLikelihood:
    """Mean negative log-likelihood of the purchase times without dropout, in (log r, log alpha):
    ``Gamma(r + x) alpha^r / (Gamma(r) (alpha + T)^(r + x))`` per customer (BG/NBD's alive term)."""

    def __init__(self, x: FloatArray, T: FloatArray, w: FloatArray) -> None:
        self.x, self.T, self.w, self.n = x, T, w, float(w.sum())

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        r, alpha = np.exp(theta)
        x, T, w = self.x, self.T, self.w
        ln_aT = np.log(alpha + T)
        ll = float(np.dot(w, special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) - (r + x) * ln_aT))
        d_r = float(np.dot(w, special.digamma(r + x) - special.digamma(r) + np.log(alpha) - ln_aT))
        d_alpha = float(np.dot(w, r / alpha - (r + x) / (alpha + T)))
        grad = np.array([d_r * r, d_alpha * alpha])
        return -ll / self.n, -grad / self.n


class NBDModel:
    """Purchases without dropout: P(alive) = 1, E[Y(t) | x, T] = (r + x) / (alpha + T) * t."""

    def __init__(self, params: NBDParams | None = None) -> None:
        self.params = params

    def fit(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
    ) -> NBDParams:
        x, _, TT = _validate_rfm(frequency, recency, T)
        w = _validate_weights(weights, len(x))
        rate = float(np.dot(w, x) / max(np.dot(w, TT), 1e-12))
        theta, f, _ = _maximise(
            _NBDLikelihood(x, TT, w),
            np.log([1.0, 1.0 / max(rate, 1e-6)]),
            ("r", "alpha"),
            "NBD",
            "r, alpha -> inf: purchase rates show no heterogeneity",
        )
        r, alpha = (float(v) for v in np.exp(theta))
        self.params = NBDParams(r=r, alpha=alpha, log_likelihood=-f * float(w.sum()), n=float(w.sum()))
        return self.params

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        x, _, _ = _validate_rfm(frequency, recency, T, broadcast=True)
        return np.ones_like(x)

    def expected_purchases(self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        p = self.params
        x, _, TT = _validate_rfm(frequency, recency, T, broadcast=True)
        return (p.r + x) / (p.alpha + TT) * _as_float_array("t", t)

    def probability_no_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        p = self.params
        x, _, TT = _validate_rfm(frequency, recency, T, broadcast=True)
        tt = _as_float_array("t", t)
        return np.exp((p.r + x) * (np.log(p.alpha + TT) - np.log(p.alpha + TT + tt)))


class PoissonModel:
    """One purchase rate for every customer (no dropout, no heterogeneity): the last resort."""

    def __init__(self, params: PoissonParams | None = None) -> None:
        self.params = params

    def fit(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
    ) -> PoissonParams:
        x, _, TT = _validate_rfm(frequency, recency, T)
        w = _validate_weights(weights, len(x))
        exposure = float(np.dot(w, TT))
        if exposure <= 0:
            raise ModelFitError("Poisson: no observation time")
        self.params = PoissonParams(rate=float(np.dot(w, x)) / exposure, n=float(w.sum()))
        return self.params

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        x, _, _ = _validate_rfm(frequency, recency, T, broadcast=True)
        return np.ones_like(x)

    def expected_purchases(self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        x, _, _ = _validate_rfm(frequency, recency, T, broadcast=True)
        return np.full_like(x, self.params.rate) * _as_float_array("t", t)

    def probability_no_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        x, _, _ = _validate_rfm(frequency, recency, T, broadcast=True)
        return np.exp(-self.params.rate * _as_float_array("t", t)) * np.ones_like(x)


PurchaseParams = BetaGeoParams | NBDParams | PoissonParams


def purchase_model(params: PurchaseParams) -> BetaGeoModel | NBDModel | PoissonModel:
    """The model object for fitted purchase parameters (BG/NBD or one of its limits)."""
    if isinstance(params, BetaGeoParams):
        return BetaGeoModel.from_params(params)
    if isinstance(params, NBDParams):
        return NBDModel(params)
    return PoissonModel(params)


def fit_purchase_model(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> tuple[PurchaseParams, str]:
    """BG/NBD when the data identify it, else its limit: NBD (no dropout), else Poisson (one rate).

    Returns the parameters and a note: empty for BG/NBD, else why it fell back (for the model card
    and the Data health page). Never raises for data that merely fail to identify BG/NBD; a company
    with too few customers or no repeat purchase still raises :class:`ModelFitError`.
    """
    try:
        return BetaGeoModel().fit(frequency, recency, T, weights), ""
    except ModelFitError as exc:
        text = str(exc)
        if "customers, need" in text or "no customer made a repeat purchase" in text:
            raise
        reason = text
    try:
        params = NBDModel().fit(frequency, recency, T, weights)
        return params, f"BG/NBD not identified ({reason}); fell back to its no-dropout limit, NBD"
    except ModelFitError as exc:
        params = PoissonModel().fit(frequency, recency, T, weights)
        return params, (
            f"BG/NBD not identified ({reason}); NBD not identified either ({exc}); fell back to one purchase rate "
            "for every customer (Poisson)"
        )


# ----------------------------------------------------------------------------------------------
# Gamma-Gamma
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma spend parameters: ``z ~ Gamma(p, nu)``, ``nu ~ Gamma(q, gamma)``.

    ``n`` is the number of repeat customers used; ``log_likelihood`` includes the Jacobian terms of the
    density of the mean transaction value (Hardie's formulation, as in lifetimes).
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    n: float = float("nan")

    def __post_init__(self) -> None:
        for name in ("p", "q", "gamma"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InvalidInputError(f"Gamma-Gamma parameter {name} must be positive and finite, got {v!r}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class _GammaGammaLikelihood:
    """Mean negative log-likelihood of Gamma-Gamma and its gradient in (log p, log q, log gamma).

    The gamma/digamma terms depend on the customer only through x, so they are evaluated once per
    distinct x; only log(x zbar + gamma) is per customer.
    """

    def __init__(self, x: FloatArray, m: FloatArray, w: FloatArray) -> None:
        self.ux, inv = np.unique(x, return_inverse=True)
        self.inv = inv.ravel()
        self.w, self.x, self.xm = w, x, x * m
        self.n = float(w.sum())
        self.wx = np.bincount(self.inv, weights=w, minlength=len(self.ux))  # weight per distinct x
        wxm = w * x
        self.sum_wx = float(wxm.sum())
        self.sum_wx_logxm = float(np.dot(wxm, np.log(m) + np.log(x)))  # sum w x log(x m)
        self.sum_w_logm = float(np.dot(w, np.log(m)))

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        p, q, g = np.exp(theta)
        ux, w = self.ux, self.w
        pux = p * ux
        log_denom = np.log(self.xm + g)  # per customer
        wx_log_denom = float(np.dot(w * self.x, log_denom))
        w_log_denom = float(np.dot(w, log_denom))
        # sum_i w_i [gammaln(px+q) - gammaln(px) - gammaln(q) + q log g
        #            + (px-1) log m + px log x - (px+q) log(xm+g)]
        ll = (
            float(np.dot(self.wx, special.gammaln(pux + q) - special.gammaln(pux)))
            + self.n * (q * np.log(g) - special.gammaln(q))
            + p * self.sum_wx_logxm
            - self.sum_w_logm
            - p * wx_log_denom
            - q * w_log_denom
        )
        psi_pxq = special.digamma(pux + q)
        d_p = float(np.dot(self.wx * ux, psi_pxq - special.digamma(pux))) + self.sum_wx_logxm - wx_log_denom
        d_q = float(np.dot(self.wx, psi_pxq)) - self.n * (special.digamma(q) - np.log(g)) - w_log_denom
        d_g = self.n * q / g - float(np.dot(w, (p * self.x + q) / (self.xm + g)))
        grad = np.array([d_p * p, d_q * q, d_g * g])
        return -ll / self.n, -grad / self.n


def _validate_spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = _as_float_array("frequency", frequency)
    m = _as_float_array("monetary_value", monetary_value)
    try:
        x, m = np.broadcast_arrays(x, m)
    except ValueError as exc:
        raise InvalidInputError(f"frequency and monetary_value do not broadcast together: {exc}") from exc
    if (x < 0).any():
        raise InvalidInputError(f"frequency has {int((x < 0).sum())} negative value(s)")
    if (x != np.floor(x)).any():
        raise InvalidInputError("frequency must be whole numbers of repeat purchases")
    if (m < 0).any():
        raise InvalidInputError(f"monetary_value has {int((m < 0).sum())} negative value(s)")
    return x, m


class GammaGammaModel:
    """Gamma-Gamma model of the mean repeat-transaction value, fitted on customers with x > 0.

    Assumes spend per transaction is independent of purchase frequency (check the correlation
    between ``frequency`` and ``monetary_value`` of repeat buyers before relying on it).
    """

    def __init__(self, params: GammaGammaParams | None = None, *, min_customers: int = MIN_CUSTOMERS) -> None:
        self.params = params
        self.min_customers = min_customers
        self.n_iter: int | None = None

    @classmethod
    def from_params(cls, params: GammaGammaParams) -> GammaGammaModel:
        return cls(params)

    def _require_params(self) -> GammaGammaParams:
        if self.params is None:
            raise NotFittedError("GammaGammaModel has no parameters: call fit() or from_params() first")
        return self.params

    def fit(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> GammaGammaParams:
        """Maximum-likelihood fit on the repeat buyers (rows with frequency 0 are ignored)."""
        x, m = _validate_spend(frequency, monetary_value)
        if x.ndim != 1:
            raise InvalidInputError(f"frequency must be one-dimensional, got shape {x.shape}")
        w = _validate_weights(weights, len(x))
        use = (x > 0) & (w > 0)
        x, m, w = x[use], m[use], w[use]
        if x.size == 0:
            raise ModelFitError("Gamma-Gamma: no repeat buyers (frequency > 0) to fit spend on")
        n_zero = int((m <= 0).sum())
        if n_zero:
            raise InvalidInputError(
                f"Gamma-Gamma: {n_zero} repeat buyer(s) have monetary_value <= 0; spend must be positive"
            )
        n = float(w.sum())
        if n < self.min_customers:
            raise ModelFitError(f"Gamma-Gamma: {n:g} repeat buyers, need at least {self.min_customers}")
        if np.ptp(m) == 0:
            raise ModelFitError("Gamma-Gamma: every repeat buyer has the same monetary_value; no spread to fit")
        nll = _GammaGammaLikelihood(x, m, w)
        mean_m = float(np.dot(w, m) / n)
        theta0 = np.log([2.0, 3.0, mean_m])  # p gamma / (q - 1) = mean spend
        theta, f, n_iter = _maximise(
            nll,
            theta0,
            ("p", "q", "gamma"),
            "Gamma-Gamma",
            "q, gamma -> inf: customers' mean spends vary no more than chance; p -> inf: no spread within customers",
        )
        p, q, g = (float(v) for v in np.exp(theta))
        self.n_iter = n_iter
        self.params = GammaGammaParams(p=p, q=q, gamma=g, log_likelihood=-f * n, n=n)
        return self.params

    def conditional_expected_average_profit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """E[Z | x, zbar] = (q-1)/(px+q-1) * p gamma/(q-1) + px/(px+q-1) * zbar.

        A weighted mean of the population mean and the customer's own mean; customers with x = 0 get
        the population mean (which needs q > 1, else :class:`NumericalError`).
        """
        prm = self._require_params()
        x, m = _validate_spend(frequency, monetary_value)
        m = np.where(x > 0, m, 0.0)  # zbar is undefined without a repeat purchase
        if (x == 0).any() and prm.q <= 1:
            raise NumericalError(
                f"Gamma-Gamma q = {prm.q:.4g} <= 1: the expected spend of customers without "
                "repeat purchases is infinite"
            )
        px = prm.p * x
        denom = px + prm.q - 1.0
        if (denom <= 0).any():
            raise NumericalError("Gamma-Gamma: p*x + q - 1 <= 0, conditional expected spend is undefined")
        out = prm.p * (prm.gamma + x * m) / denom
        return _nonnegative("expected average profit", out, np.maximum(m, 1.0))


@dataclass(frozen=True)
class MeanSpendParams:
    """Gamma-Gamma's limits, for data that do not identify it.

    ``own_weight`` 0: q, gamma -> inf (customers' mean spends vary no more than chance): every
    customer's expected spend is the population mean. ``own_weight`` 1: p -> inf (no spread within a
    customer): a repeat buyer's expected spend is their own mean, others get the population mean.
    """

    mean: float
    own_weight: float = 0.0
    n: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class MeanSpendModel:
    def __init__(self, params: MeanSpendParams) -> None:
        self.params = params

    def conditional_expected_average_profit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        x, m = _validate_spend(frequency, monetary_value)
        own = (x > 0) & (self.params.own_weight > 0)
        return np.where(own, m, self.params.mean).astype(np.float64)


SpendParams = GammaGammaParams | MeanSpendParams


def spend_model(params: SpendParams) -> GammaGammaModel | MeanSpendModel:
    """The model object for fitted spend parameters (Gamma-Gamma or one of its limits)."""
    return GammaGammaModel.from_params(params) if isinstance(params, GammaGammaParams) else MeanSpendModel(params)


def fit_spend_model(
    frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
) -> tuple[SpendParams, str]:
    """Gamma-Gamma when the data identify it, else its limit (see :class:`MeanSpendParams`) and why.

    Too few repeat buyers still raises :class:`ModelFitError`.
    """
    try:
        return GammaGammaModel().fit(frequency, monetary_value, weights), ""
    except ModelFitError as exc:
        text = str(exc)
        if "need at least" in text or "no repeat buyers" in text:
            raise
        reason = text
    x, m = _validate_spend(frequency, monetary_value)
    w = _validate_weights(weights, len(x))
    use = (x > 0) & (w > 0)
    # The mean spend per repeat transaction over every repeat buyer (each weighted by their repeats).
    mean = float(np.dot(w[use] * x[use], m[use]) / np.dot(w[use], x[use]))
    own = 1.0 if "['p']" in reason else 0.0
    what = "each repeat buyer's own mean spend" if own else "one mean spend for every customer"
    return MeanSpendParams(mean=mean, own_weight=own, n=float(w[use].sum())), (
        f"Gamma-Gamma not identified ({reason}); fell back to its limit: {what} ({mean:,.2f})"
    )


# ----------------------------------------------------------------------------------------------
# CLV
# ----------------------------------------------------------------------------------------------


def customer_lifetime_value(
    bgnbd: BetaGeoModel | BetaGeoParams,
    gamma_gamma: GammaGammaModel | GammaGammaParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    horizon_days: float = 365.0,
    freq_days: float = 1.0,
    discount_rate_annual: float = 0.0,
    periods_per_year: int = 12,
) -> FloatArray:
    """Expected value of each customer's purchases over the next ``horizon_days``.

    ``freq_days`` is the time unit (in days) that recency/T and the BG/NBD fit use. Without
    discounting this is ``E[Y(horizon) | x, t_x, T] * E[Z | x, zbar]``. With a discount rate the
    horizon is cut into ``periods_per_year`` periods a year (monthly by default, like lifetimes);
    the purchases expected in each period are discounted to today from the period's end:
    ``sum_k (E[Y(t_k)] - E[Y(t_{k-1})]) * spend / (1 + d)^(t_k / year)``.
    """
    bg = bgnbd if isinstance(bgnbd, BetaGeoModel) else BetaGeoModel.from_params(bgnbd)
    gg = gamma_gamma if isinstance(gamma_gamma, GammaGammaModel) else GammaGammaModel.from_params(gamma_gamma)
    if not (math.isfinite(horizon_days) and horizon_days >= 0):
        raise InvalidInputError(f"horizon_days must be a non-negative number, got {horizon_days!r}")
    if not (math.isfinite(freq_days) and freq_days > 0):
        raise InvalidInputError(f"freq_days must be positive, got {freq_days!r}")
    if not (math.isfinite(discount_rate_annual) and discount_rate_annual > -1):
        raise InvalidInputError(f"discount_rate_annual must be > -1, got {discount_rate_annual!r}")
    if periods_per_year < 1:
        raise InvalidInputError("periods_per_year must be at least 1")
    x, t_x, TT = _validate_rfm(frequency, recency, T, broadcast=True)
    spend = gg.conditional_expected_average_profit(x, monetary_value)

    prm = bg._require_params()
    p_alive = _bgnbd_p_alive(prm, x, t_x, TT)
    if discount_rate_annual == 0.0:
        purchases = _bgnbd_expected_if_alive(prm, np.full(x.shape, horizon_days / freq_days), x, TT)
    else:
        period_days = DAYS_PER_YEAR / periods_per_year
        n_periods = max(1, math.ceil(horizon_days / period_days - 1e-9))
        ends = np.minimum(np.arange(1, n_periods + 1) * period_days, horizon_days)
        purchases = np.zeros(x.shape)
        previous = np.zeros(x.shape)
        for end in ends:
            current = _bgnbd_expected_if_alive(prm, np.full(x.shape, end / freq_days), x, TT)
            factor = (1.0 + discount_rate_annual) ** (-end / DAYS_PER_YEAR)
            purchases += np.maximum(current - previous, 0.0) * factor
            previous = current
    return _nonnegative("CLV", purchases * p_alive * spend, spend)


# ----------------------------------------------------------------------------------------------
# simulation (tests, benchmarks, sanity checks)
# ----------------------------------------------------------------------------------------------


def simulate_bgnbd(
    params: BetaGeoParams, T: ArrayLike, seed: int | np.random.Generator | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Draw (x, t_x, T) from the BG/NBD generative process, vectorised.

    Per customer: ``lambda ~ Gamma(r, scale=1/alpha)``, ``p ~ Beta(a, b)``, a geometric number
    ``K >= 1`` of repeat purchases before dropout (dropout happens right after a repeat purchase),
    ``N ~ Poisson(lambda T)`` purchase opportunities in (0, T]; ``x = min(N, K)`` and ``t_x`` is the
    x-th of N uniform arrival times, i.e. ``T * Beta(x, N - x + 1)``.
    """
    rng = np.random.default_rng(seed)
    TT = _as_float_array("T", T)
    if (TT < 0).any():
        raise InvalidInputError("T must be non-negative")
    n = TT.shape[0]
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    k = rng.geometric(np.clip(p, 1e-12, 1.0))
    N = rng.poisson(lam * TT)
    x = np.minimum(N, k)
    pos = x > 0
    t_x = np.zeros(n)
    t_x[pos] = TT[pos] * rng.beta(x[pos], N[pos] - x[pos] + 1)
    return x.astype(np.float64), t_x, TT


def simulate_gamma_gamma(
    params: GammaGammaParams, frequency: ArrayLike, seed: int | np.random.Generator | None = None
) -> FloatArray:
    """Mean repeat-transaction value zbar for each customer (0 where frequency is 0)."""
    rng = np.random.default_rng(seed)
    x = _as_float_array("frequency", frequency)
    nu = rng.gamma(params.q, 1.0 / params.gamma, x.shape[0])
    out = np.zeros(x.shape[0])
    pos = x > 0
    out[pos] = rng.gamma(params.p * x[pos], 1.0 / (x[pos] * nu[pos]))
    return out
