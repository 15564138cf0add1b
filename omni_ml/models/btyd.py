"""Buy-till-you-die baselines: BG/NBD, Pareto/NBD and Gamma-Gamma, in closed form, fitted by maximum likelihood.

The classic customer-base models summarise a customer by three numbers as of a date: ``x`` repeat
purchases (purchase days after the first one), ``t_x`` the time from the first to the last purchase and
``T`` the time from the first purchase to the date (:func:`rfm_summary`). They answer:

* :class:`BetaGeoModel` (BG/NBD, Fader, Hardie & Lee 2005a): while alive a customer buys as a Poisson
  process with rate ``lambda ~ Gamma(r, alpha)``; after each purchase they drop out with probability
  ``p ~ Beta(a, b)``.
* :class:`ParetoNBDModel` (Schmittlein, Morrison & Colombo 1987; Fader & Hardie 2005): the same purchase
  process, with an exponential lifetime ``mu ~ Gamma(s, beta)`` that can end at any moment.
* :class:`GammaGammaModel` (Fader, Hardie & Lee 2005b; Fader & Hardie 2013): a customer's order values are
  Gamma(p, nu) with ``nu ~ Gamma(q, gamma)``; independent of the purchase process.

Each gives the expected number of purchases in the next ``t`` (``expected_purchases``), the probability
of being alive (``p_alive``) and the probability of at least one purchase in the next ``t``
(``p_any_purchase``, the propensity); :func:`btyd_customer_value` multiplies the expected purchases with the
Gamma-Gamma order value (the usual BG/NBD + Gamma-Gamma customer lifetime value, undiscounted).

Why written here and not taken from a library: ``lifetimes`` (the classic Python implementation) has had
no release since 2020 and ``pymc-marketing`` (maintained) needs Python >= 3.12 while omni_ml runs on 3.11.
The expressions follow the papers; ``tests/models/test_btyd.py`` checks them against the published CDNOW values.

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005a). "Counting your customers" the easy way: an alternative
to the Pareto/NBD model. Marketing Science 24(2), 275-284.
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005b). RFM and CLV: using iso-value curves for customer base
analysis. Journal of Marketing Research 42(4), 415-430.
Fader, P. S. & Hardie, B. G. S. (2005). A note on deriving the Pareto/NBD model and related expressions.
Fader, P. S. & Hardie, B. G. S. (2013). The Gamma-Gamma model of monetary value.
Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting your customers: who are they and what
will they do next? Management Science 33(1), 1-24.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize, special

from omni_ml._time import before
from omni_ml.data import Histories
from omni_ml.exceptions import DataInsufficientError, ModelNotFoundError, SchemaError
from omni_ml.features import MONEY_SCALE, money_units

__all__ = [
    "BetaGeoModel",
    "GammaGammaModel",
    "ParetoNBDModel",
    "btyd_customer_value",
    "rfm_summary",
]

_QUADRATURE_NODES = 32


def rfm_summary(hist: Histories, as_of: str | dt.date | dt.datetime, *, unit_days: float = 7.0) -> pl.DataFrame:
    """Per customer with a purchase before ``as_of``: ``x, t_x, T`` (in units of ``unit_days``) and order value.

    Purchases are counted per day (several orders on one day are one purchase occasion, as in the
    papers). ``x`` = purchase days after the first; ``t_x`` = first to last purchase day; ``T`` = first
    purchase day to ``as_of``; ``mean_value`` = mean revenue per repeat purchase day (0 when ``x = 0``; the
    first purchase is left out, as Fader, Hardie & Lee 2005b do); ``first_value`` = revenue of the first day.
    Only rows strictly before ``as_of`` are read.

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> from omni_ml.data import Histories
    >>> ev = pl.DataFrame({
    ...     "customer_id": ["a", "a", "a", "b"],
    ...     "timestamp": [dt.datetime(2025, 1, d, tzinfo=dt.UTC) for d in (1, 8, 8, 15)],
    ...     "event_type": ["purchase"] * 4, "amount": [10.0, 20.0, 5.0, 7.0]})
    >>> s = rfm_summary(Histories(events=ev.lazy()), "2025-01-29", unit_days=7)
    >>> s.select("customer_id", "x", "t_x", "T", "mean_value").rows()
    [('a', 1, 1.0, 4.0, 25.0), ('b', 0, 0.0, 2.0, 0.0)]
    """
    from omni_ml.training import to_utc

    cutoff = to_utc(as_of)
    unit = dt.timedelta(days=unit_days)
    days = (
        hist.events.filter((pl.col("event_type") == "purchase") & before(cutoff) & pl.col("customer_id").is_not_null())
        .group_by("customer_id", pl.col("timestamp").dt.truncate("1d").alias("day"))
        # exact integer sums (1/10,000 units, as the feature engine): the same numbers in any chunk of customers
        .agg(money_units(pl.col("amount").fill_null(0.0)).sum().alias("value"))
        .sort("customer_id", "day")
    )
    out = (
        days.group_by("customer_id")
        .agg(
            (pl.len() - 1).cast(pl.Int64).alias("x"),
            pl.col("day").min().alias("first"),
            pl.col("day").max().alias("last"),
            # by day explicitly: a group's row order is not guaranteed by every polars engine
            pl.col("value").sort_by("day").first().alias("first_value"),
            (pl.col("value").sum() - pl.col("value").sort_by("day").first()).alias("repeat_value"),
        )
        .with_columns(pl.col("first_value", "repeat_value").cast(pl.Float64) / MONEY_SCALE)
        .with_columns(
            ((pl.col("last") - pl.col("first")) / unit).alias("t_x"),
            ((pl.lit(cutoff) - pl.col("first")) / unit).alias("T"),
            pl.when(pl.col("x") > 0).then(pl.col("repeat_value") / pl.col("x")).otherwise(0.0).alias("mean_value"),
        )
        .select("customer_id", "x", "t_x", "T", "mean_value", "first_value")
        .sort("customer_id")
        .collect()
    )
    return out.with_columns(pl.col("customer_id").cast(pl.String))


def _arrays(x: Any, t_x: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, txs, Ts = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, t_x, T))
    xs, txs, Ts = np.broadcast_arrays(xs, txs, Ts)
    bad = (xs < 0) | (txs < 0) | (txs > Ts + 1e-9) | ~np.isfinite(xs + txs + Ts)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = (
            f"x, t_x, T: {int(bad.sum()):,} of {xs.size:,} customers are impossible (e.g. x={xs[i]}, t_x={txs[i]}, "
            f"T={Ts[i]}). Hint: x >= 0 repeat purchases, 0 <= t_x <= T (see rfm_summary)."
        )
        raise SchemaError(msg)
    return xs, txs, Ts


def _fit_log_params(
    neg_ll: Callable[[np.ndarray], float], start: np.ndarray, *, model: str, n_customers: int
) -> np.ndarray:
    """Minimise ``neg_ll`` over log-parameters (Nelder-Mead, then L-BFGS-B polish); positive parameters."""
    if n_customers < 10:
        msg = f"{model}: {n_customers} customers; at least 10 are needed to fit four parameters."
        raise DataInsufficientError(msg)
    best = optimize.minimize(neg_ll, start, method="L-BFGS-B")
    polish = optimize.minimize(
        neg_ll, best.x, method="Nelder-Mead", options={"maxiter": 800, "xatol": 1e-6, "fatol": 1e-8}
    )
    if polish.fun < best.fun:
        best = polish
    return np.asarray(np.exp(best.x), dtype=np.float64)


class _CountModel:
    """Shared estimator plumbing of the two purchase-count models."""

    _names: tuple[str, ...] = ()

    def _check(self) -> None:
        if not hasattr(self, "params_"):
            msg = f"{type(self).__name__} is not fitted. Hint: call .fit(x, t_x, T) first."
            raise ModelNotFoundError(msg)

    def log_likelihood(self, x: Any, t_x: Any, T: Any, params: Any = None) -> np.ndarray:
        """Per-customer log-likelihood at ``params`` (default: the fitted parameters)."""
        xs, txs, Ts = _arrays(x, t_x, T)
        if params is None:
            self._check()
            params = [self.params_[k] for k in self._names]
        return self._ll(np.asarray(params, dtype=np.float64), xs, txs, Ts)

    def _ll(self, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, x: Any, t_x: Any, T: Any) -> Any:
        """Maximum-likelihood parameters from per-customer ``x, t_x, T``; returns ``self``."""
        xs, txs, Ts = _arrays(x, t_x, T)
        # customers with the same (x, t_x, T) share a likelihood term: evaluate each once, weighted
        rows, counts = np.unique(np.column_stack([xs, txs, Ts]), axis=0, return_counts=True)
        ux, utx, uT = rows[:, 0], rows[:, 1], rows[:, 2]

        def neg_ll(log_params: np.ndarray) -> float:
            value = -float(np.sum(counts * self._ll(np.exp(log_params), ux, utx, uT)))
            return value if np.isfinite(value) else 1e300

        params = _fit_log_params(neg_ll, np.zeros(len(self._names)), model=type(self).__name__, n_customers=xs.size)
        self.params_ = dict(zip(self._names, (float(p) for p in params), strict=True))
        self.log_likelihood_ = -neg_ll(np.log(params))
        return self


class BetaGeoModel(_CountModel):
    """BG/NBD (Fader, Hardie & Lee 2005a): Poisson purchases while alive, dropout after a purchase.

    Assumptions: while alive a customer buys with rate ``lambda ~ Gamma(r, alpha)`` (across customers);
    after each purchase they become inactive with probability ``p ~ Beta(a, b)``; ``lambda`` and ``p``
    are independent. Time is in whatever unit ``x, t_x, T`` use (weeks in the paper).

    Attributes
    ----------
    params_ : dict
        ``r, alpha, a, b``.
    log_likelihood_ : float
        Total log-likelihood at ``params_``.

    Examples
    --------
    >>> m = BetaGeoModel()
    >>> m.params_ = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # CDNOW (Fader et al. 2005a)
    >>> round(float(m.expected_purchases(39, 2, 30.43, 38.86)[0]), 3)
    1.226
    """

    _names = ("r", "alpha", "a", "b")

    def _ll(self, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
        return np.asarray(a1 + a2 + np.logaddexp(a3, a4))

    def _alive_odds_log(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        p = self.params_
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(
                x > 0,
                np.log(p["a"]) - np.log(p["b"] + x - 1) + (p["r"] + x) * np.log((p["alpha"] + T) / (p["alpha"] + t_x)),
                -np.inf,
            )

    def p_alive(self, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """P(still active at ``T`` | ``x, t_x, T``); 1 for a customer without repeat purchases (the model's rule)."""
        self._check()
        xs, txs, Ts = _arrays(x, t_x, T)
        return np.asarray(special.expit(-self._alive_odds_log(xs, txs, Ts)))

    def expected_purchases(self, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """E[purchases in ``(T, T + t]`` | ``x, t_x, T``] (equation 10 of Fader, Hardie & Lee 2005a)."""
        self._check()
        xs, txs, Ts = _arrays(x, t_x, T)
        p = self.params_
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        hyp = special.hyp2f1(r + xs, b + xs, a + b + xs - 1, t / (alpha + Ts + t))
        head = (a + b + xs - 1) / (a - 1) * (1 - ((alpha + Ts) / (alpha + Ts + t)) ** (r + xs) * hyp)
        return np.asarray(head * self.p_alive(xs, txs, Ts))

    def expected_purchases_new(self, t: Any) -> np.ndarray:
        """E[purchases in ``(0, t]``] of a new customer (equation 9 of Fader, Hardie & Lee 2005a)."""
        self._check()
        p = self.params_
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
        hyp = special.hyp2f1(r, b, a + b - 1, ts / (alpha + ts))
        return np.asarray((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + ts)) ** r * hyp))

    def p_any_purchase(self, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """P(at least one purchase in ``(T, T + t]`` | ``x, t_x, T``).

        An inactive customer never buys; an active one (posterior ``lambda ~ Gamma(r + x, alpha + T)``, no
        dropout without a purchase) buys in ``t`` unless the first waiting time exceeds ``t``.
        """
        self._check()
        xs, txs, Ts = _arrays(x, t_x, T)
        p = self.params_
        quiet = ((p["alpha"] + Ts) / (p["alpha"] + Ts + t)) ** (p["r"] + xs)
        return np.asarray(self.p_alive(xs, txs, Ts) * (1 - quiet))


def _log_a0(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Log A_0 of the Pareto/NBD likelihood (Fader & Hardie 2005, eq. 19), overflow-safe.

    ``2F1(c - 1, b; c; z) = (1 - z)^(1 - b) 2F1(1, c - b; c; z)`` (Euler's transformation) keeps the series
    bounded by ``1 / (1 - z)`` for any number of purchases.
    """
    r, alpha, s, beta = params
    if alpha >= beta:
        big, b_arg = alpha, s + 1.0
    else:
        big, b_arg = beta, r + x
    rsx = r + s + x
    gap = abs(alpha - beta)

    def log_term(t: np.ndarray) -> np.ndarray:
        z = gap / (big + t)
        log_hyp = (1 - b_arg) * np.log1p(-z) + np.log(special.hyp2f1(1.0, rsx + 1 - b_arg, rsx + 1, z))
        return np.asarray(log_hyp - rsx * np.log(big + t))

    first, second = log_term(t_x), log_term(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = first + np.log(-np.expm1(np.minimum(second - first, 0.0)))
    # equal t_x and T (a purchase at the very end): A_0 = 0
    return np.where(second >= first, -np.inf, diff)


class ParetoNBDModel(_CountModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchases, exponential lifetime.

    Assumptions: while alive a customer buys with rate ``lambda ~ Gamma(r, alpha)``; their lifetime is
    exponential with rate ``mu ~ Gamma(s, beta)``; ``lambda`` and ``mu`` are independent. The
    likelihood and P(alive) follow Fader & Hardie (2005). ``p_any_purchase`` integrates over the
    posterior of ``(lambda, mu)`` given alive by Gauss-Laguerre quadrature.

    Attributes
    ----------
    params_ : dict
        ``r, alpha, s, beta``.
    log_likelihood_ : float
        Total log-likelihood at ``params_``.

    Examples
    --------
    >>> m = ParetoNBDModel()
    >>> m.params_ = {"r": 0.5534, "alpha": 10.5802, "s": 0.6061, "beta": 11.6562}  # CDNOW, BTYD walkthrough
    >>> round(float(m.p_alive(26, 30.86, 31.0)[0]), 4)
    0.9979
    """

    _names = ("r", "alpha", "s", "beta")

    def _ll(self, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = params
        head = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        quiet = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        died = np.log(s) - np.log(r + s + x) + _log_a0(params, x, t_x, T)
        return np.asarray(head + np.logaddexp(quiet, died))

    def p_alive(self, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """P(still alive at ``T`` | ``x, t_x, T``) (Fader & Hardie 2005, eq. 18)."""
        self._check()
        xs, txs, Ts = _arrays(x, t_x, T)
        p = self.params_
        params = np.array([p["r"], p["alpha"], p["s"], p["beta"]])
        log_odds = (
            np.log(p["s"])
            - np.log(p["r"] + p["s"] + xs)
            + (p["r"] + xs) * np.log(p["alpha"] + Ts)
            + p["s"] * np.log(p["beta"] + Ts)
            + _log_a0(params, xs, txs, Ts)
        )
        return np.asarray(special.expit(-log_odds))

    def expected_purchases(self, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """E[purchases in ``(T, T + t]`` | ``x, t_x, T``] (Fader & Hardie 2005, eq. 22; needs ``s != 1``)."""
        self._check()
        xs, txs, Ts = _arrays(x, t_x, T)
        p = self.params_
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        per_alive = (r + xs) * (beta + Ts) / ((alpha + Ts) * (s - 1)) * (1 - ((beta + Ts) / (beta + Ts + t)) ** (s - 1))
        return np.asarray(per_alive * self.p_alive(xs, txs, Ts))

    def p_any_purchase(self, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
        """P(at least one purchase in ``(T, T + t]`` | ``x, t_x, T``).

        Alive at ``T`` with rates ``(lambda, mu)``, the next event is a purchase before death and within
        ``t`` with probability ``lambda / (lambda + mu) * (1 - exp(-(lambda + mu) t))``; the rates'
        posterior given alive is ``Gamma(r + x, alpha + T) x Gamma(s, beta + T)``.
        """
        self._check()
        xs, txs, Ts = _arrays(x, t_x, T)
        p = self.params_
        v_nodes, v_weights = special.roots_genlaguerre(_QUADRATURE_NODES, p["s"] - 1)
        v_weights = v_weights / v_weights.sum()
        out = np.empty(xs.size)
        for value in np.unique(xs):
            rows = np.flatnonzero(xs == value)
            u_nodes, u_weights = special.roots_genlaguerre(_QUADRATURE_NODES, p["r"] + value - 1)
            u_weights = u_weights / u_weights.sum()
            lam = u_nodes[None, :, None] / (p["alpha"] + Ts[rows])[:, None, None]
            mu = v_nodes[None, None, :] / (p["beta"] + Ts[rows])[:, None, None]
            total = lam + mu
            inner = lam / total * -np.expm1(-total * t)
            out[rows] = np.einsum("nij,i,j->n", inner, u_weights, v_weights)
        return np.asarray(out * self.p_alive(xs, txs, Ts))


class GammaGammaModel:
    """Gamma-Gamma model of the mean order value (Fader, Hardie & Lee 2005b; Fader & Hardie 2013).

    Assumptions: a customer's order values are i.i.d. ``Gamma(p, nu)``; ``nu ~ Gamma(q, gamma)`` across
    customers; order values are independent of the purchase process. Fitted on customers with at least
    one repeat purchase (``x`` and their mean repeat order value ``m``).

    Attributes
    ----------
    params_ : dict
        ``p, q, gamma``.

    Examples
    --------
    >>> m = GammaGammaModel()
    >>> m.params_ = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # CDNOW (Fader, Hardie & Lee 2005b)
    >>> [round(float(v), 2) for v in m.expected_order_value([2, 1, 7], [22.35, 11.77, 73.74])]
    [24.66, 18.92, 71.47]
    """

    def fit(self, x: Any, mean_value: Any) -> GammaGammaModel:
        """Maximum-likelihood ``p, q, gamma`` from customers with ``x >= 1`` and ``mean_value > 0``; ``self``."""
        xs = np.asarray(x, dtype=np.float64)
        ms = np.asarray(mean_value, dtype=np.float64)
        keep = (xs >= 1) & (ms > 0) & np.isfinite(ms)
        xs, ms = xs[keep], ms[keep]

        def neg_ll(log_params: np.ndarray) -> float:
            p, q, gamma = np.exp(log_params)
            ll = (
                special.gammaln(p * xs + q)
                - special.gammaln(p * xs)
                - special.gammaln(q)
                + q * np.log(gamma)
                + (p * xs - 1) * np.log(ms)
                + p * xs * np.log(xs)
                - (p * xs + q) * np.log(gamma + ms * xs)
            )
            value = -float(np.sum(ll))
            return value if np.isfinite(value) else 1e300

        start = np.log([1.0, 2.0, max(float(np.mean(ms)) if ms.size else 1.0, 1e-6)])
        params = _fit_log_params(neg_ll, start, model="GammaGammaModel", n_customers=xs.size)
        self.params_ = dict(zip(("p", "q", "gamma"), (float(v) for v in params), strict=True))
        self.log_likelihood_ = -neg_ll(np.log(params))
        return self

    def expected_order_value(self, x: Any, mean_value: Any) -> np.ndarray:
        """E[order value | ``x`` repeat orders of mean ``mean_value``]: a credibility-weighted mean.

        ``(q - 1) / (p x + q - 1) * population mean + p x / (p x + q - 1) * mean_value``; the population
        mean ``p gamma / (q - 1)`` for ``x = 0`` (needs ``q > 1``).
        """
        if not hasattr(self, "params_"):
            msg = "GammaGammaModel is not fitted. Hint: call .fit(x, mean_value) first."
            raise ModelNotFoundError(msg)
        p, q, gamma = self.params_["p"], self.params_["q"], self.params_["gamma"]
        xs = np.asarray(x, dtype=np.float64)
        ms = np.where(xs > 0, np.asarray(mean_value, dtype=np.float64), 0.0)
        return np.asarray((gamma + ms * xs) * p / (p * xs + q - 1))


def btyd_customer_value(
    purchases: BetaGeoModel | ParetoNBDModel,
    order_value: GammaGammaModel,
    summary: pl.DataFrame,
    horizon: float,
) -> pl.DataFrame:
    """Expected revenue over the next ``horizon`` (``summary``'s time unit): expected purchases x order value.

    The BG/NBD (or Pareto/NBD) + Gamma-Gamma customer lifetime value, undiscounted.

    Parameters
    ----------
    purchases, order_value
        Fitted count model and Gamma-Gamma model.
    summary
        :func:`rfm_summary` output (``customer_id, x, t_x, T, mean_value``).
    horizon
        Length of the future window in the summary's unit (52 weeks = 12 months with ``unit_days=7``).

    Returns
    -------
    polars.DataFrame
        ``customer_id, expected_purchases, expected_order_value, customer_value``.
    """
    missing = [c for c in ("customer_id", "x", "t_x", "T", "mean_value") if c not in summary.columns]
    if missing:
        msg = f"summary: missing column(s) {missing}; found {summary.columns}. Hint: use rfm_summary(hist, as_of)."
        raise SchemaError(msg)
    n = purchases.expected_purchases(horizon, summary["x"], summary["t_x"], summary["T"])
    m = order_value.expected_order_value(summary["x"], summary["mean_value"])
    return pl.DataFrame(
        {
            "customer_id": summary["customer_id"],
            "expected_purchases": n,
            "expected_order_value": m,
            "customer_value": n * m,
        }
    )
