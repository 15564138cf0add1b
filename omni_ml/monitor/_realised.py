"""Realised performance of a scored campaign, next to what the scoring run expected (CBPE) before the outcomes.

:func:`realised_figures` computes, from the campaign file and who bought in the outcome window, the
figures the scoring run estimated: AUC of the propensity (with a Hanley-McNeil 95% interval), buyers
overall and among the contacted, and the lift of decile 1. :func:`expected_vs_realised` puts them
beside the estimates read from ``<campaign>.monitor.parquet``; :func:`record_realised` adds them to the
scoring run's monitoring run in MLflow. ``omni-ml measure`` calls both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omni_ml.data import NO_CONTACT

__all__ = ["expected_vs_realised", "realised_figures", "record_realised"]

_PAIRS = (
    ("auc", "expected_auc", "auc"),
    ("conversions", "expected_conversions", "conversions"),
    ("conversions_contacted", "expected_conversions_contacted", "conversions_contacted"),
    ("lift_top_decile", "expected_lift_top_decile", "lift_top_decile"),
    ("lift_top_decile_corrected", "expected_lift_top_decile_corrected", "lift_top_decile"),
)
"""(figure, expected metric of the monitor file, realised figure): the corrected lift has the same realised one."""


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def realised_figures(campaign: pl.DataFrame, buyers: pl.DataFrame, *, alpha: float = 0.05) -> dict[str, float]:
    """Realised counterparts of the expected figures of a scoring run.

    Parameters
    ----------
    campaign
        The campaign file (``customer_id, propensity, propensity_decile, best_channel``).
    buyers
        ``customer_id`` and ``converted`` (0/1 or bool): who bought in the outcome window; customers
        not listed did not buy.
    alpha
        1 - confidence level of the AUC interval (Hanley & McNeil 1982 standard error).

    Returns
    -------
    dict
        ``realised_auc`` (``_lo``/``_hi``), ``realised_conversions``, ``realised_conversions_contacted``,
        ``realised_rate``, ``realised_lift_top_decile``, ``realised_customers``.
    """
    from scipy.stats import norm

    joined = campaign.select("customer_id", "propensity", "propensity_decile", "best_channel").join(
        buyers.select("customer_id", pl.col("converted").cast(pl.Int8)), on="customer_id", how="left"
    )
    y = joined["converted"].fill_null(0).to_numpy().astype(np.int64)
    p = joined["propensity"].fill_null(np.nan).to_numpy()
    keep = np.isfinite(p)
    y, p = y[keep], p[keep]
    top = (joined["propensity_decile"] == 1).fill_null(False).to_numpy()[keep]  # noqa: FBT003
    contacted = (joined["best_channel"] != NO_CONTACT).fill_null(False).to_numpy()[keep]  # noqa: FBT003
    auc = _roc_auc(y, p)
    n1, n0 = int(y.sum()), int(y.size - y.sum())
    lo = hi = float("nan")
    if math.isfinite(auc):
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        se = math.sqrt(max(0.0, (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)))
        z = float(norm.ppf(1 - alpha / 2))
        lo, hi = max(0.0, auc - z * se), min(1.0, auc + z * se)
    rate = float(y.mean()) if y.size else float("nan")
    return {
        "realised_auc": auc,
        "realised_auc_lo": lo,
        "realised_auc_hi": hi,
        "realised_conversions": float(n1),
        "realised_conversions_contacted": float(y[contacted].sum()),
        "realised_rate": rate,
        "realised_lift_top_decile": float(y[top].mean() / rate) if top.any() and rate > 0 else float("nan"),
        "realised_customers": float(y.size),
    }


def expected_vs_realised(monitor_file: str | Path | None, realised: dict[str, float]) -> pl.DataFrame:
    """``figure, expected, realised`` rows: the scoring run's estimates (when its monitor file exists) and outcomes."""
    expected: dict[str, Any] = {}
    if monitor_file is not None and Path(monitor_file).is_file():
        table = pl.read_parquet(monitor_file).filter(pl.col("section") == "performance")
        expected = dict(table.select("metric", "value").iter_rows())
    rows = [(name, expected.get(est), realised.get(f"realised_{real}")) for name, est, real in _PAIRS]
    schema = {"figure": pl.String, "expected": pl.Float64, "realised": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def record_realised(
    tracking_uri: str, model_run_id: str, as_of: Any, realised: dict[str, float], *, window_days: int
) -> str | None:
    """Log ``realised`` (and the window) to the monitoring run of that model at ``as_of``; its id, or ``None``."""
    from omni_ml.monitor._mlflow import find_monitoring_run, log_realised

    run_id = find_monitoring_run(tracking_uri, model_run_id, as_of)
    if run_id is not None:
        log_realised(tracking_uri, run_id, {**realised, "realised_window_days": float(window_days)})
    return run_id
