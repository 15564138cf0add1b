"""Watch a campaign model between campaigns: drift, score health and expected performance before outcomes.

* At training, :func:`training_reference` describes the population the model was fitted on
  (:class:`Reference`, stored as ``CampaignModel.reference_``): per feature a binned histogram or
  level shares, null share and quantiles; the share per fixed propensity decile; the label rate.
  Aggregates only -- no identifier, no per-customer row. Also the input rows of the training windows
  (:class:`InputReference`: volume per customer-day of every event type and channel, contacts and consent
  withdrawals per channel, the order value of purchases; :mod:`omni_ml.monitor._events`) and the
  back-test's top-decile lift ratio.
* At every scoring run, :class:`ScoringMonitor` compares the scored population with it
  (:class:`MonitorReport`): population stability index and Jensen-Shannon distance per feature
  on the training bins, null-share changes, drift of the input rows of the horizon before the scoring date,
  decile occupancy, the share contacted per channel vs the
  previous run of the same model, and the performance expected without labels from the calibrated
  propensities (CBPE: expected AUC, expected buyers among the contacted, expected lift by decile).
  A health verdict (``ok`` / ``warn`` / ``bad``) follows the thresholds of :class:`MonitorConfig`.
* :mod:`omni_ml.monitor._mlflow` logs each run to MLflow, linked to the model's run by the tag
  ``omni_ml.model_run_id``, and reads the last runs back (``omni-ml monitor``).
* When the outcomes are in, :func:`realised_figures` computes the realised counterparts (``omni-ml
  measure`` prints them next to the estimates and adds them to the monitoring run).
"""

from __future__ import annotations

from omni_ml.monitor._drift import MonitorConfig, expected_auc, expected_auc_band, js_distance, psi, psi_noise
from omni_ml.monitor._events import InputItem, InputReference
from omni_ml.monitor._profile import EXCLUDED_FAMILIES, FeatureProfile, Reference
from omni_ml.monitor._realised import expected_vs_realised, realised_figures, record_realised
from omni_ml.monitor._reference import training_reference
from omni_ml.monitor._run import MONITOR_COLUMNS, SAMPLE_SEED, MonitorReport, ScoringMonitor, Verdict, monitor_path

__all__ = [
    "EXCLUDED_FAMILIES",
    "MONITOR_COLUMNS",
    "SAMPLE_SEED",
    "FeatureProfile",
    "InputItem",
    "InputReference",
    "MonitorConfig",
    "MonitorReport",
    "Reference",
    "ScoringMonitor",
    "Verdict",
    "expected_auc",
    "expected_auc_band",
    "expected_vs_realised",
    "js_distance",
    "monitor_path",
    "psi",
    "psi_noise",
    "realised_figures",
    "record_realised",
    "training_reference",
]
