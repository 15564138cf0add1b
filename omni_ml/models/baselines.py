"""Baselines for purchase propensity, with the same API as :class:`~omni_ml.models.PropensityModel`.

Both fit on the older cutoffs and calibrate on the latest ones (held-out time), so that their
probabilities and rankings can be compared with the main model on the same out-of-time data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from omni_ml.exceptions import SchemaError
from omni_ml.models._common import (
    Calibration,
    as_matrix,
    binary_target,
    check_choice,
    check_classes,
    check_enough_rows,
    estimator_tags,
    fit_calibrator,
    record_features,
    time_split,
)

if TYPE_CHECKING:
    from omni_ml.training import TrainingSet

__all__ = ["LogisticBaseline", "RecencyFrequencyBaseline"]

#: Patterns that find the recency and frequency features when they are not named explicitly.
RECENCY_PATTERN = r"^(days_since_last_purchase|purchase_recency_days|recency_days)$"
FREQUENCY_PATTERN = r"^(n_purchases_365d|purchases_365d|purchase_count_365d|frequency)$"


class _TimeCalibrated(ClassifierMixin, BaseEstimator):
    """Shared fit skeleton: score model on older cutoffs, calibration map on the latest ones."""

    calibration: Calibration
    n_calibration_cutoffs: int

    def _fit_scorer(self, matrix: np.ndarray, y: np.ndarray, names: list[str]) -> None:
        raise NotImplementedError

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X: Any, y: Any, *, cutoff: Any = None) -> Any:
        """Fit the score on the older cutoffs and the calibration map on the latest ``n_calibration_cutoffs``.

        With ``cutoff=None`` or a single distinct cutoff there is no held-out time: the score is
        fitted on all rows and the calibration map on the same rows (documented fallback).
        """
        name = type(self).__name__
        check_choice("calibration", self.calibration, ("isotonic", "sigmoid", None), model=name)
        matrix, names = as_matrix(X, model=name, min_rows=1)
        labels, classes = binary_target(y, matrix.shape[0], model=name)
        check_classes(labels, part="training data", model=name, classes=classes)
        if cutoff is not None:
            check_enough_rows(labels, model=name)
        split = time_split(cutoff, matrix.shape[0], n_calibration=self.n_calibration_cutoffs, n_early_stopping=0)
        calibration_rows = split.train if split.calibration is None else split.calibration
        check_classes(labels[split.train], part="training part (oldest cutoffs)", model=name, classes=classes)
        check_classes(labels[calibration_rows], part="calibration part (latest cutoffs)", model=name, classes=classes)
        record_features(self, X, names)
        self.classes_ = classes
        self._fit_scorer(matrix[split.train], labels[split.train], names)
        score = self._score(matrix[calibration_rows])
        self.calibrator_ = fit_calibrator(score, labels[calibration_rows], self.calibration)
        self.split_ = split.cutoffs
        return self

    def fit_training_set(self, ts: TrainingSet) -> Any:
        """Fit on a :class:`~omni_ml.training.TrainingSet` and keep its ``feature_set``."""
        self.fit(ts.X, ts.y, cutoff=ts.cutoff)
        self.feature_set_ = ts.feature_set
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of no purchase and purchase, shape ``(n, 2)``."""
        check_is_fitted(self)
        matrix, _ = as_matrix(X, expected=self.feature_names_, model=type(self).__name__)
        score = self._score(matrix)
        p = score if self.calibrator_ is None else np.asarray(self.calibrator_.predict(score), dtype=np.float64)
        p = np.clip(p, 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """``classes_[1]`` (purchase) where the calibrated probability is above 0.5, else ``classes_[0]``."""
        check_is_fitted(self)
        return np.asarray(self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(np.intp)])

    def __sklearn_tags__(self) -> Any:
        """Binary targets only; NaN features allowed (imputed, or their own bin); dense input only."""
        return estimator_tags(super().__sklearn_tags__())


