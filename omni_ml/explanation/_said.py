"""Reasons a marketer can act on: one per family of behaviour, against the moment's baseline, in pp.

:func:`explain_reasons` answers "why is this customer likely (or not) to buy?" the way a person would
write it: "4 days since the last purchase (+3.1 pp)", "opened 0.40 email opens per contact ...".

The baseline: what everyone scored at one moment shares
--------------------------------------------------------
Features that depend on the cutoff only (the season, the day of the year: :func:`as_of_constant`) have
one value for every customer scored at a moment. A plain SHAP explanation against the training mean
makes them the top reason of almost every row ("day 1 of the year +2 pp"): it explains the season, not
the customer. Here the model is first *conditioned* on the moment (``TreeShap(fixed=...)``): every split
on an as-of-constant feature follows the branch the moment's value takes, which leaves the predictions
of the moment unchanged and gives those features exactly zero attribution. The baseline is then the
conditioned model's expected score, the covers-weighted mean over the training customers given the
moment's season, and each customer's contributions describe how they differ from that typical customer
*at this time of year*.

Why not the mean prediction of the scored population? The campaign table is a pure function of each
customer's own rows: scored alone, in any chunk or on Spark, a customer gets the same bytes. A baseline
taken from the batch being scored would change with the batch. Interventional SHAP with a stored
background sample would need a background per moment and costs |background| times more per row.

Units: percentage points of purchase probability
-------------------------------------------------
Contributions are exact in log-odds; each is scaled by the secant slope of the calibrated propensity
between the baseline and the row (as in :mod:`omni_ml.explanation._reasons`), so that for every row::

    sum(reason_pp) + other_pp == 100 * (propensity - reason_baseline)        (to rounding, 1e-9)

where ``reason_baseline`` is the propensity of the baseline score and ``other_pp`` ("other factors")
holds every family not shown.

Families, missing data and codes
--------------------------------
SHAP values are summed per reason family (:mod:`omni_ml.explanation._families`); the text shows the
family's most telling feature (the largest contribution of the family's sign), so the k slots never
repeat a family. A feature with no value ("no purchase yet") is said as what we know about the
customer, and its family ranks below behavioural families of similar size (``missing_weight``).
Each reason carries a stable code (``RECENCY_SHORT``) and its signed contribution in pp as numbers.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from omni_ml.explanation._families import as_of_constant, codes_of, feature_index, reason_family
from omni_ml.explanation._frames import feature_matrix
from omni_ml.explanation._reasons import (
    FeatureDescriber,
    _family_of,
    _format_reason_number,
    _keys_frame,
    _proba_fn,
    _render_one,
    _resolve_feature_set,
    explainer_for,
)
from omni_ml.explanation._treeshap import TreeShap, _model_booster

__all__ = ["MISSING_WEIGHT", "explain_reasons", "moment_shap", "reference_medians"]

#: A family whose most telling feature has no value ranks as if its contribution were this share of its size.
MISSING_WEIGHT = 0.5

# Conditioned explainers per booster and moment (building one costs about as much as TreeShap itself).
_CONDITIONED: weakref.WeakKeyDictionary[Any, dict[tuple[tuple[str, float], ...], TreeShap]] = (
    weakref.WeakKeyDictionary()
)
_MAX_MOMENTS = 8


def conditioned_explainer(model: Any, fixed: dict[str, float]) -> TreeShap:
    """The cached :class:`TreeShap` of ``model`` conditioned on ``fixed`` feature values."""
    if not fixed:
        return explainer_for(model)
    booster = _model_booster(model)
    per = _CONDITIONED.get(booster)
    if per is None:
        per = {}
        _CONDITIONED[booster] = per
    key = tuple(sorted((k, float(v)) for k, v in fixed.items()))
    ts = per.get(key)
    if ts is None:
        if len(per) >= _MAX_MOMENTS:
            per.pop(next(iter(per)))
        ts = TreeShap(booster, fixed=dict(key))
        per[key] = ts
    return ts


def moment_shap(
    model: Any, x: npt.NDArray[np.float64], names: list[str], constant: list[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """SHAP values (log-odds) and per-row baseline, the model conditioned on each row's ``constant`` features.

    Rows are grouped by their values of the as-of-constant features (one group when all rows were
    scored at one moment; one per cutoff for a stacked training set).
    """
    n = x.shape[0]
    idx = [names.index(c) for c in constant if c in names]
    if not idx or n == 0:
        ts = explainer_for(model)
        return ts.shap_values(x), np.full(n, ts.expected_value)
    values = x[:, idx]
    filled = np.nan_to_num(values, nan=np.inf)
    if (filled == filled[0]).all():  # the usual case: everyone scored at one moment
        groups, inverse = filled[:1], np.zeros(n, dtype=np.int64)
    else:
        groups, inverse = np.unique(filled, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    phi = np.empty((n, len(names)), dtype=np.float64)
    base = np.empty(n, dtype=np.float64)
    for g in range(groups.shape[0]):
        rows = np.flatnonzero(inverse == g)
        first = values[rows[0]]
        ts = conditioned_explainer(model, {names[j]: float(v) for j, v in zip(idx, first, strict=True)})
        phi[rows] = ts.shap_values(x[rows])
        base[rows] = ts.expected_value
    return phi, base


def reference_medians(X: pl.DataFrame) -> dict[str, float]:
    """Median of every numeric column over its non-null values: the reference levels of reason codes."""
    numeric = [c for c, t in X.schema.items() if t.is_numeric() or t == pl.Boolean]
    if not numeric or X.height == 0:
        return {}
    row = X.select(pl.col(c).cast(pl.Float64).median() for c in numeric).row(0)
    return {c: float(v) for c, v in zip(numeric, row, strict=True) if v is not None}


def _families_of(feature_set: FeatureDescriber | None, names: list[str], constant: list[str]) -> list[str | None]:
    out: list[str | None] = []
    for name in names:
        if name in constant:
            out.append(None)
            continue
        feature = feature_index(feature_set).get(name)
        family = feature.family if feature is not None else _family_of(feature_set, name)
        out.append(reason_family(name, family))
    return out


def _rounded(feature_set: FeatureDescriber | None, name: str, value: float) -> float:
    """``value`` rounded as its text shows it (so "1 day", not "1 days", for 0.6 days)."""
    feature = feature_index(feature_set).get(name)
    if feature is None:
        return value
    found = re.search(r"\.(\d+)f$", str(feature.fmt))
    return round(value, int(found.group(1))) if found else value


def _said(feature_set: FeatureDescriber | None, name: str, value: float, context: int) -> str:
    """The feature's value (already :func:`_rounded`) in words; a missing value said as what we know.

    ``context`` (missing values only): 1 no activity at all, 2 a new customer (first activity 90 days
    ago or less),
    3 a known customer, 4 no customer record (every customer attribute missing).
    """
    if value == value:
        return _render_one(feature_set, name, value)
    text = _render_one(feature_set, name, value)
    if name.startswith("attr_"):
        if context == 4:
            return "no customer record on file"
        return f"no {text.removesuffix(' unknown')} on file" if text.endswith(" unknown") else text
    if name in ("days_since_last_purchase", "days_since_last_event", "tenure_days", "days_since_first_purchase"):
        if context == 1:
            return "no activity recorded yet"
        if name != "days_since_last_event" and context == 2:
            return "new customer: no purchase yet"
    return text


def select_reasons(
    *,
    phi: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
    families: list[str | None],
    top_k: int,
    missing_weight: float = MISSING_WEIGHT,
    eligible: npt.NDArray[np.bool_] | None = None,
    direction: int = 0,
) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Family sums, and per row the top-k families and each one's most telling feature.

    Returns ``(labels, family_sum (n, F), order (n, k) family index, shown (n, k) feature index,
    valid (n, k))``. ``eligible`` (n, F) masks families a row may show; ``direction`` 1 keeps only
    positive family sums.
    """
    n, p = phi.shape
    labels = list(dict.fromkeys(f for f in families if f is not None))
    member = np.array([labels.index(f) if f is not None else -1 for f in families], dtype=np.int64)
    inside = member >= 0
    missing_x = np.isnan(x)
    # the family sums, added in a fixed order per row (a BLAS product would round differently with the
    # batch size, and a customer's reasons must not depend on who else is scored)
    cols = np.flatnonzero(inside)[np.argsort(member[inside], kind="stable")]
    sub = phi[:, cols]
    starts = np.searchsorted(member[cols], np.arange(len(labels)))
    fam_sum = np.add.reduceat(sub, starts, axis=1) if labels else np.zeros((n, 1))
    # the most telling member of each family: largest |phi| of the family's sign (missing values weighted down)
    agree = (np.sign(sub) == np.sign(fam_sum[:, member[cols]])) & (sub != 0.0)
    score = np.where(agree, np.abs(sub) * np.where(missing_x[:, cols], missing_weight, 1.0), -1.0)
    ends = np.append(starts[1:], cols.size)
    shown_all = np.zeros((n, fam_sum.shape[1]), dtype=np.int64)
    for g in range(len(labels)):
        shown_all[:, g] = cols[starts[g] + np.argmax(score[:, starts[g] : ends[g]], axis=1)]
    rows = np.arange(n)[:, None]
    shown_missing = missing_x[rows, shown_all]
    rank = np.abs(fam_sum) * np.where(shown_missing, missing_weight, 1.0)
    if direction > 0:
        rank = np.where(fam_sum > 0, rank, 0.0)
    if eligible is not None:
        rank = np.where(eligible, rank, 0.0)
    if not labels:
        rank[:] = 0.0
    k = min(top_k, rank.shape[1])
    order = np.argsort(-rank, axis=1, kind="stable")[:, :k]
    valid = rank[rows, order] > 0.0
    shown = shown_all[rows, order]
    return labels, fam_sum, order, shown, valid


