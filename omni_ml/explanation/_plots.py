"""Global views of SHAP values: mean |SHAP| per feature and per family, beeswarm, waterfall, bar.

Plots are drawn headless (no ``plt.show``), returned as matplotlib Figures and optionally saved to PNG
(e.g. as MLflow artifacts). The beeswarm and waterfall are shap's own plots fed with our exact values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from omni_ml.explanation._frames import feature_matrix
from omni_ml.explanation._reasons import (
    FeatureDescriber,
    _family_of,
    _resolve_feature_set,
    explainer_for,
    family_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["global_importance", "plot_beeswarm", "plot_importance", "plot_waterfall"]


def _values(model: Any, X: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[str], float]:
    ts = explainer_for(model)
    x = feature_matrix(X, ts.feature_names)
    return ts.shap_values(x), x, ts.feature_names, ts.expected_value


def global_importance(
    model: Any,
    X: Any,
    *,
    feature_set: FeatureDescriber | None = None,
    by: Literal["feature", "family"] = "feature",
) -> pl.DataFrame:
    """Mean absolute SHAP value (log-odds) per feature or per feature family, largest first.

    Parameters
    ----------
    model
        A fitted ``PropensityModel``, LightGBM model or ``lightgbm.Booster``.
    X
        Rows to average over (e.g. a validation set or the scored customer base).
    feature_set
        Gives each feature's family and description; defaults to ``model.feature_set_``.
    by
        ``"feature"``: one row per feature with its family and description; ``"family"``: the SHAP
        values of a family's features are summed per row first, then averaged in absolute value.

    Returns
    -------
    polars.DataFrame
        ``feature`` (or ``family``), ``mean_abs_shap``, ``mean_shap``, ``share`` (of the total mean
        |SHAP|), and ``family``/``description`` (by feature) or ``label``/``n_features`` (by family).

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3))
    >>> booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, (X[:, 1] > 0).astype(int)), 10)
    >>> global_importance(booster, X)["feature"][0]
    'Column_1'
    """
    feature_set = _resolve_feature_set(model, feature_set)
    phi, _, names, _ = _values(model, X)
    families = [_family_of(feature_set, n) for n in names]
    if by == "family":
        fams = list(dict.fromkeys(families))
        summed = np.column_stack([phi[:, [f == fam for f in families]].sum(axis=1) for fam in fams])
        mean_abs = np.abs(summed).mean(axis=0) if phi.shape[0] else np.zeros(len(fams))
        frame = pl.DataFrame(
            {
                "family": fams,
                "label": [family_label(f) for f in fams],
                "n_features": [families.count(f) for f in fams],
                "mean_abs_shap": mean_abs,
                "mean_shap": summed.mean(axis=0) if phi.shape[0] else np.zeros(len(fams)),
            }
        )
    else:
        descriptions = [_describe(feature_set, n) for n in names]
        frame = pl.DataFrame(
            {
                "feature": names,
                "family": families,
                "description": descriptions,
                "mean_abs_shap": np.abs(phi).mean(axis=0) if phi.shape[0] else np.zeros(len(names)),
                "mean_shap": phi.mean(axis=0) if phi.shape[0] else np.zeros(len(names)),
            }
        )
    total = float(frame["mean_abs_shap"].sum())
    frame = frame.with_columns(share=pl.col("mean_abs_shap") / total if total > 0 else pl.lit(0.0))
    key = "family" if by == "family" else "feature"
    return frame.sort(["mean_abs_shap", key], descending=[True, False])


def _describe(feature_set: FeatureDescriber | None, name: str) -> str:
    if feature_set is None:
        return name
    try:
        return feature_set.describe(name)
    except KeyError:
        return name


def _explanation(model: Any, X: Any, feature_set: FeatureDescriber | None) -> Any:
    import shap

    phi, x, names, base = _values(model, X)
    return shap.Explanation(
        values=phi,
        base_values=np.full(phi.shape[0], base),
        data=x,
        feature_names=names,
    )


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _new_figure() -> Any:
    # Leave the backend alone: notebooks keep their inline backend (switching to Agg and closing
    # every figure broke plt.show() after an explain plot), and matplotlib already falls back to
    # Agg without a display. shap draws on the current figure, so its callers open a fresh one.
    import matplotlib.pyplot as plt

    return plt


def _wrap(text: str, width: int = 48) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _pp_values(
    model: Any, X: Any, feature_set: FeatureDescriber | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[str], npt.NDArray[np.float64], str]:
    """Contributions in percentage points against the moment's baseline, as-of-constant features left out.

    Returns ``(values, data, names, base, unit)``; a model without probabilities stays in log-odds.
    """
    from omni_ml.explanation._families import as_of_constant
    from omni_ml.explanation._reasons import _proba_fn
    from omni_ml.explanation._said import _slope, moment_shap

    ts = explainer_for(model)
    names = ts.feature_names
    x = feature_matrix(X, names)
    constant = as_of_constant(feature_set, names)
    phi, base = moment_shap(model, x, names, constant)
    keep = [j for j, n in enumerate(names) if n not in constant]
    try:
        proba = _proba_fn(model, "probability")
    except ValueError:
        proba = None
    if proba is None:
        return phi[:, keep], x[:, keep], [names[j] for j in keep], base, "log-odds"
    raw = phi.sum(axis=1) + base
    p = np.asarray(proba(raw), dtype=np.float64)
    p0 = np.asarray(proba(base), dtype=np.float64)
    slope = _slope(proba, raw, base, p, p0)
    return 100.0 * phi[:, keep] * slope[:, None], x[:, keep], [names[j] for j in keep], 100.0 * p0, "pp"


def plot_beeswarm(
    model: Any,
    X: Any,
    *,
    feature_set: FeatureDescriber | None = None,
    max_display: int = 15,
    path: str | Path | None = None,
) -> Figure:
    """SHAP beeswarm in percentage points of purchase probability, one row per feature description.

    One dot per customer and feature, coloured by the feature value; contributions are taken against the
    baseline of each row's moment (the calendar and other as-of-constant features are held, so they
    are left out: see :mod:`omni_ml.explanation._said`) and scaled to percentage points like the campaign's
    reasons. Saved to ``path`` if given.

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, (X[:, 0] > 0).astype(int)), 5)
    >>> fig = plot_beeswarm(booster, X)
    >>> len(fig.axes) >= 1
    True
    """
    import shap

    plt = _new_figure()
    feature_set = _resolve_feature_set(model, feature_set)
    values, data, names, base, unit = _pp_values(model, X, feature_set)
    labels = [_wrap(_describe(feature_set, n)) for n in names]
    explanation = shap.Explanation(values=values, base_values=base, data=data, feature_names=labels)
    plt.figure()
    shap.plots.beeswarm(explanation, max_display=max_display, show=False, plot_size=(11, 0.5 * max_display + 1.5))
    fig = plt.gcf()
    words = "percentage points of purchase probability" if unit == "pp" else "log-odds"
    fig.axes[0].set_xlabel(f"contribution ({words}) against the baseline of the scoring moment")
    fig.suptitle("What moves the purchase probability, customer by customer")
    return _finish(fig, path)


def plot_waterfall(
    model: Any,
    X: Any,
    *,
    row: int = 0,
    feature_set: FeatureDescriber | None = None,
    max_display: int = 10,
    path: str | Path | None = None,
) -> Figure:
    """One customer's propensity from the moment's baseline, one bar per reason family, in percentage points.

    The bars are the reasons of :func:`omni_ml.explanation.explain_reasons` (each family's contributions summed,
    labelled with its most telling feature's value in words); the smallest families are merged by shap
    into one bar. They add up from the baseline (``E[f(X)]``) to the customer's propensity
    (``f(x)``), both in percent. Saved to ``path`` if given.
    """
    import shap

    from omni_ml.explanation._families import reason_family_label
    from omni_ml.explanation._said import explain_reasons

    plt = _new_figure()
    feature_set = _resolve_feature_set(model, feature_set)
    names = explainer_for(model).feature_names
    x = feature_matrix(X, names)
    if not 0 <= row < x.shape[0]:
        msg = f"row {row} is out of range for X with {x.shape[0]} rows."
        raise IndexError(msg)
    one = x[row : row + 1]
    why = explain_reasons(model, one, feature_set=feature_set, top_k=len(names))
    k = sum(1 for c in why.columns if c.startswith("reason_pp_"))
    values, labels = [], []
    for i in range(1, k + 1):
        pp = why[f"reason_pp_{i}"][0]
        if pp is None:
            break
        text = str(why[f"reason_{i}"][0]).rsplit(" (", 1)[0]
        values.append(float(pp))
        labels.append(_wrap(f"{reason_family_label(str(why[f'reason_family_{i}'][0]))}: {text}"))
    if abs(float(why["reason_other_pp"][0])) > 1e-12:
        values.append(float(why["reason_other_pp"][0]))
        labels.append("other factors")
    explanation = shap.Explanation(
        values=np.asarray(values, dtype=np.float64),
        base_values=100.0 * float(why["reason_baseline"][0]),
        data=None,
        feature_names=labels,
    )
    plt.figure()
    shap.plots.waterfall(explanation, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.set_size_inches(11, 0.55 * min(max_display, len(values) + 1) + 1.8)
    fig.suptitle("Purchase probability (%): the moment's baseline, then one bar per reason family")
    return _finish(fig, path)


def plot_importance(
    model: Any,
    X: Any,
    *,
    feature_set: FeatureDescriber | None = None,
    by: Literal["feature", "family"] = "family",
    max_display: int = 15,
    path: str | Path | None = None,
) -> Figure:
    """Horizontal bar chart of mean |SHAP| per family (default) or feature, saved if ``path``."""
    plt = _new_figure()
    table = global_importance(model, X, feature_set=feature_set, by=by).head(max_display)
    labels = table["label" if by == "family" else "feature"].to_list()[::-1]
    values = table["mean_abs_shap"].to_numpy()[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.2))
    ax.barh(labels, values, color="#1f77b4")
    ax.set_xlabel("mean |SHAP| (log-odds)")
    ax.set_title(f"Global importance by {by}")
    return _finish(fig, path)
