"""Evaluation: ranking, probability and calibration metrics, lift and gains, per cutoff and overall.

``evaluate(model_or_scores, data)`` returns a :class:`Report` whose ``.metrics`` are flat and
MLflow-ready and whose ``.plot()`` gives matplotlib figures. :func:`fit_propensity` is the train +
out-of-time back-test behind ``omni-ml train``. Off-policy estimators of channel policies live in
``_offpolicy.py`` beside these; :func:`channel_backtest` is the out-of-time off-policy back-test of a
channel policy and its baselines that ``omni-ml train`` logs.
"""

from __future__ import annotations

from omni_ml.evaluation._backtest import backtest, fit_propensity
from omni_ml.evaluation._channel_backtest import BACKTEST_POLICIES, ChannelBacktest, channel_backtest
from omni_ml.evaluation._metrics import (
    brier,
    calibration_table,
    expected_calibration_error,
    lift_table,
    log_loss,
    pr_auc,
    roc_auc,
    top_decile_lift,
)
from omni_ml.evaluation._offpolicy import OffPolicyResult, estimate_logging_probability, off_policy_value
from omni_ml.evaluation._report import Report, evaluate, evaluate_scores

__all__ = [
    "BACKTEST_POLICIES",
    "ChannelBacktest",
    "OffPolicyResult",
    "Report",
    "backtest",
    "brier",
    "calibration_table",
    "channel_backtest",
    "estimate_logging_probability",
    "evaluate",
    "evaluate_scores",
    "expected_calibration_error",
    "fit_propensity",
    "lift_table",
    "log_loss",
    "off_policy_value",
    "pr_auc",
    "roc_auc",
    "top_decile_lift",
]