def explain_reasons(
    model: Any,
    X: Any,
    *,
    feature_set: FeatureDescriber | None = None,
    top_k: int = 3,
    keys: pl.DataFrame | Sequence[Any] | None = None,
    reference: dict[str, float] | None = None,
    missing_weight: float = MISSING_WEIGHT,
) -> pl.DataFrame:
    r"""Top-k reasons per customer, one per family, against the moment's baseline, in percentage points.

    Parameters
    ----------
    model
        A fitted ``PropensityModel`` (or LightGBM binary model / booster).
    X
        Feature rows (the model's feature columns; extra columns ignored).
    feature_set
        Renders values and gives each feature's family; defaults to ``model.feature_set_``.
    top_k
        Reasons per row (families, never repeated).
    keys
        Row identifiers put first (as for :func:`omni_ml.explanation.explain`).
    reference
        Median per feature of the training population (:func:`reference_medians`), the level of each
        reason code (``RECENCY_SHORT`` vs ``RECENCY_LONG``); without it codes end in ``_KNOWN``/``_NONE``.
    missing_weight
        A family whose most telling feature has no value ranks as if it were this share of its size.

    Returns
    -------
    polars.DataFrame
        Keys, ``propensity``, ``reason_baseline`` (the baseline's propensity), ``reason_1..k`` (text
        with the signed contribution), ``reason_code_1..k``, ``reason_pp_1..k`` (signed contribution
        in percentage points), ``reason_family_1..k``, ``reason_feature_1..k`` (the feature quoted) and
        ``reason_other_pp`` (every family not shown); null beyond a row's non-zero families.
        ``sum(reason_pp) + reason_other_pp == 100 * (propensity - reason_baseline)``.

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> X = pl.DataFrame({"purchases_30d": rng.poisson(1, 400) * 1.0, "revenue_30d": rng.gamma(2, 30, 400)})
    >>> y = (X["purchases_30d"].to_numpy() + rng.normal(size=400) > 1).astype(int)
    >>> booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(X, y), 20)
    >>> out = explain_reasons(booster, X.head(3), top_k=2, keys=["a", "b", "c"])
    >>> total = out.select(pl.sum_horizontal(pl.col("^reason_pp_\\d$").fill_null(0)) + pl.col("reason_other_pp"))
    >>> bool(np.allclose(total.to_series(), 100 * (out["propensity"] - out["reason_baseline"])))
    True
    """
    if top_k < 1:
        msg = f"top_k must be at least 1, got {top_k}."
        raise ValueError(msg)
    feature_set = _resolve_feature_set(model, feature_set)
    names = explainer_for(model).feature_names
    x = feature_matrix(X, names)
    n = x.shape[0]
    key_frame = _keys_frame(X, keys, n)
    constant = as_of_constant(feature_set, names)
    phi, base = moment_shap(model, x, names, constant)
    raw = phi.sum(axis=1) + base
    proba = _proba_fn(model, "probability")
    p = np.asarray(proba(raw), dtype=np.float64)
    p0 = np.asarray(proba(base), dtype=np.float64)
    slope = _slope(proba, raw, base, p, p0)
    families = _families_of(feature_set, names, constant)
    spare = 3  # extra candidates: a family whose text repeats an earlier slot's is skipped
    labels, fam_sum, order, shown, valid = select_reasons(
        phi=phi, x=x, families=families, top_k=top_k + spare, missing_weight=missing_weight
    )
    texts = _texts(feature_set, names, x, shown, valid)
    order, shown, valid, texts = _distinct_texts(order, shown, valid, texts, top_k)
    k = order.shape[1]
    rows = np.arange(n)[:, None]
    chosen_lo = fam_sum[rows, order]
    chosen_pp = 100.0 * chosen_lo * slope[:, None]
    values = x[rows, shown]
    codes = np.array(
        codes_of(
            names,
            shown.reshape(-1),
            order.reshape(-1),
            values.reshape(-1),
            labels,
            reference,
            _coded(feature_set, names),
        ),
        dtype=object,
    ).reshape(n, k)
    columns: dict[str, Any] = {"propensity": p, "reason_baseline": p0}
    shown_pp = np.where(valid, chosen_pp, 0.0).sum(axis=1)
    numbers = format_pp(chosen_pp, chosen_lo)
    for slot in range(k):
        ok = valid[:, slot]
        reason = [f"{texts[i][slot]} ({numbers[i, slot]})" if ok[i] else None for i in range(n)]
        columns[f"reason_{slot + 1}"] = pl.Series(reason, dtype=pl.String)
        columns[f"reason_code_{slot + 1}"] = pl.Series(
            [c if o else None for c, o in zip(codes[:, slot].tolist(), ok.tolist(), strict=True)], dtype=pl.String
        )
        columns[f"reason_pp_{slot + 1}"] = pl.Series(np.where(ok, chosen_pp[:, slot], np.nan)).fill_nan(None)
        fam = [labels[j] if ok[i] else None for i, j in enumerate(order[:, slot].tolist())]
        columns[f"reason_family_{slot + 1}"] = pl.Series(fam, dtype=pl.String)
        feat = [names[j] if ok[i] else None for i, j in enumerate(shown[:, slot].tolist())]
        columns[f"reason_feature_{slot + 1}"] = pl.Series(feat, dtype=pl.String)
    columns["reason_other_pp"] = 100.0 * (p - p0) - shown_pp
    return pl.concat([key_frame, pl.DataFrame(columns)], how="horizontal")


