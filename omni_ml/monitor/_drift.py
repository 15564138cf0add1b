"""Distances between binned distributions, expected performance from calibrated scores, and the thresholds.

* :func:`psi` -- population stability index, ``sum((a - e) * ln(a / e))`` over bins, with both shares
  floored at :data:`EPSILON` so an empty bin does not make it infinite (Yurdakul 2018, "Statistical
  properties of population stability index"). Rules of thumb: < 0.1 stable, 0.1-0.25 a shift, > 0.25 drift.
* :func:`js_distance` -- Jensen-Shannon distance (base 2, in [0, 1]) of the same bins: bounded and
  symmetric, used for every feature type (numeric bins, categorical levels, null as its own bin).
* :func:`expected_auc` -- the AUC a calibrated score is expected to reach when each customer's label is
  a coin with their propensity (confidence-based performance estimation, CBPE, as in NannyML):
  ``sum p_i (1 - p_j) [s_i > s_j] / sum_{i != j} p_i (1 - p_j)``, ties counted half.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from omni_ml.exceptions import ConfigError

__all__ = ["EPSILON", "MonitorConfig", "expected_auc", "expected_auc_band", "js_distance", "psi", "psi_noise"]

EPSILON = 1e-4


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """Thresholds of the health verdict of a scoring run (build from YAML with ``omni_ml.config.from_yaml``).

    Parameters
    ----------
    psi_warn, psi_bad
        Population stability index of one feature (bins of its training distribution, nulls as a bin)
        from which it is reported as shifted (``warn``) or drifting (``bad``). ``psi_bad`` is above the
        usual 0.25 because monthly counts of a few thousand customers pass 0.25 by noise alone.
    natural_factor
        A feature drifts (or shifts) only when its index is also at least ``natural_factor`` times the
        largest index it had between consecutive training cutoffs (its own month-to-month movement:
        tenure that grows); likewise for its null share.
    psi_alpha
        A feature drifts (or shifts) only when its index is also above its noise at the sizes compared:
        the ``1 - psi_alpha`` quantile of ``(1/n_reference + 1/n_current) * chi2(bins - 1)``, the index of two
        samples of one distribution (Yurdakul 2018). It matters for indices over few rows (the amounts of
        the month's buyers on one channel: a few hundred rows).
    outbound_factor
        The same factor for aggregates of the contacts table (our own outbound messages): they follow the
        campaign calendar, which moves more from month to month than a few training cutoffs show. Such a
        feature is reported as shifted at most (the verdict ``warn``): a broken contacts feed shows in the
        input volumes of contacts sent.
    null_share_bad
        Absolute change of a feature's share of nulls that makes the run ``bad`` (a feed that stopped).
    score_psi_warn, score_psi_bad
        Index of the occupancy of the ten fixed propensity deciles vs training.
    input_z_bad
        Input data (the rows of the ``horizon`` days before the scoring date vs the training windows):
        the |z| statistic of a volume per customer-day or of the order value from which it drifts; for a
        volume also at least ``natural_factor`` times its largest |z| between training windows (season,
        campaign calendar).
    volume_change_min
        ... and the absolute log ratio a volume must reach as well (1.39 = ln 4: four times higher or
        lower; also at least ``natural_factor`` times its largest log ratio between training windows).
    order_value_change_min
        ... and the absolute change of the mean ln(amount) of purchases (0.1: about 10%; also at least
        ``natural_factor`` times its largest change between training windows).
    channel_share_warn
        Absolute change of the share of customers contacted on a channel vs the previous run of the
        same model that is reported (``warn``).
    sample_size
        Customers whose features are profiled per run (a deterministic hash sample; every customer
        when there are fewer). Scores, deciles, channels and expected figures always use everyone.
    top_features
        Drifting features named in the printed summary.
    enabled
        ``False`` skips monitoring (no ``.monitor.parquet``, no monitoring run).

    Examples
    --------
    >>> MonitorConfig(psi_bad=0.5).psi_warn
    0.1
    """

    psi_warn: float = 0.1
    psi_bad: float = 0.35
    natural_factor: float = 2.0
    psi_alpha: float = 0.001
    outbound_factor: float = 8.0
    null_share_bad: float = 0.1
    score_psi_warn: float = 0.1
    score_psi_bad: float = 0.25
    input_z_bad: float = 4.0
    volume_change_min: float = 1.39
    order_value_change_min: float = 0.1
    channel_share_warn: float = 0.1
    sample_size: int = 20_000
    top_features: int = 5
    enabled: bool = True

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "psi_warn",
            "psi_bad",
            "natural_factor",
            "outbound_factor",
            "null_share_bad",
            "score_psi_warn",
            "score_psi_bad",
            "channel_share_warn",
            "input_z_bad",
            "volume_change_min",
            "order_value_change_min",
            "psi_alpha",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                problems.append(f"{name} must be a number > 0 (got {value!r})")
        if not problems and not self.psi_alpha < 1:
            problems.append(f"psi_alpha must be < 1 (got {self.psi_alpha!r})")
        if not problems and self.psi_warn > self.psi_bad:
            problems.append(f"psi_warn ({self.psi_warn}) must not exceed psi_bad ({self.psi_bad})")
        if not problems and self.score_psi_warn > self.score_psi_bad:
            problems.append(
                f"score_psi_warn ({self.score_psi_warn}) must not exceed score_psi_bad ({self.score_psi_bad})"
            )
        for name, low in (("sample_size", 100), ("top_features", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                problems.append(f"{name} must be an integer >= {low} (got {value!r})")
        if problems:
            msg = "MonitorConfig: " + "; ".join(problems) + "."
            raise ConfigError(msg)


def psi(reference: Any, current: Any) -> float:
    """Population stability index of two share vectors over the same bins.

    Examples
    --------
    >>> round(psi([0.5, 0.5], [0.5, 0.5]), 6)
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 3)
    0.879
    """
    e = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_noise(bins: int, inv_n: float, alpha: float) -> float:
    """The PSI two samples of one distribution pass with probability ``alpha``: chi-square approximation.

    Between two samples of sizes ``n1``, ``n2`` from one distribution over ``bins`` bins, the index is
    about ``(1/n1 + 1/n2) * chi2(bins - 1)`` (Yurdakul 2018); ``inv_n`` is ``1/n1 + 1/n2``. Like every
    chi-square approximation it needs some 5 expected rows per bin in each sample: with fewer, bins empty in
    one sample (clipped to ``EPSILON`` by :func:`psi`) make the index exceed the floor more often than ``alpha``.

    Examples
    --------
    >>> round(psi_noise(10, 1 / 200 + 1 / 200, 0.001), 3)
    0.279
    """
    from scipy.stats import chi2

    return float(chi2.ppf(1.0 - alpha, max(int(bins) - 1, 1))) * float(inv_n)


def js_distance(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors over the same bins, in [0, 1].

    Examples
    --------
    >>> js_distance([1.0, 0.0], [0.0, 1.0])
    1.0
    """
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(current, dtype=np.float64)
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def expected_auc(score: Any, p: Any) -> float:
    """Expected ROC AUC of ``score`` when each label is Bernoulli(``p``) (CBPE); NaN without both classes.

    Examples
    --------
    >>> round(expected_auc([0.1, 0.9], [0.1, 0.9]), 4)
    0.9878
    >>> expected_auc([0.5, 0.5], [0.5, 0.5])
    0.5
    """
    s = np.asarray(score, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    if s.size < 2:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s, q = s[order], q[order]
    neg = 1.0 - q
    _, start = np.unique(s, return_index=True)
    pos_group = np.add.reduceat(q, start)
    neg_group = np.add.reduceat(neg, start)
    self_pairs = np.add.reduceat(q * neg, start)
    neg_below = np.cumsum(neg_group) - neg_group
    numerator = float(np.sum(pos_group * neg_below) + 0.5 * np.sum(pos_group * neg_group - self_pairs))
    denominator = float(q.sum() * neg.sum() - np.sum(q * neg))
    return numerator / denominator if denominator > 0 else float("nan")


def expected_auc_band(
    score: Any, p: Any, *, draws: int = 200, max_rows: int = 20_000, seed: int = 0
) -> tuple[float, float]:
    """2.5% and 97.5% quantiles of the AUC over labels drawn from ``p`` (a subsample of ``max_rows``).

    The spread a realised AUC has around :func:`expected_auc` from label noise alone (at the
    subsample's size: wider than for the whole population when that is larger).
    """
    s = np.asarray(score, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if s.size > max_rows:
        pick = np.sort(rng.choice(s.size, size=max_rows, replace=False))
        s, q = s[pick], q[pick]
    if s.size < 2:
        return float("nan"), float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    aucs = []
    for _ in range(draws):
        y = rng.random(q.size) < q
        n1 = int(y.sum())
        n0 = y.size - n1
        if n1 and n0:
            aucs.append((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    if not aucs:
        return float("nan"), float("nan")
    lo, hi = np.quantile(aucs, (0.025, 0.975))
    return float(lo), float(hi)