def _find(names: list[str], given: str | None, pattern: str, what: str) -> int:
    if given is not None:
        if given not in names:
            import difflib

            close = difflib.get_close_matches(given, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            msg = (
                f"RecencyFrequencyBaseline: {what} feature {given!r} is not among the {len(names)} feature(s) "
                f"(e.g. {names[:3]}).{hint}"
            )
            raise SchemaError(msg)
        return names.index(given)
    for i, n in enumerate(names):
        if re.search(pattern, n):
            return i
    msg = (
        f"RecencyFrequencyBaseline: no {what} feature matches {pattern!r} among {len(names)} features "
        f"(e.g. {names[:3]}). Hint: pass {what}='<column name>'."
    )
    raise SchemaError(msg)


class RecencyFrequencyBaseline(_TimeCalibrated):
    """Recency x frequency cell rates: the classic RFM heuristic, calibrated on held-out time.

    Customers are put in a grid of ``n_bins`` recency bins x ``n_bins`` frequency bins (quantile
    edges from the training cutoffs; customers who never bought form their own recency bin). The
    score of a cell is its purchase rate on the training cutoffs, shrunk towards the overall rate
    with ``prior_strength`` pseudo-rows (a Beta prior). An isotonic (or Platt) map fitted on the
    latest cutoffs turns the score into a calibrated probability.

    Assumptions: who buys soon depends on the last purchase and the number of purchases only
    (the two statistics behind BG/NBD and Pareto/NBD), and that dependence is stable over time.

    Parameters
    ----------
    recency, frequency
        Feature names of days since the last purchase and the number of purchases in a long
        window; ``None`` finds them by :data:`RECENCY_PATTERN` / :data:`FREQUENCY_PATTERN`.
    n_bins
        Quantile bins per dimension.
    prior_strength
        Pseudo-rows pulling each cell rate towards the overall training rate.
    calibration, n_calibration_cutoffs
        As in :class:`~omni_ml.models.PropensityModel`.

    References
    ----------
    Hughes, A. M. (1994). Strategic Database Marketing (RFM cells). Fader, P. S., Hardie, B. G. S. &
    Lee, K. L. (2005). RFM and CLV: using iso-value curves for customer base analysis. JMR 42(4).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> rec = rng.exponential(60, 2000); freq = rng.poisson(3, 2000)
    >>> y = (rng.random(2000) < 0.6 * np.exp(-rec / 40)).astype(int)
    >>> X = pl.DataFrame({"days_since_last_purchase": rec, "n_purchases_365d": freq})
    >>> cutoff = np.repeat(np.arange(4), 500)
    >>> RecencyFrequencyBaseline().fit(X, y, cutoff=cutoff).predict_proba(X[:1]).shape
    (1, 2)
    """

    def __init__(
        self,
        *,
        recency: str | None = None,
        frequency: str | None = None,
        n_bins: int = 8,
        prior_strength: float = 20.0,
        calibration: Calibration = "isotonic",
        n_calibration_cutoffs: int = 1,
    ) -> None:
        self.recency = recency
        self.frequency = frequency
        self.n_bins = n_bins
        self.prior_strength = prior_strength
        self.calibration = calibration
        self.n_calibration_cutoffs = n_calibration_cutoffs

    def _cells(self, matrix: np.ndarray) -> np.ndarray:
        rec = matrix[:, self.recency_index_]
        freq = matrix[:, self.frequency_index_]
        r_bin = np.where(np.isnan(rec), self.n_recency_bins_, np.searchsorted(self.recency_edges_, rec, side="right"))
        f_bin = np.searchsorted(self.frequency_edges_, np.nan_to_num(freq, nan=0.0), side="right")
        return np.asarray(r_bin * (len(self.frequency_edges_) + 1) + f_bin, dtype=np.intp)

    def _fit_scorer(self, matrix: np.ndarray, y: np.ndarray, names: list[str]) -> None:
        self.recency_index_ = _find(names, self.recency, RECENCY_PATTERN, "recency")
        self.frequency_index_ = _find(names, self.frequency, FREQUENCY_PATTERN, "frequency")
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        rec = matrix[:, self.recency_index_]
        rec = rec[~np.isnan(rec)]
        self.recency_edges_ = np.unique(np.quantile(rec, qs)) if rec.size else np.array([])
        self.n_recency_bins_ = len(self.recency_edges_) + 1
        freq = np.nan_to_num(matrix[:, self.frequency_index_], nan=0.0)
        self.frequency_edges_ = np.unique(np.quantile(freq, qs))
        cells = self._cells(matrix)
        n_cells = (self.n_recency_bins_ + 1) * (len(self.frequency_edges_) + 1)
        count = np.bincount(cells, minlength=n_cells).astype(np.float64)
        positives = np.bincount(cells, weights=y.astype(np.float64), minlength=n_cells)
        base = float(y.mean())
        self.cell_rate_ = (positives + self.prior_strength * base) / (count + self.prior_strength)

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.cell_rate_[self._cells(matrix)], dtype=np.float64)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    # Referenced by LogisticBaseline pipelines pickled before the in-place version: kept so they load.
    return _signed_log1p_in_place(np.array(x, dtype=np.float64))