def _coded(feature_set: FeatureDescriber | None, names: list[str]) -> set[str]:
    """Features whose value is a category code (no order: their reason codes end in ``_KNOWN``)."""
    from omni_ml.features._spec import Attribute

    index = feature_index(feature_set)
    out: set[str] = set()
    for name in names:
        feature = index.get(name)
        if feature is not None and isinstance(feature.spec, Attribute) and feature.spec.kind == "code":
            out.add(name)
    return out


def _distinct_texts(
    order: npt.NDArray[np.int64],
    shown: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
    texts: list[list[str | None]],
    top_k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], list[list[str | None]]]:
    """The first ``top_k`` candidates of each row whose texts differ ("no customer record" said once)."""
    n, m = order.shape
    k = min(top_k, m)
    grid = np.array(texts, dtype=object).reshape(n, m)
    keep = valid.copy()
    for c in range(1, m):
        for earlier in range(c):
            keep[:, c] &= ~(valid[:, earlier] & (grid[:, c] == grid[:, earlier]))
    rank = np.cumsum(keep, axis=1)
    take = keep & (rank <= k)
    # stable positions of the taken candidates, first k per row
    position = np.argsort(~take, axis=1, kind="stable")[:, :k]
    rows = np.arange(n)[:, None]
    v = take[rows, position]
    o = np.where(v, order[rows, position], 0)
    s = np.where(v, shown[rows, position], 0)
    t = grid[rows, position]
    t[~v] = None
    return o, s, v, t.tolist()  # type: ignore[no-any-return]


