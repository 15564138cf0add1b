"""The evaluation report: overall and per-cutoff metrics, lift and calibration tables, figures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from omni_ml.evaluation import _metrics as m
from omni_ml.exceptions import SchemaError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Report", "evaluate", "evaluate_scores"]


def _cutoff_label(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d") if value.time() == dt.time() else value.strftime("%Y-%m-%dT%H%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).replace(":", "")


def _summary(y: np.ndarray, p: np.ndarray, n_bins: int, oracle: np.ndarray | None) -> dict[str, float]:
    out = {
        "n_rows": float(y.size),
        "n_positive": float(y.sum()),
        "base_rate": float(y.mean()) if y.size else math.nan,
        "p_mean": float(p.mean()) if y.size else math.nan,
        "auc": m.roc_auc(y, p),
        "pr_auc": m.pr_auc(y, p),
        "log_loss": m.log_loss(y, p),
        "brier": m.brier(y, p),
        "ece": m.expected_calibration_error(y, p, n_bins, "quantile"),
        "ece_uniform": m.expected_calibration_error(y, p, n_bins, "uniform"),
        "top_decile_lift": m.top_decile_lift(y, p) if y.size >= 10 and y.any() else math.nan,
    }
    if oracle is not None:
        out["oracle_auc"] = m.roc_auc(y, oracle)
        out["oracle_pr_auc"] = m.pr_auc(y, oracle)
        out["oracle_brier"] = m.brier(y, oracle)
        out["oracle_log_loss"] = m.log_loss(y, oracle)
        out["auc_share_of_oracle"] = out["auc"] / out["oracle_auc"] if out["oracle_auc"] else math.nan
        out["pr_auc_share_of_oracle"] = out["pr_auc"] / out["oracle_pr_auc"] if out["oracle_pr_auc"] else math.nan
    return out


_PER_CUTOFF = ("n_rows", "base_rate", "auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift")


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    metrics : dict[str, float]
        Flat, MLflow-ready names: ``auc``, ``pr_auc``, ``log_loss``, ``brier``, ``ece`` (10 equal-mass
        bins), ``ece_uniform``, ``top_decile_lift``, ``base_rate``, ``p_mean``, ``n_rows``, ``n_positive``;
        per cutoff ``cutoff_<YYYY-MM-DD>/<metric>``; with an oracle also ``oracle_auc``,
        ``auc_share_of_oracle`` (and the PR-AUC, Brier and log-loss counterparts).
    per_cutoff : polars.DataFrame
        One row per cutoff with the same metrics.
    lift : polars.DataFrame
        Gains and lift by decile over all rows (:func:`lift_table`).
    calibration : polars.DataFrame
        Reliability table over all rows (:func:`calibration_table`, equal-mass bins).
    scores : polars.DataFrame
        ``cutoff`` (if known), ``label``, ``score`` (and ``oracle``): the inputs, for plots and re-analysis.
    """

    metrics: dict[str, float]
    per_cutoff: pl.DataFrame
    lift: pl.DataFrame
    calibration: pl.DataFrame
    scores: pl.DataFrame

    def plot(self) -> dict[str, Figure]:
        """Figures: ``gains`` (cumulative gains), ``lift`` (by decile) and ``calibration`` (reliability)."""
        from omni_ml.evaluation._plots import plot_report

        return plot_report(self)

    def to_text(self) -> str:
        """A short table of the main metrics, overall and per cutoff."""
        keys = ["n_rows", "base_rate", "p_mean", "auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift"]
        keys += [k for k in ("oracle_auc", "auc_share_of_oracle") if k in self.metrics]
        lines = ["overall: " + "  ".join(f"{k}={self.metrics[k]:.4g}" for k in keys)]
        for row in self.per_cutoff.iter_rows(named=True):
            cells = "  ".join(f"{k}={row[k]:.4g}" for k in ("n_rows", "base_rate", "auc", "brier", "ece"))
            lines.append(f"  cutoff {_cutoff_label(row['cutoff'])}: {cells}")
        return "\n".join(lines)


