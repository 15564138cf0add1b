"""Shared plumbing of the propensity models: input checks, the out-of-time split, calibrators.

Private to :mod:`omni_ml.models`; the public estimators document the behaviour.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from omni_ml.exceptions import DataInsufficientError, SchemaError

Calibration = Literal["beta", "centred_isotonic", "isotonic", "sigmoid"] | None

#: Calibrated probabilities stay inside ``[P_EDGE, 1 - P_EDGE]``: never exactly 0 or 1.
P_EDGE = 1e-15
#: Log-odds bound of the centred isotonic map (p within about 1e-13 of 0 or 1 at most).
_MAX_LOG_ODDS = 30.0

#: Fewest rows, and fewest rows of the rarer class, any model in omni_ml.models is fitted on.
MIN_ROWS = 50
MIN_PER_CLASS = 5
_MAX_LISTED = 5


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (" ..." if len(names) > _MAX_LISTED else "")


def as_matrix(
    X: Any,
    *,
    expected: Sequence[str] | None = None,
    where: str = "X",
    model: str = "the model",
    min_rows: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Turn a numeric polars/pandas frame or a 2-D array into a float64 matrix (nulls -> NaN) and column names.

    A String, Categorical, Enum, temporal or nested column raises :class:`SchemaError` *before* anything
    reaches LightGBM (a polars String column aborts the process inside LightGBM, see ECOSYSTEM.md).
    Frames are matched by name: with ``expected`` (the names seen at fit time) their columns are selected
    and reordered. Arrays (anything else, checked by scikit-learn's ``check_array``: no sparse matrices,
    no complex numbers, NaN allowed) are taken by position and named ``x0, x1, ...``. ``min_rows`` is the
    fewest rows accepted (1 when fitting).
    """
    if isinstance(X, pl.LazyFrame):
        msg = f"{where}: got a polars LazyFrame. Hint: call .collect() first."
        raise SchemaError(msg)
    if isinstance(X, pl.DataFrame):
        frame = X
    elif _is_named_pandas(X):
        frame = pl.from_pandas(X)
    else:
        arr = _checked_array(X, where=where, min_rows=min_rows)
        if expected is not None and arr.shape[1] != len(expected):
            msg = (
                f"{where} has {arr.shape[1]} features, but {model} is expecting {len(expected)} features as input. "
                "Hint: pass the columns the model was fitted on, in the same order (or a DataFrame with their names)."
            )
            raise SchemaError(msg)
        names = list(expected) if expected is not None else [f"x{i}" for i in range(arr.shape[1])]
        return arr, names
    bad = [f"{c} ({dtype})" for c, dtype in frame.schema.items() if not (dtype.is_numeric() or dtype == pl.Boolean)]
    if bad:
        example = bad[0].split(" (")[0]
        value = frame.get_column(example).drop_nulls().head(1).to_list()
        msg = (
            f"{where}: {len(bad)} non-numeric column(s) {_listed(bad)} in {frame.height:,} rows "
            f"(e.g. {example}={value[0] if value else None!r}); models need Int/Float/Boolean features only. "
            "Hint: drop id/text columns (customer_id, cutoff) or encode categories as integer codes."
        )
        raise SchemaError(msg)
    if expected is not None:
        missing = [c for c in expected if c not in frame.columns]
        if missing:
            msg = (
                f"{where}: {len(missing)} feature column(s) seen at fit time are missing: {_listed(missing)}. "
                "Hint: build the features with the model's feature_set (build_features(..., feature_set=...))."
            )
            raise SchemaError(msg)
        frame = frame.select(list(expected))
    if frame.width == 0:
        msg = f"{where}: no feature columns ({frame.height:,} rows): found 0 feature(s) (shape={frame.shape})."
        raise SchemaError(msg)
    if frame.height < min_rows:
        msg = (
            f"{where}: found {frame.height} sample(s) (shape={frame.shape}) while a minimum of {min_rows} is required."
        )
        raise SchemaError(msg)
    matrix = frame.cast(pl.Float64).to_numpy()
    return np.ascontiguousarray(matrix, dtype=np.float64), list(frame.columns)


def _is_named_pandas(X: Any) -> bool:
    """A pandas DataFrame whose column names are all strings (others are arrays to scikit-learn)."""
    return (
        type(X).__module__.startswith("pandas") and hasattr(X, "columns") and all(isinstance(c, str) for c in X.columns)
    )


