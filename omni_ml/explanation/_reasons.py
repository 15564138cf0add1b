"""Reason codes in words: top-k signed SHAP contributions per customer, in log-odds and probability.

Log-odds contributions are exact (TreeSHAP of the raw score). Probability contributions are a
documented approximation: a model's probability is a non-linear (and, when calibrated, monotone
step-wise) function ``p = g(raw)`` of the raw score, so Shapley values do not carry over exactly. We
scale each log-odds contribution by the secant slope of ``g`` between the base and the row::

    prob_i = phi_i * (g(raw) - g(base)) / (raw - base)

so that the probability contributions of a row add up exactly to ``p(x) - p(base)`` and keep the
signs and the ranking of the log-odds contributions (``g`` is non-decreasing). When ``raw == base``
to 1e-9 the slope is the central difference of ``g`` at ``raw``. This is the "proportional
distribution" of the probability change over the features (as in Lundberg's ``link="logit"``
discussions); it is not the Shapley value of the probability itself.

When ``g`` is flat between the base and the row (a step calibration map such as plain isotonic
regression puts both on one step, so ``p == p0``), every probability contribution is exactly 0 although
the features did move the score: such a reason shows its log-odds contribution instead of "+0 pp".
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import polars as pl

from omni_ml.exceptions import SchemaError
from omni_ml.explanation._frames import feature_matrix
from omni_ml.explanation._treeshap import TreeShap, _model_booster

__all__ = ["FeatureDescriber", "explain", "explain_difference", "family_label"]

Units = Literal["probability", "log_odds"]
Direction = Literal["both", "positive", "negative"]
By = Literal["feature", "family"]

# Words for the feature families of omni_ml.features (FeatureSet.families()).
_FAMILY_LABELS = {
    "rfm": "purchase recency, frequency and spend",
    "rfm_channel": "purchases by channel",
    "rfm_category": "purchases by category",
    "browsing": "browsing",
    "cart": "cart activity",
    "engagement": "message engagement",
    "contact_pressure": "contact pressure",
    "interpurchase": "purchase rhythm",
    "returns_service": "returns and service",
    "tenure": "tenure",
    "consent": "consent",
    "customer": "customer attributes",
    "time_of_year": "time of year",
}


@runtime_checkable
class FeatureDescriber(Protocol):
    """What explanations need from a feature definition (``omni_ml.features.FeatureSet`` has it)."""

    def render(self, name: str, value: Any) -> str:
        """The value in words, e.g. ``"3 web visits in the last 7 days"``."""
        ...

    def family_of(self, name: str) -> str:
        """The feature's family, e.g. ``"engagement"``."""
        ...

    def describe(self, name: str) -> str:
        """One-line description of the feature."""
        ...


def family_label(family: str) -> str:
    """Human words for a feature family key (``"engagement"`` -> ``"message engagement"``).

    Examples
    --------
    >>> family_label("rfm")
    'purchase recency, frequency and spend'
    >>> family_label("my_own_family")
    'my own family'
    """
    return _FAMILY_LABELS.get(family, family.replace("_", " "))


# One TreeShap per booster: building the tables costs ~1 s for a 300-tree model.
_EXPLAINERS: weakref.WeakKeyDictionary[Any, TreeShap] = weakref.WeakKeyDictionary()


def explainer_for(model: Any) -> TreeShap:
    """The cached :class:`TreeShap` of ``model``'s booster (built on first use)."""
    booster = _model_booster(model)
    ts = _EXPLAINERS.get(booster)
    if ts is None:
        ts = TreeShap(booster)
        _EXPLAINERS[booster] = ts
    return ts


def _proba_fn(model: Any, units: Units) -> Any:
    fn = getattr(model, "proba_from_raw", None)
    if callable(fn):
        return fn
    booster = _model_booster(model)
    objective = str(booster.dump_model(num_iteration=1).get("objective", ""))
    if objective.startswith(("binary", "cross_entropy")):
        return lambda raw: 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=np.float64)))
    if units == "probability":
        msg = (
            f"units='probability' needs a probability model, but this booster's objective is {objective!r} "
            "and the model has no proba_from_raw. Hint: pass units='log_odds'."
        )
        raise ValueError(msg)
    return None