def evaluate_scores(
    y: Any,
    p: Any,
    *,
    cutoff: Any = None,
    oracle: Any = None,
    n_bins: int = 10,
) -> Report:
    """Evaluate purchase probabilities ``p`` against outcomes ``y``, overall and per cutoff.

    Parameters
    ----------
    y
        0/1 outcomes.
    p
        Predicted probabilities in [0, 1].
    cutoff
        Optional cutoff of each row; metrics are then also reported per cutoff.
    oracle
        Optional best-possible probabilities for the same rows (e.g. the simulator's true
        ``p_purchase``); adds ``oracle_*`` and ``auc_share_of_oracle``.
    n_bins
        Bins of the calibration table and the expected calibration error.

    Returns
    -------
    Report

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.uniform(0, 0.6, 5000); y = (rng.random(5000) < truth).astype(int)
    >>> r = evaluate_scores(y, truth, oracle=truth)
    >>> r.metrics["auc_share_of_oracle"], r.metrics["ece"] < 0.03
    (1.0, True)
    """
    y_arr, p_arr = m.check_scores(np.asarray(y), np.asarray(p))
    o_arr = m.check_scores(y_arr, np.asarray(oracle), where="oracle")[1] if oracle is not None else None
    columns: dict[str, Any] = {"label": y_arr, "score": p_arr}
    if o_arr is not None:
        columns["oracle"] = o_arr
    scores = pl.DataFrame(columns)
    if cutoff is not None:
        c = cutoff if isinstance(cutoff, pl.Series) else pl.Series(np.asarray(cutoff))
        if c.len() != y_arr.size:
            msg = f"evaluate: {c.len():,} cutoffs for {y_arr.size:,} rows; pass one cutoff per row."
            raise SchemaError(msg)
        scores = scores.insert_column(0, c.alias("cutoff"))
    metrics = _summary(y_arr, p_arr, n_bins, o_arr)
    rows = []
    if cutoff is not None:
        for (value,), part in scores.group_by("cutoff", maintain_order=False):
            yy = part["label"].to_numpy()
            pp = part["score"].to_numpy()
            oo = part["oracle"].to_numpy() if o_arr is not None else None
            s = _summary(yy, pp, n_bins, oo)
            rows.append({"cutoff": value, **s})
            label = _cutoff_label(value)
            for k in (*_PER_CUTOFF, *(("oracle_auc", "auc_share_of_oracle") if oo is not None else ())):
                metrics[f"cutoff_{label}/{k}"] = s[k]
    per_cutoff = (
        pl.DataFrame(rows).sort("cutoff")
        if rows
        else pl.DataFrame(schema={"cutoff": pl.Null, **dict.fromkeys(_PER_CUTOFF, pl.Float64)})
    )
    return Report(
        metrics=metrics,
        per_cutoff=per_cutoff,
        lift=m.lift_table(y_arr, p_arr) if y_arr.size >= 10 else pl.DataFrame(),
        calibration=m.calibration_table(y_arr, p_arr, n_bins),
        scores=scores,
    )


def evaluate(model_or_scores: Any, data: Any, *, oracle: Any = None, n_bins: int = 10) -> Report:
    """Evaluate a fitted model (or its scores) on a :class:`~omni_ml.training.TrainingSet`, per cutoff and overall.

    Parameters
    ----------
    model_or_scores
        Anything with ``predict_proba(X)`` (column 1 is used), or an array/Series of probabilities
        aligned with ``data``'s rows.
    data
        A TrainingSet (``X``, ``y``, ``keys`` with ``cutoff``), normally the out-of-time part of
        :meth:`~omni_ml.training.TrainingSet.split_out_of_time`.
    oracle
        Optional true probabilities for the same rows; see :func:`evaluate_scores`.
    n_bins
        Calibration bins.

    Returns
    -------
    Report
    """
    if hasattr(model_or_scores, "predict_proba"):
        p = np.asarray(model_or_scores.predict_proba(data.X))[:, 1]
    else:
        p = np.asarray(model_or_scores.to_numpy() if isinstance(model_or_scores, pl.Series) else model_or_scores)
    return evaluate_scores(data.y, p, cutoff=data.keys["cutoff"], oracle=oracle, n_bins=n_bins)
