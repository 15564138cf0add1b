"""Metrics of probabilistic binary predictions: ranking, probability quality, calibration, lift.

Pure numpy in, floats and polars tables out. Ties in the scores are handled the way a random
tie-break would in expectation (ROC-AUC counts a tied pair as one half; lift tables spread the
positives of a tied group evenly across the group).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from omni_ml.exceptions import DataInsufficientError, SchemaError

__all__ = [
    "brier",
    "calibration_table",
    "expected_calibration_error",
    "lift_table",
    "log_loss",
    "pr_auc",
    "roc_auc",
    "top_decile_lift",
]

Binning = Literal["quantile", "uniform"]
_EPS = 1e-15


def check_scores(y: np.ndarray, p: np.ndarray, *, where: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validate labels (0/1) and probabilities ([0, 1], finite) of equal length."""
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        msg = f"{where}: {y.size:,} labels but {p.size:,} scores; they must match."
        raise SchemaError(msg)
    bad_y = ~np.isin(y, [0, 1])
    if bad_y.any():
        msg = f"{where}: {int(bad_y.sum()):,} labels are not 0/1 (e.g. {y[bad_y][0].tolist()!r})."
        raise SchemaError(msg)
    bad_p = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad_p.any():
        msg = (
            f"{where}: {int(bad_p.sum()):,} of {p.size:,} scores are not probabilities in [0, 1] "
            f"(e.g. {p[bad_p][0].tolist()!r}). Hint: pass predict_proba(X)[:, 1], not raw log-odds."
        )
        raise SchemaError(msg)
    return y.astype(np.int8), p


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U; ties count one half); NaN with a single class.

    Examples
    --------
    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(y)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation)."""
    if not np.any(y == 1):
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood, probabilities clipped to ``[1e-15, 1 - 1e-15]``."""
    q = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probabilities (Brier 1950)."""
    return float(np.mean((p - y) ** 2))


def _bins(p: np.ndarray, n_bins: int, strategy: Binning) -> np.ndarray:
    if n_bins < 1:
        msg = f"n_bins={n_bins}: at least one bin is needed."
        raise SchemaError(msg)
    if strategy == "uniform":
        return np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    # Equal-mass bins by rank; tied scores always share a bin (the bin of their first rank).
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    first = np.searchsorted(sorted_p, sorted_p, side="left")
    bins_sorted = (first * n_bins) // p.size
    out = np.empty(p.size, dtype=np.int64)
    out[order] = bins_sorted
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10, strategy: Binning = "quantile") -> pl.DataFrame:
    """Reliability diagram data: per bin the mean prediction, observed rate and a 95% Wilson interval.

    Returns
    -------
    polars.DataFrame
        ``bin, n, p_mean, observed, lower, upper`` (empty bins are omitted).
    """
    b = _bins(p, n_bins, strategy)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    keep = count > 0
    p_sum = np.bincount(b, weights=p, minlength=n_bins)
    y_sum = np.bincount(b, weights=y.astype(np.float64), minlength=n_bins)
    n = count[keep]
    rate = y_sum[keep] / n
    z = 1.959963984540054
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return pl.DataFrame(
        {
            "bin": np.flatnonzero(keep).astype(np.int64),
            "n": n.astype(np.int64),
            "p_mean": p_sum[keep] / n,
            "observed": rate,
            "lower": np.clip(np.minimum(centre - half, rate), 0, 1),
            "upper": np.clip(np.maximum(centre + half, rate), 0, 1),
        }
    )


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10, strategy: Binning = "quantile") -> float:
    """Expected calibration error: the row-weighted mean of ``|observed rate - mean prediction|`` over bins.

    Binning (Naeini, Cooper & Hauskrecht 2015): ``"quantile"`` (default) makes ``n_bins`` equal-mass
    bins by the rank of the prediction, so every bin holds about ``n / n_bins`` rows even when most
    probabilities are small; ``"uniform"`` uses equal-width bins on [0, 1] (Guo et al. 2017).

    Examples
    --------
    >>> y = np.array([0, 0, 1, 1]); p = np.array([0.0, 0.0, 1.0, 1.0])
    >>> expected_calibration_error(y, p, n_bins=2)
    0.0
    """
    table = calibration_table(y, p, n_bins, strategy)
    gap = np.abs(table["observed"].to_numpy() - table["p_mean"].to_numpy())
    n = table["n"].to_numpy()
    return float((gap * n).sum() / n.sum())


def lift_table(y: np.ndarray, p: np.ndarray, n_groups: int = 10) -> pl.DataFrame:
    """Gains and lift by score group (decile 1 = highest scores).

    Rows are sorted by descending score and cut into ``n_groups`` groups of (nearly) equal size.
    Positives within a group of tied scores are spread evenly over it, so the table equals the
    expectation under a random tie-break and does not depend on input order.

    Returns
    -------
    polars.DataFrame
        ``decile, n, positives, rate, p_mean, lift, cum_share, gains, cum_lift``: ``gains`` is the
        share of all positives captured down to this group, ``lift`` the group rate over the base rate.
    """
    if y.size < n_groups:
        msg = f"lift_table: {y.size} rows cannot fill {n_groups} groups."
        raise DataInsufficientError(msg)
    order = np.lexsort((np.arange(p.size), -p))
    ps = p[order]
    ys = y[order].astype(np.float64)
    # mean label within each run of tied scores
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    run_id = np.cumsum(np.r_[True, ps[1:] != ps[:-1]]) - 1
    run_mean = np.add.reduceat(ys, starts) / np.diff(np.r_[starts, ps.size])
    ys = run_mean[run_id]
    group = (np.arange(p.size) * n_groups) // p.size
    n = np.bincount(group, minlength=n_groups).astype(np.float64)
    pos = np.bincount(group, weights=ys, minlength=n_groups)
    p_mean = np.bincount(group, weights=ps, minlength=n_groups) / n
    base = ys.mean()
    rate = pos / n
    total_pos = pos.sum()
    gains = np.cumsum(pos) / total_pos if total_pos > 0 else np.full(n_groups, np.nan)
    cum_rate = np.cumsum(pos) / np.cumsum(n)
    return pl.DataFrame(
        {
            "decile": np.arange(1, n_groups + 1, dtype=np.int64),
            "n": n.astype(np.int64),
            "positives": pos,
            "rate": rate,
            "p_mean": p_mean,
            "lift": rate / base if base > 0 else np.full(n_groups, np.nan),
            "cum_share": np.cumsum(n) / n.sum(),
            "gains": gains,
            "cum_lift": cum_rate / base if base > 0 else np.full(n_groups, np.nan),
        }
    )


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Purchase rate among the top 10% of scores divided by the overall rate.

    Examples
    --------
    >>> y = np.r_[np.ones(10), np.zeros(90)]; p = np.linspace(1, 0, 100)
    >>> top_decile_lift(y, p)
    10.0
    """
    return float(lift_table(y, p, 10)["lift"][0])
