"""Purchase propensity: a LightGBM classifier trained on stacked cutoffs, calibrated on held-out time.

The model estimates P(at least one purchase in ``[t, t + horizon)`` | history before ``t``) for
every customer row of a training set built by :func:`omni_ml.training.training_set`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from omni_ml.models._common import (
    P_EDGE,
    Calibration,
    as_matrix,
    binary_target,
    check_choice,
    check_classes,
    check_enough_rows,
    estimator_tags,
    fit_calibrator,
    record_features,
    sigmoid,
    time_split,
)

if TYPE_CHECKING:
    from omni_ml.data import Histories
    from omni_ml.training import TrainingSet

__all__ = ["PropensityModel", "load_model", "predict_propensity", "save_model"]

_JSON_CHARS = re.compile(r'[",:\[\]{}]')


class PropensityModel(ClassifierMixin, BaseEstimator):
    """Calibrated gradient-boosted purchase propensity (LightGBM inside, scikit-learn outside).

    Training rows are ``(customer, cutoff)`` snapshots stacked over several cutoffs. ``fit`` splits
    them **by time**, using the per-row ``cutoff``: the oldest cutoffs train the booster, the next
    ``n_early_stopping_cutoffs`` choose the number of boosting rounds (early stopping on log loss),
    and the latest ``n_calibration_cutoffs`` fit a monotone calibration map from the booster's raw
    score to a probability. No row split is ever random.

    Refit policy (``refit``):

    - ``"none"`` (default): the booster that was early-stopped is the model; every part of the model
      (trees, number of rounds, calibration) has been checked on time it did not see. The price is
      that the latest ``n_early_stopping_cutoffs + n_calibration_cutoffs`` snapshots do not train trees.
    - ``"all"``: after early stopping and calibration, the booster is retrained on *all* cutoffs for
      ``best_iteration_`` rounds and the calibration map learned from the held-out booster is reused.
      Uses the freshest data for the trees, at the cost of a calibration map fitted to a sibling model.

    Degenerate data: fewer than two distinct cutoffs (or ``cutoff=None``) is a documented fallback:
    exactly ``n_estimators`` rounds, no early stopping and no calibration (``calibrator_`` is None,
    probabilities are LightGBM's sigmoid of the raw score). A single class in any time part raises
    :class:`~omni_ml.exceptions.DataInsufficientError`, and so do fewer than 50 rows or 5 rows of a
    class when fitting with cutoffs (too few to split by time and calibrate); a plain ``fit(X, y)``
    only needs both classes. Constant features make a booster without splits: it predicts the
    calibration window's base rate.

    A scikit-learn estimator: it passes ``sklearn.utils.estimator_checks.check_estimator`` and works
    with ``clone``, ``Pipeline`` (``fit(X, y, model__cutoff=...)``) and ``GridSearchCV`` (``cutoff``
    is sliced with the rows). Any two labels are accepted (``classes_``; ``classes_[1]`` is the
    purchase); multiclass targets are refused (estimator tag ``multi_class=False``). Frames are matched
    by column name, arrays by position. For SHAP, ``shap.TreeExplainer(model.booster_)`` explains the
    log-odds (:meth:`proba_from_raw` maps them to the probability); shap dispatches on the class of
    the object it is given and does not know this one.

    Assumptions: rows are exchangeable *within* a cutoff and the relation between history and purchase
    drifts slowly enough that the latest cutoffs describe the next period; the booster's raw score is
    monotone in the true propensity (calibration reorders nothing, it relabels).

    Calibration maps (measured in the docstring of ``benchmarks/bench_propensity.py``): ``"sigmoid"``
    (default) is Platt's map ``1 / (1 + exp(-(a * raw + b)))``. The booster's raw score is already a
    log-odds fitted by log loss, so two parameters correct its shift and scale on held-out time; on the
    default world (three seeds) it had the lowest ECE and log loss, the same AUC. ``"centred_isotonic"``
    is the assumption-free alternative: isotonic regression made strictly increasing by interpolating
    between its block centres in log-odds (Oron & Flournoy 2017; ``CentredIsotonicCalibrator`` in
    ``omni_ml.models._common``). ``"beta"`` (Kull, Silva Filho & Flach 2017; ``BetaCalibrator``) is
    Platt's map with a log-odds slope of its own at each end of the score (three parameters). These
    three keep every distinct score distinct and never give exactly 0 or 1.
    Plain ``"isotonic"`` is a step function: on the two-year default world 98 distinct probabilities for
    30,000 customers, 7% of them exactly 0 or 1 before the bound below. Every map's output is kept inside
    ``[1e-15, 1 - 1e-15]``.

    Parameters
    ----------
    n_estimators
        Maximum boosting rounds (early stopping usually stops sooner).
    learning_rate, num_leaves, max_depth, min_child_samples, subsample, colsample_bytree, reg_lambda
        LightGBM tree parameters (``bagging_fraction``/``feature_fraction``/``lambda_l2`` in its own names).
    early_stopping_rounds
        Stop when validation log loss has not improved for this many rounds.
    calibration
        ``"sigmoid"`` (Platt 1999; default), ``"beta"`` (Kull et al. 2017), ``"centred_isotonic"``
        (Oron & Flournoy 2017), ``"isotonic"`` (Zadrozny & Elkan 2002) or ``None``.
    n_early_stopping_cutoffs, n_calibration_cutoffs
        How many of the latest distinct cutoffs validate and calibrate.
    refit
        ``"none"`` or ``"all"``; see above.
    random_state
        Seed for LightGBM's bagging and feature sampling.
    n_jobs
        LightGBM threads. Results are bit-identical for the same inputs and the same ``n_jobs``
        (``deterministic=True``, ``force_row_wise=True``).

    Attributes
    ----------
    evals_result_ : dict
        LightGBM's learning curve, ``{"train" | "early_stopping": {metric: [value per iteration]}}`` (empty
        when there were too few cutoffs to early-stop).
    booster_ : lightgbm.Booster
        Holds exactly ``best_iteration_`` trees; ``booster_.predict(X, raw_score=True)`` is the log-odds.
    feature_names_ : list[str]
        Feature columns in booster order (LightGBM's own names replace ``",:[]{}`` by ``_``); ``x0, x1, ...``
        when fitted on an array.
    feature_names_in_ : numpy.ndarray
        The column names, when fitted on a polars or pandas frame (scikit-learn's convention).
    n_features_in_ : int
        Number of feature columns.
    classes_ : numpy.ndarray
        The two labels seen in ``fit``, sorted; ``predict_proba`` columns follow them.
    best_iteration_ : int
        Boosting rounds kept.
    calibrator_ : object or None
        Maps the raw score to a probability (``predict`` method); see :meth:`proba_from_raw`.
    split_ : dict
        The cutoffs that trained, early-stopped and calibrated the model (as strings).
    feature_set_ : FeatureSet, optional
        Set by :meth:`fit_training_set` so the model can build its own features for scoring.

    References
    ----------
    Ke, G. et al. (2017). LightGBM: A highly efficient gradient boosting decision tree. NeurIPS 30.
    Zadrozny, B. & Elkan, C. (2002). Transforming classifier scores into accurate multiclass probability
    estimates. KDD. Platt, J. (1999). Probabilistic outputs for support vector machines.
    Oron, A. P. & Flournoy, N. (2017). Centered isotonic regression. Stat. Biopharm. Res. 9(3).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(3000, 3))
    >>> y = (rng.random(3000) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    >>> cutoff = np.repeat(np.arange("2025-01", "2025-06", dtype="datetime64[M]"), 600)
    >>> model = PropensityModel(n_estimators=50, random_state=0).fit(X, y, cutoff=cutoff)
    >>> model.predict_proba(X[:2]).shape
    (2, 2)
    >>> model.split_["calibration"]
    ['2025-05']
    """

    def __init__(
        self,
        *,
        n_estimators: int = 2000,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        max_depth: int = -1,
        min_child_samples: int = 100,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 100,
        calibration: Calibration = "sigmoid",
        n_early_stopping_cutoffs: int = 1,
        n_calibration_cutoffs: int = 1,
        refit: Literal["none", "all"] = "none",
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.n_early_stopping_cutoffs = n_early_stopping_cutoffs
        self.n_calibration_cutoffs = n_calibration_cutoffs
        self.refit = refit
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting
    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
        }

    def fit(self, X: Any, y: Any, *, cutoff: Any = None) -> PropensityModel:
        """Fit the booster on older cutoffs, early-stop and calibrate on the latest ones.

        Parameters
        ----------
        X
            Numeric features: a polars or pandas DataFrame (names are kept) or a 2-D array.
        y
            0/1 labels (purchase within the horizon).
        cutoff
            The cutoff of each row (datetimes or any sortable values). ``None`` means no
            out-of-time split (documented fallback: no early stopping, no calibration).

        Returns
        -------
        PropensityModel
            ``self``, fitted.
        """
        import lightgbm as lgb

        name = type(self).__name__
        maps = ("beta", "centred_isotonic", "isotonic", "sigmoid", None)
        check_choice("calibration", self.calibration, maps, model=name)
        check_choice("refit", self.refit, ("none", "all"), model=name)
        matrix, names = as_matrix(X, model=name, min_rows=1)
        labels, classes = binary_target(y, matrix.shape[0], model=name)
        check_classes(labels, part="training data", model=name, classes=classes)
        if cutoff is not None:
            check_enough_rows(labels, model=name)
        split = time_split(
            cutoff,
            matrix.shape[0],
            n_calibration=self.n_calibration_cutoffs,
            n_early_stopping=self.n_early_stopping_cutoffs,
        )
        check_classes(labels[split.train], part="training part (oldest cutoffs)", model=name, classes=classes)
        params = self._lgb_params()
        lgb_names = [_JSON_CHARS.sub("_", n) for n in names]
        train_set = lgb.Dataset(matrix[split.train], label=labels[split.train], feature_name=lgb_names, params=params)
        if split.early_stopping is None or split.calibration is None:
            self.evals_result_ = {}
            booster = lgb.train(params, train_set, num_boost_round=self.n_estimators)
            best = self.n_estimators
            calibrator = None
        else:
            check_classes(labels[split.early_stopping], part="early-stopping part", model=name, classes=classes)
            check_classes(
                labels[split.calibration], part="calibration part (latest cutoffs)", model=name, classes=classes
            )
            valid_set = lgb.Dataset(
                matrix[split.early_stopping], label=labels[split.early_stopping], reference=train_set
            )
            # The training part is evaluated too, for the learning curve (early stopping ignores it).
            evals: dict[str, dict[str, list[float]]] = {}
            booster = lgb.train(
                params,
                train_set,
                num_boost_round=self.n_estimators,
                valid_sets=[train_set, valid_set],
                valid_names=["train", "early_stopping"],
                callbacks=[
                    lgb.early_stopping(self.early_stopping_rounds, verbose=False),
                    lgb.record_evaluation(evals),
                ],
            )
            self.evals_result_ = evals
            best = int(booster.best_iteration) or self.n_estimators
            raw = booster.predict(matrix[split.calibration], raw_score=True, num_iteration=best)
            calibrator = fit_calibrator(np.asarray(raw), labels[split.calibration], self.calibration)
            if self.refit == "all":
                full = lgb.Dataset(matrix, label=labels, feature_name=lgb_names, params=params)
                booster = lgb.train(params, full, num_boost_round=best)
        # Keep exactly `best` trees so that booster_ alone (e.g. for TreeSHAP) gives the model's log-odds.
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        self.best_iteration_ = best
        self.calibrator_ = calibrator
        record_features(self, X, names)
        self.classes_ = classes
        self.split_ = split.cutoffs
        return self

    def fit_training_set(self, ts: TrainingSet) -> PropensityModel:
        """Fit on a :class:`~omni_ml.training.TrainingSet` (its per-row cutoffs drive the time split).

        Also keeps ``ts.feature_set`` as ``feature_set_`` so :func:`predict_propensity` can rebuild features.
        """
        self.fit(ts.X, ts.y, cutoff=ts.cutoff)
        self.feature_set_ = ts.feature_set
        return self

    # --------------------------------------------------------------- predicting
    def predict_raw(self, X: Any) -> np.ndarray:
        """Raw booster score (log-odds before calibration) of each row."""
        check_is_fitted(self)
        matrix, _ = as_matrix(X, expected=self.feature_names_, model=type(self).__name__)
        return np.asarray(self.booster_.predict(matrix, raw_score=True), dtype=np.float64)

    def proba_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated purchase probability from raw booster scores (log-odds), e.g. SHAP base + contributions.

        Never exactly 0 or 1: kept inside ``[1e-15, 1 - 1e-15]`` whatever the calibration map.
        """
        check_is_fitted(self)
        raw = np.asarray(raw, dtype=np.float64)
        if self.calibrator_ is None:
            p = sigmoid(raw)
        else:
            p = np.asarray(self.calibrator_.predict(raw), dtype=np.float64)
        return np.asarray(np.clip(p, P_EDGE, 1.0 - P_EDGE), dtype=np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of no purchase and purchase (``classes_`` order), shape ``(n, 2)``."""
        p = self.proba_from_raw(self.predict_raw(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """``classes_[1]`` (purchase) where the calibrated probability is above 0.5, else ``classes_[0]``.

        The label of the larger column of :meth:`predict_proba` (a tie at 0.5 goes to ``classes_[0]``, as argmax).
        """
        check_is_fitted(self)
        return np.asarray(self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(np.intp)])

    def __sklearn_tags__(self) -> Any:
        """Binary targets only; NaN features allowed (LightGBM's missing values); dense input only.

        ``poor_score``: the defaults are made for tens of thousands of rows (a leaf holds at least
        ``min_child_samples=100`` of them), so on scikit-learn's 200-row toy problems the trees cannot split.
        """
        return estimator_tags(super().__sklearn_tags__(), poor_score=True)

    def feature_importance(self) -> pl.DataFrame:
        """Total gain and split count per feature, largest gain first."""
        check_is_fitted(self)
        gain = self.booster_.feature_importance(importance_type="gain")
        split = self.booster_.feature_importance(importance_type="split")
        total = float(gain.sum()) or 1.0
        return pl.DataFrame(
            {"feature": self.feature_names_, "gain": gain, "gain_share": gain / total, "splits": split},
            schema={"feature": pl.String, "gain": pl.Float64, "gain_share": pl.Float64, "splits": pl.Int64},
        ).sort(["gain", "feature"], descending=[True, False])


def predict_propensity(
    hist: Histories,
    model: Any,
    as_of: str | dt.date | dt.datetime,
    *,
    feature_set: Any = None,
) -> pl.DataFrame:
    """Score every customer as of one date: features before ``as_of``, then the model's probability.

    Parameters
    ----------
    hist
        Identity-resolved histories.
    model
        A fitted model with ``predict_proba`` (PropensityModel or a baseline).
    as_of
        The scoring moment (exclusive cutoff).
    feature_set
        The feature definition the model was trained with; defaults to ``model.feature_set_``.

    Returns
    -------
    polars.DataFrame
        ``customer_id``, ``propensity`` (Float64), sorted by ``customer_id``.
    """
    from omni_ml.features import build_features
    from omni_ml.training import to_utc

    fs = feature_set if feature_set is not None else getattr(model, "feature_set_", None)
    at = to_utc(as_of)
    features = build_features(hist, at, feature_set=fs)
    X = features.drop("customer_id", "cutoff")
    p = model.predict_proba(X)[:, 1]
    return features.select("customer_id").with_columns(pl.Series("propensity", p, dtype=pl.Float64)).sort("customer_id")


def save_model(model: Any, path: str | Path) -> Path:
    """Write a fitted model to ``path`` with joblib, atomically, and its sha256 to ``<path>.sha256``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0); X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
    >>> m = PropensityModel(n_estimators=5).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     np.allclose(load_model(save_model(m, f"{d}/m.joblib")).predict_proba(X), m.predict_proba(X))
    True
    """
    from omni_ml._model_files import dump_verified

    target = Path(path)
    dump_verified(model, target)  # atomic, with its checksum beside it (<path>.sha256)
    return target


def load_model(path: str | Path) -> Any:
    """Read a model written by :func:`save_model`, after checking its sha256 (``<path>.sha256``).

    Raises
    ------
    ModelNotFoundError
        ``path`` does not exist, or its checksum is missing or does not match (nothing is unpickled).
    """
    from omni_ml._model_files import load_verified
    from omni_ml.exceptions import ModelNotFoundError

    target = Path(path)
    if not target.is_file():
        msg = f"model file {str(target)!r} does not exist. Hint: train one with `omni-ml train DIR --out PATH`."
        raise ModelNotFoundError(msg)
    return load_verified(target)
