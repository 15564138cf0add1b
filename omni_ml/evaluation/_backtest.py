"""Fit and back-test: the one call behind ``omni-ml train`` (training set -> out-of-time report -> final model).

Lives in :mod:`omni_ml.evaluation` because it needs both the models and the report (the import
layers put ``evaluate`` above ``models`` above ``training``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sklearn.base import clone

from omni_ml.data import Histories
from omni_ml.evaluation._report import Report, evaluate
from omni_ml.models import PropensityModel
from omni_ml.training import (
    TrainConfig,
    TrainingSet,
    adapt_to_history,
    fit_cutoffs,
    to_utc,
    training_cutoffs,
    training_set,
)

__all__ = ["backtest", "fit_propensity"]


def backtest(model: Any, ts: TrainingSet, *, n_valid: int = 1, oracle: Any = None) -> tuple[Any, Report]:
    """Fit a clone of ``model`` on all but the latest ``n_valid`` cutoffs and evaluate it on them.

    Training cutoffs whose label windows overlap the validation period are purged
    (:meth:`TrainingSet.split_out_of_time`). Returns the fitted clone and its report.
    """
    train, valid = ts.split_out_of_time(n_valid=n_valid)
    fitted = clone(model)
    fitted.fit_training_set(train)
    return fitted, evaluate(fitted, valid, oracle=oracle)


def fit_propensity(
    hist: Histories,
    as_of: str | dt.date | dt.datetime,
    horizon_days: int,
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    ts: TrainingSet | None = None,
) -> tuple[PropensityModel, Report]:
    """Train the propensity model for scoring at ``as_of`` and report how the same recipe did out of time.

    Steps: cutoffs whose label windows end by ``as_of`` (:func:`~omni_ml.training.training_cutoffs`);
    the config adapted to the length of the history (:func:`~omni_ml.training.adapt_to_history`: under a
    year of cutoffs, no ``time_of_year`` features and no calibration map unless configured); the stacked
    training set; a back-test (the recipe fitted on all but the latest ``config.n_valid``
    cutoffs, purged, and evaluated on them); then the final model fitted on every cutoff. The report
    describes the back-test; the returned model is the final one (same hyper-parameters, more recent data).

    Parameters
    ----------
    hist
        Identity-resolved histories.
    as_of
        The moment the data ends; scoring happens here.
    horizon_days
        Label window: P(purchase in ``[t, t + horizon_days)``).
    config
        A :class:`~omni_ml.training.TrainConfig` or a mapping of its fields.
    ts
        A prebuilt training set (skips building one; ``config``'s cutoffs are then ignored and ``config``
        is used as it is, not adapted to the history).

    Returns
    -------
    (PropensityModel, Report)
        The final model (with ``feature_set_``) and the out-of-time back-test report; the report's
        metrics also hold ``train_rows``, ``train_cutoffs`` and ``horizon_days``.
    """
    from omni_ml.config import from_mapping

    cfg = config if isinstance(config, TrainConfig) else from_mapping(TrainConfig, dict(config or {}))
    moment = to_utc(as_of)
    if ts is None:
        cuts = fit_cutoffs(hist, training_cutoffs(moment, horizon_days, every_days=cfg.every_days, n=cfg.n_cutoffs))
        cfg, _ = adapt_to_history(cfg, cuts)
        ts = training_set(hist, cuts, horizon_days, config=_feature_config(cfg.features), as_of=moment)
    recipe = PropensityModel(**dict(cfg.model))
    _, report = backtest(recipe, ts, n_valid=cfg.n_valid)
    final = clone(recipe).fit_training_set(ts)
    extra = {"train_rows": float(len(ts)), "train_cutoffs": float(len(ts.cutoffs)), "horizon_days": float(horizon_days)}
    report.metrics.update(extra)
    return final, report


def _feature_config(value: Any) -> Any:
    if value is None or not isinstance(value, Mapping):
        return value
    from omni_ml.config import from_mapping
    from omni_ml.features import FeatureConfig

    return from_mapping(FeatureConfig, value, where="config.features")