def _probability_parts(
    proba_a: Any,
    proba_b: Any,
    raw: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """``p = proba_a(raw)``, ``p0 = proba_b(base)`` and the secant slope ``(p - p0) / (raw - base)``.

    Where ``raw`` and ``base`` meet (within 1e-9) the slope is the central difference of ``proba_a``.
    """
    if proba_a is None or proba_b is None:
        return None
    p = np.asarray(proba_a(raw), dtype=np.float64)
    p0 = np.asarray(proba_b(base), dtype=np.float64)
    delta = raw - base
    close = np.abs(delta) <= 1e-9
    slope = np.empty_like(raw)
    far = ~close
    slope[far] = (p[far] - p0[far]) / delta[far]
    if close.any():
        h = 1e-4
        up = np.asarray(proba_a(raw[close] + h), dtype=np.float64)
        down = np.asarray(proba_a(raw[close] - h), dtype=np.float64)
        slope[close] = (up - down) / (2 * h)
    return p, p0, slope


def _keys_frame(X: Any, keys: pl.DataFrame | Sequence[Any] | None, n: int) -> pl.DataFrame:
    if keys is None:
        if isinstance(X, pl.DataFrame) and "customer_id" in X.columns:
            cols = [c for c in ("customer_id", "cutoff") if c in X.columns]
            return X.select(cols)
        return pl.DataFrame({"row": pl.int_range(n, eager=True, dtype=pl.UInt32)})
    frame = keys if isinstance(keys, pl.DataFrame) else pl.DataFrame({"customer_id": list(keys)})
    if frame.height != n:
        msg = (
            f"keys has {frame.height:,} rows but X has {n:,}. Hint: pass the keys (customer_id, cutoff) of the "
            "same rows, in the same order, e.g. TrainingSet.keys."
        )
        raise SchemaError(msg)
    return frame


def _render(
    feature_set: FeatureDescriber | None,
    names: list[str],
    feat_idx: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> list[str]:
    """Render (feature, value) pairs, each distinct pair once."""
    cache: dict[tuple[int, float | None], str] = {}
    out: list[str] = []
    for j, v in zip(feat_idx.tolist(), values.tolist(), strict=True):
        key = (j, v if v == v else None)  # every NaN is one key
        text = cache.get(key)
        if text is None:
            text = _render_one(feature_set, names[j], v)
            cache[key] = text
        out.append(text)
    return out


def _render_one(feature_set: FeatureDescriber | None, name: str, value: float) -> str:
    if feature_set is not None:
        if getattr(feature_set, "features", None) is not None:
            from omni_ml.explanation._families import feature_index

            if name not in feature_index(feature_set):
                return _plain(name, value)  # a model feature the set does not know (e.g. a treatment column)
        try:
            return feature_set.render(name, value)
        except KeyError:
            pass  # a model feature the feature set does not know (e.g. a treatment column): plain form
    return _plain(name, value)


def _plain(name: str, value: float) -> str:
    if value != value:
        return f"{name} missing"
    shown = str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return f"{name} = {shown}"


def _family_of(feature_set: FeatureDescriber | None, name: str) -> str:
    if feature_set is None:
        return name
    try:
        return feature_set.family_of(name)
    except KeyError:
        return name


def _format_number(value: float, units: Units) -> str:
    """Format a contribution: probability as percentage points to two significant digits.

    ``+0.21 pp`` or ``-4.5 pp``: a fixed three decimals printed most reasons of low-propensity
    customers as ``+0.000``.
    """
    if units == "probability":
        return np.format_float_positional(value * 100, precision=2, fractional=False, sign=True, trim="-") + " pp"
    return f"{value:+.2f} log-odds"


def _format_reason_number(prob_number: float, log_odds: float, units: Units) -> str:
    """The number of one reason; a zero probability change of a non-zero contribution shows its log-odds."""
    if units == "probability" and prob_number == 0.0 and log_odds != 0.0:
        return np.format_float_positional(log_odds, precision=2, fractional=False, sign=True, trim="-") + " log-odds"
    return _format_number(prob_number, units)


def _reason_frame(
    *,
    phi: npt.NDArray[np.float64],
    raw: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
    names: list[str],
    key_frame: pl.DataFrame,
    prob: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None,
    feature_set: FeatureDescriber | None,
    top_k: int,
    units: Units,
    by: By,
    direction: Direction,
    offset: float | None = None,
) -> pl.DataFrame:
    n = phi.shape[0]
    if top_k < 1:
        msg = f"top_k must be at least 1, got {top_k}."
        raise ValueError(msg)
    if prob is not None:
        p, p0, slope = prob
    # Units in which to rank and group
    if by == "family":
        families = [_family_of(feature_set, nm) for nm in names]
        labels = list(dict.fromkeys(families))
        member = np.array([labels.index(f) for f in families], dtype=np.int64)
        groups = np.zeros((phi.shape[1], len(labels)))
        groups[np.arange(phi.shape[1]), member] = 1.0
        units_phi = phi @ groups
    else:
        labels = names
        units_phi = phi
    rank_score = units_phi.copy()
    if direction == "positive":
        rank_score[rank_score < 0] = 0.0
    elif direction == "negative":
        rank_score[rank_score > 0] = 0.0
    k = min(top_k, units_phi.shape[1])
    order = np.argsort(-np.abs(rank_score), axis=1, kind="stable")[:, :k]
    rows = np.arange(n)[:, None]
    chosen = units_phi[rows, order]
    valid = rank_score[rows, order] != 0.0

    # The feature whose value is shown: itself, or the family member with the largest |phi| of that sign
    if by == "family":
        shown_feature = np.empty((n, k), dtype=np.int64)
        for slot in range(k):
            in_group = member[None, :] == order[:, slot][:, None]
            score = np.where(in_group, np.abs(phi), -1.0)
            shown_feature[:, slot] = np.argmax(score, axis=1)
    else:
        shown_feature = order

    columns: dict[str, Any] = {}
    columns["score_log_odds"] = raw
    columns["base_log_odds"] = base
    if prob is not None:
        columns["probability"] = p
        columns["base_probability"] = p0
    if offset is not None:
        columns["offset_log_odds"] = np.full(n, offset)
        if prob is not None:
            columns["offset_probability"] = offset * slope
    texts = _render(feature_set, names, shown_feature.reshape(-1), x[rows, shown_feature].reshape(-1))
    text_arr = np.array(texts, dtype=object).reshape(n, k)
    for slot in range(k):
        contrib_lo = chosen[:, slot]
        number = contrib_lo * slope if (units == "probability" and prob is not None) else contrib_lo
        reasons: list[str | None] = []
        for i in range(n):
            if not valid[i, slot]:
                reasons.append(None)
                continue
            body = text_arr[i, slot]
            if by == "family":
                body = f"{family_label(labels[order[i, slot]])}: {body}"
            reasons.append(f"{body} ({_format_reason_number(float(number[i]), float(contrib_lo[i]), units)})")
        columns[f"reason_{slot + 1}"] = pl.Series(reasons, dtype=pl.String)
    for slot in range(k):
        label = [labels[j] for j in order[:, slot].tolist()]
        columns[f"{by}_{slot + 1}"] = pl.Series(label, dtype=pl.String).zip_with(
            pl.Series(valid[:, slot]), pl.Series([None] * n, dtype=pl.String)
        )
        lo = np.where(valid[:, slot], chosen[:, slot], np.nan)
        columns[f"log_odds_{slot + 1}"] = pl.Series(lo).fill_nan(None)
        if prob is not None:
            columns[f"probability_{slot + 1}"] = pl.Series(lo * slope).fill_nan(None)
    return pl.concat([key_frame, pl.DataFrame(columns)], how="horizontal")


def _resolve_feature_set(model: Any, feature_set: FeatureDescriber | None) -> FeatureDescriber | None:
    if feature_set is not None:
        return feature_set
    fs = getattr(model, "feature_set_", None)
    return fs if isinstance(fs, FeatureDescriber) else None


def explain(
    model: Any,
    X: Any,
    *,
    feature_set: FeatureDescriber | None = None,
    top_k: int = 3,
    keys: pl.DataFrame | Sequence[Any] | None = None,
    units: Units = "probability",
    by: By = "feature",
    direction: Direction = "both",
) -> pl.DataFrame:
    """Top-k reason codes per row, in words, with signed contributions in log-odds and probability.

    Parameters
    ----------
    model
        A fitted ``PropensityModel`` (uses ``booster_``, ``proba_from_raw`` and ``feature_set_``), an
        ``LGBMClassifier`` or a ``lightgbm.Booster`` (probability = sigmoid of the raw score).
    X
        Feature rows (polars/pandas DataFrame matched by column name, or an array in model order).
    feature_set
        Renders values in words (``render``, ``family_of``); defaults to ``model.feature_set_``.
        Without one, reasons read ``"<name> = <value>"``.
    top_k
        Number of reasons per row, ranked by absolute contribution.
    keys
        Row identifiers to put first: a DataFrame (e.g. ``TrainingSet.keys``: customer_id, cutoff) or
        a sequence of customer ids. Default: ``customer_id``/``cutoff`` columns of ``X`` if present,
        else a ``row`` index.
    units
        Units of the number shown in the reason text; both are always returned as columns.
    by
        ``"feature"`` or ``"family"`` (contributions summed over each feature family; the text shows
        the family's strongest feature).
    direction
        ``"both"`` (default), or only reasons that raise (``"positive"``) / lower (``"negative"``) the score.

    Returns
    -------
    polars.DataFrame
        Keys, ``score_log_odds``, ``base_log_odds``, ``probability``, ``base_probability`` (when the model
        has probabilities), ``reason_1..k`` (text; null when fewer than k non-zero reasons),
        ``{by}_1..k`` (name), ``log_odds_1..k`` and ``probability_1..k``. Over all features (not only the
        top k) contributions add up to ``score_log_odds - base_log_odds`` and
        ``probability - base_probability``; see the module docstring for the probability approximation.

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> X = pl.DataFrame({"visits_7d": rng.poisson(2, 300).astype(float), "age": rng.normal(40, 9, 300)})
    >>> y = (X["visits_7d"].to_numpy() + rng.normal(size=300) > 2).astype(int)
    >>> booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(X, y), 20)
    >>> out = explain(booster, X.head(2), top_k=1, keys=["ann", "bob"])
    >>> out.columns[:2]
    ['customer_id', 'score_log_odds']
    >>> out["reason_1"][1].startswith("visits_7d = 0 (-")
    True
    """
    feature_set = _resolve_feature_set(model, feature_set)
    ts = explainer_for(model)
    x = feature_matrix(X, ts.feature_names)
    phi = ts.shap_values(x)
    base = np.full(x.shape[0], ts.expected_value)
    raw = phi.sum(axis=1) + base
    proba = _proba_fn(model, units)
    return _reason_frame(
        phi=phi,
        raw=raw,
        base=base,
        x=x,
        names=ts.feature_names,
        key_frame=_keys_frame(X, keys, x.shape[0]),
        prob=_probability_parts(proba, proba, raw, base),
        feature_set=feature_set,
        top_k=top_k,
        units=units,
        by=by,
        direction=direction,
    )


def explain_difference(
    model: Any,
    X_a: Any,
    X_b: Any,
    *,
    model_b: Any | None = None,
    feature_set: FeatureDescriber | None = None,
    top_k: int = 3,
    keys: pl.DataFrame | Sequence[Any] | None = None,
    units: Units = "probability",
    by: By = "feature",
    direction: Direction = "both",
) -> pl.DataFrame:
    """Reasons for the difference of two model outputs, e.g. "contact on email" vs "no contact".

    The contributions are ``shap(model, X_a) - shap(model_b or model, X_b)``; they add up exactly to
    ``raw(X_a) - raw(X_b)`` (additivity of SHAP values). Typical use, an S-learner: ``X_a`` and ``X_b``
    are the same customers with the treatment columns set to channel ``c`` and to no contact; a
    T-learner passes the two arms' boosters as ``model`` and ``model_b`` with the same rows.

    Parameters
    ----------
    model, model_b
        Model of ``X_a`` and (default: the same) model of ``X_b``; same kinds as for :func:`explain`.
    X_a, X_b
        Feature rows of the same customers, in the same order.
    feature_set, top_k, keys, units, by, direction
        As for :func:`explain`. Reason texts show the values of ``X_a``.

    Returns
    -------
    polars.DataFrame
        Same columns as :func:`explain`, with ``score_*`` the output for ``X_a`` and ``base_*`` the
        output for ``X_b``, plus ``offset_log_odds``/``offset_probability``: the part of the difference
        due to the two models' different base values (0 when ``model_b`` is not given). Over all features,
        contributions + offset add up to ``score_log_odds - base_log_odds`` and to
        ``probability - base_probability`` (with ``p`` from each side's own model).

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np, polars as pl
    >>> rng = np.random.default_rng(1)
    >>> X = pl.DataFrame({"email": rng.integers(0, 2, 400).astype(float), "opens_30d": rng.poisson(1, 400) * 1.0})
    >>> y = (X["email"].to_numpy() * X["opens_30d"].to_numpy() + rng.normal(size=400) > 1).astype(int)
    >>> booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(X, y), 30)
    >>> rows = X.head(3)
    >>> diff = explain_difference(booster, rows.with_columns(email=pl.lit(1.0)), rows.with_columns(email=pl.lit(0.0)))
    >>> bool(np.allclose(diff["score_log_odds"] - diff["base_log_odds"],
    ...      booster.predict(rows.with_columns(email=pl.lit(1.0)), raw_score=True)
    ...      - booster.predict(rows.with_columns(email=pl.lit(0.0)), raw_score=True)))
    True
    """
    feature_set = _resolve_feature_set(model, feature_set)
    ts_a = explainer_for(model)
    ts_b = explainer_for(model_b) if model_b is not None else ts_a
    if ts_b.feature_names != ts_a.feature_names:
        msg = (
            "model and model_b have different features "
            f"({len(ts_a.feature_names)} vs {len(ts_b.feature_names)} columns). "
            "Hint: explain_difference compares two models over the same feature columns."
        )
        raise SchemaError(msg)
    xa = feature_matrix(X_a, ts_a.feature_names)
    xb = feature_matrix(X_b, ts_b.feature_names)
    if xa.shape != xb.shape:
        msg = f"X_a has {xa.shape[0]:,} rows and X_b {xb.shape[0]:,}. Hint: pass the same customers, in the same order."
        raise SchemaError(msg)
    phi_a = ts_a.shap_values(xa)
    phi_b = ts_b.shap_values(xb)
    raw_a = phi_a.sum(axis=1) + ts_a.expected_value
    raw_b = phi_b.sum(axis=1) + ts_b.expected_value
    proba_a = _proba_fn(model, units)
    proba_b = _proba_fn(model_b, units) if model_b is not None else proba_a
    return _reason_frame(
        phi=phi_a - phi_b,
        raw=raw_a,
        base=raw_b,
        offset=ts_a.expected_value - ts_b.expected_value,
        x=xa,
        names=ts_a.feature_names,
        key_frame=_keys_frame(X_a, keys, xa.shape[0]),
        prob=_probability_parts(proba_a, proba_b, raw_a, raw_b),
        feature_set=feature_set,
        top_k=top_k,
        units=units,
        by=by,
        direction=direction,
    )
