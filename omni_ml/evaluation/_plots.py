"""Matplotlib figures of a :class:`~omni_ml.evaluation.Report` (object-oriented API, no pyplot state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from omni_ml.evaluation import _metrics as m

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from omni_ml.evaluation._report import Report


def plot_report(report: Report) -> dict[str, Figure]:
    """Gains curve, lift by decile and reliability diagram as separate figures."""
    from matplotlib.figure import Figure

    y = report.scores["label"].to_numpy()
    p = report.scores["score"].to_numpy()
    oracle = report.scores["oracle"].to_numpy() if "oracle" in report.scores.columns else None
    figures: dict[str, Figure] = {}

    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    share = np.r_[0.0, report.lift["cum_share"].to_numpy()]
    ax.plot(share, np.r_[0.0, report.lift["gains"].to_numpy()], marker="o", label=f"model (AUC {m.roc_auc(y, p):.3f})")
    if oracle is not None:
        og = m.lift_table(y, oracle)
        ax.plot(share, np.r_[0.0, og["gains"].to_numpy()], ls="--", label=f"oracle (AUC {m.roc_auc(y, oracle):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="random")
    ax.set(xlabel="share of customers contacted (by score)", ylabel="share of buyers reached", title="Cumulative gains")
    ax.legend(loc="lower right")
    figures["gains"] = fig

    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.bar(report.lift["decile"].to_numpy(), report.lift["lift"].to_numpy(), color="tab:blue")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="decile (1 = highest scores)", ylabel="lift over base rate", title="Lift by decile")
    ax.set_xticks(report.lift["decile"].to_numpy())
    figures["lift"] = fig

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    cal = report.calibration
    top = float(max(cal["upper"].max() or 0.0, cal["p_mean"].max() or 0.0, 0.05))  # type: ignore[arg-type]
    ax.plot([0, top], [0, top], color="grey", lw=0.8, label="perfect")
    pm = cal["p_mean"].to_numpy()
    obs = cal["observed"].to_numpy()
    err = np.vstack([obs - cal["lower"].to_numpy(), cal["upper"].to_numpy() - obs])
    ece = report.metrics.get("ece", float("nan"))
    ax.errorbar(pm, obs, yerr=err, marker="o", capsize=3, label=f"model (ECE {ece:.3f})")
    ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate", title="Calibration (equal-mass bins)")
    ax.legend(loc="upper left")
    figures["calibration"] = fig
    return figures