def _signed_log1p_in_place(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)`` written over ``x``.

    Only for the pipeline below, where ``x`` is the imputer's output (always a new array): a
    copy per step would hold the feature matrix several times over (786k x 176 features: 1.1 GB
    each).
    """
    negative = x < 0
    np.abs(x, out=x)
    np.log1p(x, out=x)
    np.negative(x, out=x, where=negative)
    return x


class LogisticBaseline(_TimeCalibrated):
    """L2-regularised logistic regression on the same features, calibrated on held-out time.

    A scikit-learn ``Pipeline``: median imputation with missing-value indicators, optional signed
    ``log1p`` of every feature (counts and amounts are heavy-tailed), standardisation, then
    ``LogisticRegression``. Assumes the log-odds of a purchase is linear in the (transformed)
    features; interactions and thresholds are left to the boosted model.

    Parameters
    ----------
    C
        Inverse L2 regularisation strength.
    log_transform
        Apply ``sign(x) * log1p(|x|)`` before scaling.
    max_iter
        lbfgs iterations.
    calibration, n_calibration_cutoffs
        As in :class:`~omni_ml.models.PropensityModel`.

    References
    ----------
    Cox, D. R. (1958). The regression analysis of binary sequences. JRSS B 20(2).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(800, 2)); y = (X[:, 0] + rng.normal(size=800) > 0).astype(int)
    >>> LogisticBaseline().fit(X, y, cutoff=np.repeat([1, 2], 400)).predict_proba(X).shape
    (800, 2)
    """

    def __init__(
        self,
        *,
        C: float = 1.0,  # noqa: N803 - scikit-learn's name
        log_transform: bool = True,
        max_iter: int = 2000,
        calibration: Calibration = "isotonic",
        n_calibration_cutoffs: int = 1,
    ) -> None:
        self.C = C
        self.log_transform = log_transform
        self.max_iter = max_iter
        self.calibration = calibration
        self.n_calibration_cutoffs = n_calibration_cutoffs

    def _fit_scorer(self, matrix: np.ndarray, y: np.ndarray, names: list[str]) -> None:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        steps: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
        ]
        if self.log_transform:
            steps.append(("log1p", FunctionTransformer(_signed_log1p_in_place)))
        # The imputer copies the input; the steps after it work in place on that copy.
        steps += [
            ("scale", StandardScaler(copy=False)),
            ("logistic", LogisticRegression(C=self.C, max_iter=self.max_iter)),
        ]
        self.pipeline_ = Pipeline(steps).fit(matrix, y)
        self.n_iter_ = int(np.max(self.pipeline_[-1].n_iter_))

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.pipeline_.predict_proba(matrix)[:, 1], dtype=np.float64)