def _slope(
    proba: Any,
    raw: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    p: npt.NDArray[np.float64],
    p0: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Secant slope ``(p - p0) / (raw - base)``; the derivative where the two meet (within 1e-9)."""
    delta = raw - base
    close = np.abs(delta) <= 1e-9
    slope = np.empty_like(raw)
    slope[~close] = (p[~close] - p0[~close]) / delta[~close]
    if close.any():
        h = 1e-4
        up = np.asarray(proba(raw[close] + h), dtype=np.float64)
        down = np.asarray(proba(raw[close] - h), dtype=np.float64)
        slope[close] = (up - down) / (2 * h)
    return slope


def _decimals(feature_set: FeatureDescriber | None, names: list[str]) -> npt.NDArray[np.int64]:
    """Decimals each feature's text shows (-1: not a fixed-point format)."""
    index = feature_index(feature_set)
    out = np.full(len(names), -1, dtype=np.int64)
    for j, name in enumerate(names):
        feature = index.get(name)
        found = re.search(r"\.(\d+)f$", str(feature.fmt)) if feature is not None else None
        if found:
            out[j] = int(found.group(1))
    return out


def rounded_values(
    feature_set: FeatureDescriber | None,
    names: list[str],
    feature: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """``values`` of features ``feature`` rounded as their texts show them (vectorised :func:`_rounded`)."""
    dec = _decimals(feature_set, names)[feature]
    scale = 10.0 ** np.maximum(dec, 0)
    return np.where(dec >= 0, np.round(values * scale) / scale, values)


def render_unique(keys: pl.DataFrame, render: Any) -> list[str | None]:
    """``render(*row)`` of each row of ``keys``, rendered once per distinct row (nulls stay null-safe)."""
    if keys.height == 0:
        return []
    distinct = keys.unique(maintain_order=True)
    texts = [render(*row) for row in distinct.iter_rows()]
    mapped = keys.join(
        distinct.with_columns(pl.Series("__text", texts, dtype=pl.String)),
        on=keys.columns,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    return mapped["__text"].to_list()


def format_pp(pp: npt.NDArray[np.float64], log_odds: npt.NDArray[np.float64]) -> npt.NDArray[np.object_]:
    """``"+1.5 pp"`` per contribution (two significant digits); a zero change of a non-zero log-odds in log-odds."""
    flat = pp.reshape(-1)
    lo = log_odds.reshape(-1)
    rounded = pl.Series(np.nan_to_num(flat), dtype=pl.Float64).round_sig_figs(2).to_numpy()
    out = np.empty(flat.size, dtype=object)
    uniq, inverse = np.unique(rounded, return_inverse=True)
    words = np.array([_format_reason_number(u / 100.0, 1.0, "probability") for u in uniq.tolist()], dtype=object)
    out[:] = words[inverse.reshape(-1)] if uniq.size else out
    zero = (rounded == 0.0) & (lo != 0.0)
    for i in np.flatnonzero(zero).tolist():
        out[i] = _format_reason_number(0.0, float(lo[i]), "probability")
    return out.reshape(pp.shape)


def _texts(
    feature_set: FeatureDescriber | None,
    names: list[str],
    x: npt.NDArray[np.float64],
    shown: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
) -> list[list[str | None]]:
    n, m = shown.shape
    tenure = x[:, names.index("tenure_days")] if "tenure_days" in names else np.full(n, np.nan)
    attrs = [j for j, name in enumerate(names) if name.startswith("attr_")]
    no_record = np.asarray(np.isnan(x[:, attrs]).all(axis=1) if attrs else np.zeros(n, dtype=bool), dtype=bool)
    context = np.where(np.isnan(tenure), 1, np.where(tenure <= 90, 2, 3))
    is_attr = np.array([name.startswith("attr_") for name in names])[shown]
    rows = np.arange(n)[:, None]
    values = rounded_values(feature_set, names, shown, x[rows, shown])
    missing = np.isnan(values)
    state = np.where(missing, np.where(is_attr & no_record[:, None], 4, context[:, None]), 0)
    keys = pl.DataFrame(
        {
            "j": shown[valid],
            "v": pl.Series(values[valid], dtype=pl.Float64, nan_to_null=True),
            "s": state[valid],
        }
    )
    said = render_unique(keys, lambda j, v, st: _said(feature_set, names[j], float("nan") if v is None else v, st))
    grid = np.full((n, m), None, dtype=object)
    grid[valid] = np.array(said, dtype=object)
    return grid.tolist()  # type: ignore[no-any-return]