def _checked_array(X: Any, *, where: str, min_rows: int) -> np.ndarray:
    """``X`` as a C-contiguous float64 2-D array, through scikit-learn's ``check_array`` (NaN and inf kept)."""
    from scipy import sparse
    from sklearn.utils.validation import check_array

    if sparse.issparse(X):
        msg = (
            f"{where}: sparse input ({type(X).__name__}, shape {X.shape}) is not supported. "
            "Hint: convert it with .toarray() (the models need dense features)."
        )
        raise SchemaError(msg)
    try:
        arr = check_array(
            X,
            dtype=np.float64,
            order="C",
            ensure_all_finite=False,
            ensure_min_samples=min_rows,
            input_name=where,
        )
    except ValueError as err:
        msg = f"{where}: {err} Hint: pass a 2-D numeric table of features (polars/pandas DataFrame or array)."
        raise SchemaError(msg) from err
    return np.asarray(arr, dtype=np.float64)


def binary_target(y: Any, n_rows: int, *, model: str, where: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 codes of a binary target and its two classes (``classes[1]`` is the positive class).

    Any two labels are accepted (0/1, booleans, ``"no"``/``"yes"``); they are sorted as by ``np.unique``.
    A column vector is flattened with scikit-learn's ``DataConversionWarning``; ``None``, NaN, continuous
    or multiclass targets raise :class:`SchemaError` with scikit-learn's wording, a single class raises
    :class:`DataInsufficientError` (see :func:`check_classes`).
    """
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import column_or_1d

    if y is None:
        msg = (
            f"{model}.fit requires y to be passed, but the target y is None. "
            "Hint: pass the 0/1 labels (e.g. TrainingSet.y)."
        )
        raise SchemaError(msg)
    if isinstance(y, pl.Series):
        y = y.to_numpy()
    elif isinstance(y, pl.DataFrame):
        y = y.to_pandas()
    try:
        arr = column_or_1d(y, warn=True)
    except ValueError as err:
        msg = f"{where}: {err} Hint: pass one label per row (a 1-d array or Series)."
        raise SchemaError(msg) from err
    if arr.shape[0] != n_rows:
        msg = f"{where}: {arr.shape[0]:,} labels for {n_rows:,} feature rows; they must match."
        raise SchemaError(msg)
    if arr.dtype.kind in "fc":
        bad = ~np.isfinite(arr)
        if bad.any():
            msg = (
                f"{where}: Input y contains NaN or infinity: {int(bad.sum()):,} of {n_rows:,} labels "
                f"(e.g. {arr[bad][0]!r}). Hint: labels are 0/1; drop or label the rows without an outcome."
            )
            raise SchemaError(msg)
    try:
        kind = type_of_target(arr, input_name=where, raise_unknown=True)
    except ValueError as err:
        msg = f"{where}: {err} Hint: labels are 0/1 (purchase within the horizon or not)."
        raise SchemaError(msg) from err
    if kind not in ("binary", "multiclass"):
        example = arr[0].tolist() if arr.size else None
        msg = (
            f"{where}: Unknown label type: {kind} (e.g. {example!r}); {model} needs two classes. "
            "Hint: labels are 0/1 (purchase within the horizon or not)."
        )
        raise SchemaError(msg)
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.size > 2:
        msg = (
            f"{where}: Only binary classification is supported. The type of the target is {kind}: "
            f"{classes.size:,} distinct labels (e.g. {', '.join(repr(c) for c in classes.tolist()[:3])}). "
            "Hint: labels are 0/1 (purchase within the horizon or not)."
        )
        raise SchemaError(msg)
    return codes.astype(np.int8).reshape(-1), classes


def check_binary_y(y: Any, n_rows: int, *, where: str = "y") -> np.ndarray:
    """Labels as an int8 0/1 vector of length ``n_rows`` (SchemaError otherwise)."""
    if isinstance(y, pl.Series | pl.DataFrame):
        y = y.to_numpy()
    arr = np.asarray(y).reshape(-1) if np.ndim(y) > 1 and np.shape(y)[-1] == 1 else np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        msg = f"{where}: {arr.shape[0] if arr.ndim else 0} labels for {n_rows:,} feature rows; they must match."
        raise SchemaError(msg)
    if arr.dtype == np.bool_:
        return arr.astype(np.int8)
    finite = np.isfinite(arr.astype(np.float64)) if np.issubdtype(arr.dtype, np.number) else np.zeros(n_rows, bool)
    ok = finite & np.isin(arr, [0, 1]) if np.issubdtype(arr.dtype, np.number) else finite
    if not ok.all():
        bad = np.flatnonzero(~ok)
        example = arr[bad[0]].tolist()
        msg = f"{where}: {bad.size:,} of {n_rows:,} labels are not 0/1 (e.g. {example!r}). Hint: labels are 0/1."
        raise SchemaError(msg)
    return arr.astype(np.int8)


def check_classes(y: np.ndarray, *, part: str, model: str, classes: np.ndarray | None = None) -> None:
    """Raise DataInsufficientError unless the 0/1 codes ``y`` hold both classes.

    ``classes`` are the labels behind the codes (default 0 and 1), named in the message.
    """
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        labels = [0, 1] if classes is None else classes.tolist()
        value = labels[0] if len(labels) == 1 else labels[1 if n_pos else 0]
        only = {0: "0 (no purchase)", 1: "1 (purchase)"}.get(value, repr(value)) if value in (0, 1) else repr(value)
        msg = (
            f"{model}.fit: the {part} has a single class: all {y.size:,} labels are {only}, one class only. "
            "Hint: use more cutoffs or customers, or a longer horizon, so both outcomes occur in every period."
        )
        raise DataInsufficientError(msg)


def check_enough_rows(y: np.ndarray, *, model: str) -> None:
    """Raise DataInsufficientError below MIN_ROWS rows or MIN_PER_CLASS rows of a class.

    Applied when fitting with cutoffs (the out-of-time path that early-stops and calibrates on held-out
    time); a plain ``fit(X, y)`` only needs both classes.
    """
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if y.size < MIN_ROWS or min(n_pos, n_neg) < MIN_PER_CLASS:
        msg = (
            f"{model}.fit: {y.size:,} rows ({n_pos:,} positive, {n_neg:,} negative) are too few; need at least "
            f"{MIN_ROWS} rows and {MIN_PER_CLASS} of each class to split by time and calibrate. "
            "Hint: add cutoffs or customers."
        )
        raise DataInsufficientError(msg)


def record_features(estimator: Any, X: Any, names: list[str]) -> None:
    """Set the fitted feature attributes the scikit-learn way.

    ``feature_names_`` (booster order; ``x0, x1, ...`` for arrays) and ``n_features_in_`` always;
    ``feature_names_in_`` only when ``X`` was a frame with column names (removed otherwise, as on refit).
    """
    estimator.feature_names_ = names
    estimator.n_features_in_ = len(names)
    if isinstance(X, pl.DataFrame) or _is_named_pandas(X):
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_


def estimator_tags(tags: Any, *, poor_score: bool = False) -> Any:
    """scikit-learn tags of the propensity models: binary targets only, NaN allowed, dense input only."""
    tags.classifier_tags.multi_class = False
    tags.classifier_tags.poor_score = poor_score
    tags.input_tags.allow_nan = True
    tags.input_tags.sparse = False
    return tags


@dataclasses.dataclass(frozen=True)
class TimeSplit:
    """Row indices of the out-of-time parts of one fit, and the cutoffs each part holds.

    ``early_stopping`` and ``calibration`` are ``None`` when no out-of-time split exists (no or a
    single distinct cutoff); they are the same rows when only two distinct cutoffs exist.
    """

    train: np.ndarray
    early_stopping: np.ndarray | None
    calibration: np.ndarray | None
    cutoffs: dict[str, list[str]]


def _cutoff_array(cutoff: Any, n_rows: int) -> np.ndarray:
    if isinstance(cutoff, pl.Series):
        values = cutoff.cast(pl.Datetime("us")).to_numpy() if cutoff.dtype.is_temporal() else cutoff.to_numpy()
    else:
        values = np.asarray(cutoff)
    if values.ndim != 1 or values.shape[0] != n_rows:
        msg = f"cutoff: {values.shape[0] if values.ndim else 0} values for {n_rows:,} rows; pass one cutoff per row."
        raise SchemaError(msg)
    if values.dtype == object and values.size and isinstance(values[0], dt.datetime):
        values = np.array([v.replace(tzinfo=None) if v.tzinfo else v for v in values], dtype="datetime64[us]")
    return values


def time_split(cutoff: Any, n_rows: int, *, n_calibration: int, n_early_stopping: int) -> TimeSplit:
    """Split rows by their cutoff: oldest cutoffs train, then early stopping, then the latest calibrate.

    Never a random row split: every early-stopping cutoff is later than every training cutoff and
    every calibration cutoff is at least as late as every early-stopping cutoff. With fewer distinct
    cutoffs than ``1 + n_early_stopping + n_calibration`` the counts shrink (calibration first kept,
    early stopping shares the calibration cutoffs); with fewer than two there is no split at all.
    """
    everything = np.arange(n_rows)
    if cutoff is None:
        return TimeSplit(everything, None, None, {})
    values = _cutoff_array(cutoff, n_rows)
    distinct = np.unique(values)
    if distinct.size < 2:
        return TimeSplit(everything, None, None, {"train": [str(v) for v in distinct]})
    n_cal = max(1, min(n_calibration, distinct.size - 1))
    n_es = max(0, min(n_early_stopping, distinct.size - 1 - n_cal))
    cal_c = distinct[distinct.size - n_cal :]
    es_c = distinct[distinct.size - n_cal - n_es : distinct.size - n_cal] if n_es else cal_c
    train_c = distinct[: distinct.size - n_cal - n_es]
    train = np.flatnonzero(np.isin(values, train_c))
    es = np.flatnonzero(np.isin(values, es_c))
    cal = np.flatnonzero(np.isin(values, cal_c))
    names = {
        "train": [str(v) for v in train_c],
        "early_stopping": [str(v) for v in es_c],
        "calibration": [str(v) for v in cal_c],
    }
    return TimeSplit(train, es, cal, names)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` without overflow for very negative ``z``."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


class PlattCalibrator:
    """Platt (1999) sigmoid scaling of a score: ``p = 1 / (1 + exp(-(a * score + b)))``, fitted by max. likelihood."""

    def __init__(self) -> None:
        self.a_ = 1.0
        self.b_ = 0.0

    def fit(self, score: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit ``a`` and ``b`` on held-out scores (unpenalised logistic regression, solved to its optimum).

        ``tol=1e-10``: the solver's default stops ~1e-5 short of the maximum likelihood, e.g. a constant
        score would not map exactly to the base rate.
        """
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(np.reshape(score, (-1, 1)), y)
        self.a_ = float(lr.coef_[0, 0])
        self.b_ = float(lr.intercept_[0])
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probability of each score."""
        return sigmoid(self.a_ * np.asarray(score, dtype=np.float64) + self.b_)


class BetaCalibrator:
    """Beta calibration (Kull, Silva Filho & Flach 2017) of a log-odds score, fitted by maximum likelihood.

    With ``s = sigmoid(score)``: ``logit p = a * ln(s) - b * ln(1 - s) + c``. For very low scores
    ``ln(s)`` is about the score and ``ln(1 - s)`` about 0, for very high ones the other way round, so the
    map has its own log-odds slope at each end (``a`` at the bottom, ``b`` at the top) where Platt scaling
    has one (``a = b``). Both are kept ``>= 0``: when the unconstrained fit gives a negative one, that
    feature is dropped and the other refitted (as the authors' ``betacal`` does), so the map is monotone.

    Attributes
    ----------
    a_, b_, c_ : float
        The map's coefficients.
    """

    def __init__(self) -> None:
        self.a_ = 1.0
        self.b_ = 1.0
        self.c_ = 0.0

    @staticmethod
    def _columns(score: np.ndarray) -> np.ndarray:
        x = np.asarray(score, dtype=np.float64)
        return np.column_stack([-np.logaddexp(0.0, -x), np.logaddexp(0.0, x)])  # ln(s), -ln(1 - s)

    def fit(self, score: np.ndarray, y: np.ndarray) -> BetaCalibrator:
        """Fit ``a``, ``b`` and ``c`` on held-out scores (unpenalised logistic regression, ``tol=1e-10``)."""
        from sklearn.linear_model import LogisticRegression

        columns = self._columns(score)
        lr = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(columns, y)
        coef = lr.coef_[0].astype(np.float64)
        if np.any(coef < 0):  # keep the feature with the larger coefficient alone
            k = int(np.argmax(coef))
            lr = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(columns[:, [k]], y)
            coef = np.zeros(2)
            coef[k] = max(float(lr.coef_[0, 0]), 0.0)
            if coef[k] == 0.0:  # the score does not order the labels: the base rate for every score
                rate = float(np.mean(y))
                self.a_, self.b_, self.c_ = 0.0, 0.0, float(np.log(rate) - np.log1p(-rate))
                return self
        self.a_, self.b_, self.c_ = float(coef[0]), float(coef[1]), float(lr.intercept_[0])
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probability of each score."""
        z = self._columns(score) @ np.array([self.a_, self.b_]) + self.c_
        return sigmoid(np.clip(z, -_MAX_LOG_ODDS, _MAX_LOG_ODDS))


class CentredIsotonicCalibrator:
    """Centred isotonic regression (Oron & Flournoy 2017) in log-odds: strictly increasing, never 0 or 1.

    Plain isotonic regression (PAVA) is a step function: every score inside one block gets the block's
    rate, so a campaign sorted by it is full of ties, and a block without a single buyer says exactly 0.
    Here each PAVA block becomes one point, its centre (the mean score of its rows) at its rate, and the
    map interpolates linearly between consecutive points in log-odds, as Oron & Flournoy's centred
    isotonic regression does between block centres (it keeps the isotonic fit's calibration, since each
    block's rows still average to about the block's rate, and is strictly increasing between centres):

    1. PAVA of the 0/1 labels on the score (tied scores pooled first), then flat stretches merged, so
       block rates strictly increase.
    2. A block without buyers (or without non-buyers) gets Jeffreys' half count, ``0.5 / (n + 1)`` (or
       ``1 - 0.5 / (n + 1)``), then PAVA again over the blocks if that broke the order (tiny end blocks).
    3. ``logit p`` is interpolated linearly between block centres; beyond the first and last centre it
       continues with the slope of a Platt fit on the same rows (the score's own log-odds scale, at least
       ``1e-6`` so the map stays strictly increasing), bounded to +-30 log-odds.

    Attributes
    ----------
    centres_, log_odds_ : numpy.ndarray
        The block centres (scores) and their log-odds, both strictly increasing.
    tail_slope_ : float
        Log-odds per unit of score beyond the outermost centres.

    References
    ----------
    Oron, A. P. & Flournoy, N. (2017). Centered isotonic regression: point and interval estimation for
    dose-response studies. Statistics in Biopharmaceutical Research 9(3), 258-267.
    """

    def __init__(self) -> None:
        self.centres_ = np.zeros(1)
        self.log_odds_ = np.zeros(1)
        self.tail_slope_ = 1.0

    def fit(self, score: np.ndarray, y: np.ndarray) -> CentredIsotonicCalibrator:
        """Fit the map on held-out scores and 0/1 labels."""
        from sklearn.isotonic import isotonic_regression

        x = np.asarray(score, dtype=np.float64)
        t = np.asarray(y, dtype=np.float64)
        values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        hits = np.bincount(inverse, weights=t, minlength=values.size)
        n = counts.astype(np.float64)
        fitted = isotonic_regression(hits / n, sample_weight=n)
        centres, rates, sizes = _merge_flat(values * n, hits, n, fitted)
        edge = 0.5 / (sizes + 1.0)
        rates = np.clip(rates, edge, 1.0 - edge)
        if rates.size > 1 and np.any(np.diff(rates) <= 0):
            fitted = isotonic_regression(rates, sample_weight=sizes)
            centres, rates, sizes = _merge_flat(centres * sizes, rates * sizes, sizes, fitted)
        self.centres_ = centres
        self.log_odds_ = np.log(rates) - np.log1p(-rates)
        self.tail_slope_ = max(PlattCalibrator().fit(x, t).a_, 1e-6) if np.unique(t).size == 2 else 1e-6
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probability of each score, strictly increasing in the score, inside (0, 1)."""
        x = np.asarray(score, dtype=np.float64)
        c, lo = self.centres_, self.log_odds_
        z = np.interp(x, c, lo)
        z = np.where(x < c[0], lo[0] + self.tail_slope_ * (x - c[0]), z)
        z = np.where(x > c[-1], lo[-1] + self.tail_slope_ * (x - c[-1]), z)
        return sigmoid(np.clip(z, -_MAX_LOG_ODDS, _MAX_LOG_ODDS))


def _merge_flat(
    x_sum: np.ndarray, y_sum: np.ndarray, weight: np.ndarray, fitted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool consecutive points with the same fitted value: (weighted centre, rate, weight) per block."""
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    w = np.add.reduceat(weight, starts)
    return np.add.reduceat(x_sum, starts) / w, np.add.reduceat(y_sum, starts) / w, w


def fit_calibrator(score: np.ndarray, y: np.ndarray, method: Calibration) -> Any:
    """Fit a monotone map score -> probability on held-out rows (None for ``method=None``)."""
    if method is None:
        return None
    if method == "sigmoid":
        return PlattCalibrator().fit(score, y)
    if method == "beta":
        return BetaCalibrator().fit(score, y)
    if method == "centred_isotonic":
        return CentredIsotonicCalibrator().fit(score, y)
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, y)


def check_choice(name: str, value: Any, allowed: Sequence[Any], *, model: str) -> None:
    """Raise ConfigError when a hyper-parameter is not one of ``allowed``."""
    from omni_ml.exceptions import ConfigError

    if value not in allowed:
        msg = f"{model}: {name}={value!r} is not one of {list(allowed)}."
        raise ConfigError(msg)
