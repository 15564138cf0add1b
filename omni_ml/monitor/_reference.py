"""Build the training reference of a fitted campaign model (called at the end of ``CampaignModel.fit``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from omni_ml.monitor._events import input_reference
from omni_ml.monitor._profile import (
    QUANTILES,
    BinCounter,
    FeatureProfile,
    Reference,
    drift_index,
    monitored_columns,
    profile_features,
)

__all__ = ["N_DECILES", "deciles", "natural_variation", "ranking_scores", "training_reference"]

N_DECILES = 10  # propensity deciles of the campaign file and the reference
_ROWS_PER_CUTOFF = 20_000


def natural_variation(profiles: tuple[FeatureProfile, ...], ts: Any, *, seed: int = 0) -> tuple[FeatureProfile, ...]:
    """Set each profile's month-to-month movement: the largest PSI / null-share change between consecutive cutoffs.

    Each training cutoff's rows (at most 20,000, a seeded sample) are binned on the reference bins;
    consecutive cutoffs are compared as a scoring run is compared with training.
    """
    cutoffs = ts.keys["cutoff"]
    order = sorted(cutoffs.unique().to_list())
    if len(order) < 2:
        return profiles
    rng = np.random.default_rng(seed)
    shares = []
    for cut in order:
        rows = np.flatnonzero((cutoffs == cut).to_numpy())
        if rows.size > _ROWS_PER_CUTOFF:
            rows = np.sort(rng.choice(rows, size=_ROWS_PER_CUTOFF, replace=False))
        counter = BinCounter(profiles)
        counter.add(ts.X[rows])
        shares.append(counter.shares())
    out = []
    for prof in profiles:
        moves, null_moves = [0.0], [0.0]
        for before, after in zip(shares, shares[1:], strict=False):
            moves.append(drift_index(prof, before[prof.name], after[prof.name]))
            null_moves.append(abs(after[prof.name][1] - before[prof.name][1]))
        out.append(dataclasses.replace(prof, natural_psi=float(max(moves)), natural_null_change=float(max(null_moves))))
    return tuple(out)


def ranking_scores(propensity_model: Any, X: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The raw ranking score (log-odds when the model has ``predict_raw``) and the calibrated propensity.

    Deciles rank the raw score: it orders customers as the calibrated propensity does (the map is monotone)
    and almost never ties, whereas an isotonic map is a step function whose thousands of equal
    probabilities would leave whole deciles empty against fixed edges. A model without ``predict_raw`` and
    ``proba_from_raw`` ranks by its probability.
    """
    if hasattr(propensity_model, "predict_raw") and hasattr(propensity_model, "proba_from_raw"):
        raw = np.asarray(propensity_model.predict_raw(X), dtype=np.float64)
        proba = np.asarray(propensity_model.proba_from_raw(raw), dtype=np.float64)
        return raw, proba
    proba = np.asarray(propensity_model.predict_proba(X)[:, 1], dtype=np.float64)
    return proba, proba


def deciles(raw: np.ndarray, edges: Any) -> np.ndarray:
    """Decile 1 (highest) .. 10 of each raw score against fixed ascending edges (as the campaign file)."""
    return (N_DECILES - np.searchsorted(np.asarray(edges, dtype=np.float64), raw, side="right")).astype(np.int64)


def training_reference(model: Any, hist: Any, ts: Any) -> Reference:
    """Describe the population a campaign model was fitted on, for later scoring runs to be compared with.

    Parameters
    ----------
    model
        The fitted :class:`~omni_ml.campaign.CampaignModel` (``as_of_``, ``feature_set_``,
        ``propensity_``, ``decile_edges_``, ``horizon_days_`` set).
    hist
        The resolved histories the model was fitted on (rows before ``model.as_of_``).
    ts
        The propensity training set (its latest cutoff gives the label rate).

    Returns
    -------
    Reference
        Per-feature profiles of every customer's features as of the training date (the population
        a scoring run a few weeks later resembles most), the share per fixed decile, propensity
        quantiles, the label rate and the input summaries of the windows of ``horizon_days`` ending at
        each training cutoff and at the training date. Aggregates only: no identifier and no per-customer row.
    """
    from omni_ml.features import build_features

    moment: dt.datetime = model.as_of_
    table = build_features(hist, moment, feature_set=model.feature_set_)
    X = table.drop("customer_id", "cutoff")
    columns, excluded = monitored_columns(model.feature_set_, X.columns)
    raw, proba = ranking_scores(model.propensity_, X) if X.height else (np.zeros(0), np.zeros(0))
    occupancy = np.bincount(deciles(raw, model.decile_edges_) - 1, minlength=N_DECILES)
    latest = ts.keys["cutoff"] == ts.keys["cutoff"].max()
    labels = np.asarray(ts.y)[latest.to_numpy()]
    profiles = natural_variation(profile_features(X, model.feature_set_, columns), ts)
    ends = [*ts.keys["cutoff"].unique().to_list(), moment]
    inputs = input_reference(hist, ends, int(model.horizon_days_))
    return Reference(
        as_of=moment,
        rows=int(X.height),
        features=profiles,
        decile_shares=tuple(float(c / max(X.height, 1)) for c in occupancy),
        propensity_quantiles=tuple(float(q) for q in np.quantile(proba, QUANTILES)) if proba.size else (),
        mean_propensity=float(proba.mean()) if proba.size else float("nan"),
        label_rate=float(labels.mean()) if labels.size else float("nan"),
        label_rows=int(labels.size),
        horizon_days=int(model.horizon_days_),
        excluded=tuple(excluded),
        inputs=inputs,
        **_oot_lift(getattr(model, "report_", None)),
    )


def _oot_lift(report: Any) -> dict[str, float]:
    """Realised and expected top-decile lift of the back-test report (its lift table and scores)."""
    lift, scores = getattr(report, "lift", None), getattr(report, "scores", None)
    if lift is None or scores is None or lift.height == 0 or "score" not in scores.columns:
        return {}
    top = lift.row(0, named=True)
    mean_p = float(scores["score"].mean())  # type: ignore[arg-type]
    if not mean_p > 0 or not np.isfinite(top["lift"]):
        return {}
    return {
        "oot_lift": float(top["lift"]),
        "oot_expected_lift": float(top["p_mean"]) / mean_p,
        "oot_top_buyers": float(top["positives"]),
    }
