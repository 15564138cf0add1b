"""Compact distribution summaries: the training reference and the per-run profile of a scored population.

A :class:`FeatureProfile` summarises one feature column without keeping any row: numeric features
by the share of rows in bins whose edges are fixed at training time (quantiles of the training
population; a value equal to an edge falls in the bin above it), categorical ones (0/1 flags,
consents, coded attributes) by the share of each level seen in training plus an ``other`` share;
both carry the share of nulls (NaN counts as null) and numeric ones a few quantiles for the
summary. The scored population is binned with the *same* edges and levels (:class:`BinCounter`),
so the two distributions can be compared bin by bin (:mod:`omni_ml.monitor._drift`).

:class:`Reference` is what :meth:`omni_ml.campaign.CampaignModel.fit` stores in ``reference_``:
the profiles of the model's features over every customer as of the training date, the score
distribution (share per fixed decile, quantiles of the propensity), the label rate of the latest
training cutoff and the row counts. Only aggregates: no identifier, no per-customer value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

__all__ = [
    "EXCLUDED_FAMILIES",
    "QUANTILES",
    "BinCounter",
    "FeatureProfile",
    "Reference",
    "feature_kinds",
    "drift_detail",
    "drift_index",
    "profile_features",
    "reference_binned",
]

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Quantiles kept per numeric feature (for the summary; drift is measured on the bins)."""

EXCLUDED_FAMILIES: frozenset[str] = frozenset({"time_of_year"})
"""Feature families not monitored: they depend only on the date, so they always differ from training."""

_MAX_LEVELS = 64
_N_BINS = 10
MODE_SHARE = 0.3
"""A numeric value this common gets its own bin, and drift is also measured off it (see :func:`_numeric_edges`)."""


@dataclasses.dataclass(frozen=True)
class FeatureProfile:
    """One feature's distribution: bin (or level) shares of the non-null rows and the null share.

    Attributes
    ----------
    name, description
        Column name and its description in words (from the feature set).
    kind
        ``"numeric"`` (binned by ``edges``) or ``"categorical"`` (shares per value in ``levels``).
    edges
        Numeric: ascending interior bin edges (``len(edges) + 1`` bins). Categorical: empty.
    levels
        Categorical: the values seen in training (the last share is every other value). Numeric: empty.
    shares
        Share of the non-null rows per bin / level (+ ``other``); sums to 1 (all zero when every row is null).
    null_share
        Share of rows that are null or NaN.
    quantiles
        Numeric: the :data:`QUANTILES` of the non-null values (NaN when none). Categorical: empty.
    rows
        Rows summarised.
    natural_psi
        The largest index between consecutive training cutoffs (28 days apart by default) on these bins:
        how much the feature moves by itself month to month (ageing, campaign cadence, season).
    natural_null_change
        The largest change of the null share between consecutive training cutoffs.
    mode_bin
        Numeric: the bin holding exactly the most common value when it is common (e.g. zero), else ``None``.
    outbound
        An aggregate of the contacts table: it counts our own outbound messages, so it follows the
        campaign calendar (which campaign days fell in its window) rather than the customers.
    """

    name: str
    description: str
    kind: Literal["numeric", "categorical"]
    edges: tuple[float, ...]
    levels: tuple[float, ...]
    shares: tuple[float, ...]
    null_share: float
    quantiles: tuple[float, ...]
    rows: int
    natural_psi: float = 0.0
    natural_null_change: float = 0.0
    mode_bin: int | None = None
    outbound: bool = False


@dataclasses.dataclass(frozen=True)
class Reference:
    """The training reference a scoring run is compared with (no identifiers, no per-customer rows).

    Attributes
    ----------
    as_of
        Moment the reference population was described at (the model's training as-of date).
    rows
        Customers in the reference population.
    features
        One :class:`FeatureProfile` per monitored feature, in feature-set order.
    decile_shares
        Share of the reference population in each propensity decile 1 (top) .. 10, against the model's
        fixed decile edges.
    propensity_quantiles
        :data:`QUANTILES` of the calibrated propensity over the reference population.
    mean_propensity
        Mean calibrated propensity of the reference population.
    label_rate
        Share of positive labels at the latest training cutoff (observed purchase rate over the horizon).
    label_rows
        Rows at the latest training cutoff.
    horizon_days
        The model's horizon (the expected figures refer to it).
    excluded
        Features left out of the comparison (date-only families) with the reason.
    oot_lift, oot_expected_lift, oot_top_buyers
        The out-of-time back-test of the training recipe (``CampaignModel.report_``: the recipe fitted
        without the latest cutoff, scored on it): realised and expected (mean propensity of the top tenth
        over the overall mean) top-decile lift, and the buyers in that top tenth. NaN / 0 when unknown.
    inputs
        Summaries of the input rows of the training windows (:class:`~omni_ml.monitor._events.InputReference`:
        volumes per event type and channel, contacts and consent changes per channel, order value);
        ``None`` for a model fitted before they existed.
    """

    as_of: dt.datetime
    rows: int
    features: tuple[FeatureProfile, ...]
    decile_shares: tuple[float, ...]
    propensity_quantiles: tuple[float, ...]
    mean_propensity: float
    label_rate: float
    label_rows: int
    horizon_days: int
    excluded: tuple[str, ...] = ()
    inputs: Any = None
    oot_lift: float = float("nan")
    oot_expected_lift: float = float("nan")
    oot_top_buyers: float = 0.0

    @property
    def lift_correction(self) -> float:
        """Realised over expected top-decile lift of the out-of-time back-test (1 when unknown).

        Calibrated propensities are fitted on the latest training cutoff and applied one horizon later;
        the back-test shows how far the top decile's expectation leaned at that distance.
        """
        ratio = getattr(self, "oot_lift", float("nan")) / getattr(self, "oot_expected_lift", float("nan"))
        return float(ratio) if np.isfinite(ratio) and ratio > 0 else 1.0

    def feature(self, name: str) -> FeatureProfile:
        """The profile of feature ``name``."""
        for profile in self.features:
            if profile.name == name:
                return profile
        msg = f"the reference has no feature {name!r}"
        raise KeyError(msg)

    def to_frame(self) -> pl.DataFrame:
        """One row per monitored feature: kind, null share, bins, quantiles (for MLflow and notebooks)."""
        return pl.DataFrame(
            {
                "feature": [p.name for p in self.features],
                "description": [p.description for p in self.features],
                "kind": [p.kind for p in self.features],
                "null_share": [p.null_share for p in self.features],
                "bins": [len(p.shares) for p in self.features],
                "median": [p.quantiles[2] if p.quantiles else None for p in self.features],
                "natural_psi": [p.natural_psi for p in self.features],
                "natural_null_change": [p.natural_null_change for p in self.features],
            },
            schema_overrides={"median": pl.Float64},
        )


def feature_kinds(feature_set: Any, columns: Sequence[str]) -> dict[str, Literal["numeric", "categorical"]]:
    """``categorical`` for flags, consents and coded attributes (Int8 or coded), ``numeric`` for the rest."""
    from omni_ml.features import Attribute, Consent

    kinds: dict[str, Literal["numeric", "categorical"]] = {}
    for name in columns:
        f = feature_set.feature(name)
        coded = isinstance(f.spec, Attribute) and f.spec.kind in ("code", "boolean")
        flag = isinstance(f.spec, Consent) or f.output_dtype == pl.Int8()
        kinds[name] = "categorical" if coded or flag else "numeric"
    return kinds


def monitored_columns(feature_set: Any, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """The columns to monitor and those excluded (families in :data:`EXCLUDED_FAMILIES`)."""
    keep: list[str] = []
    drop: list[str] = []
    for name in columns:
        (drop if feature_set.family_of(name) in EXCLUDED_FAMILIES else keep).append(name)
    return keep, drop


def _as_float(column: pl.Series) -> np.ndarray:
    return column.cast(pl.Float64).fill_nan(None).to_numpy(allow_copy=True).astype(np.float64)


def _numeric_edges(values: np.ndarray) -> tuple[tuple[float, ...], int | None]:
    """Bin edges and the index of the bin holding exactly the most common value (``None`` without one).

    Edges are the deciles of the values. When one value holds at least :data:`MODE_SHARE` of them
    (zero-inflated counts and amounts: most customers bought nothing this month), it gets a bin of its
    own and the other values get their deciles too, so the distribution *off* that value (what the
    buyers spent) is still resolved into bins.
    """
    if values.size == 0:
        return (), None
    edges = list(np.quantile(values, np.arange(1, _N_BINS) / _N_BINS))
    edges.append(float(np.min(values)))  # values below the training minimum get a bin of their own
    uniques, counts = np.unique(values, return_counts=True)
    mode = None
    if uniques.size > 1 and counts.max() >= MODE_SHARE * values.size:
        mode = float(uniques[np.argmax(counts)])
        rest = values[values != mode]
        edges += [*np.quantile(rest, np.arange(1, _N_BINS) / _N_BINS), mode, float(np.nextafter(mode, np.inf))]
    unique_edges = np.unique(np.asarray(edges, dtype=np.float64))
    mode_bin = int(np.searchsorted(unique_edges, mode, side="right")) if mode is not None else None
    return tuple(float(e) for e in unique_edges), mode_bin


def profile_features(
    X: pl.DataFrame,
    feature_set: Any,
    columns: Sequence[str],
) -> tuple[FeatureProfile, ...]:
    """Fit the bins / levels of ``columns`` of ``X`` and summarise them (the reference side)."""
    kinds = feature_kinds(feature_set, columns)
    out = []
    for name in columns:
        raw = _as_float(X[name])
        present = raw[~np.isnan(raw)]
        null_share = 1.0 - present.size / raw.size if raw.size else 0.0
        if kinds[name] == "categorical":
            levels = tuple(float(v) for v in np.unique(present)[:_MAX_LEVELS])
            edges: tuple[float, ...] = ()
            quantiles: tuple[float, ...] = ()
            mode_bin = None
            counts = _level_counts(present, levels)
        else:
            levels = ()
            edges, mode_bin = _numeric_edges(present)
            quantiles = tuple(float(q) for q in np.quantile(present, QUANTILES)) if present.size else (np.nan,) * 5
            counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        total = counts.sum()
        shares = tuple(float(c / total) if total else 0.0 for c in counts)
        out.append(
            FeatureProfile(
                name=name,
                description=feature_set.describe(name),
                kind=kinds[name],
                edges=edges,
                levels=levels,
                shares=shares,
                null_share=float(null_share),
                quantiles=quantiles,
                rows=int(raw.size),
                mode_bin=mode_bin,
                outbound=getattr(feature_set.feature(name).spec, "source", None) == "contacts",
            )
        )
    return tuple(out)


def _level_counts(present: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    idx = np.searchsorted(lv, present)
    hit = (idx < lv.size) & (lv[np.minimum(idx, max(lv.size - 1, 0))] == present) if lv.size else np.zeros(0, bool)
    codes = np.where(hit, idx, lv.size) if lv.size else np.zeros(present.size, dtype=np.int64)
    return np.bincount(codes.astype(np.int64), minlength=lv.size + 1)


class BinCounter:
    """Counts a scored population into a reference's bins, chunk by chunk (the scoring side).

    Parameters
    ----------
    profiles
        The reference's feature profiles; their edges and levels are reused as they are.
    """

    def __init__(self, profiles: Sequence[FeatureProfile]) -> None:
        self.profiles = tuple(profiles)
        self.counts = {p.name: np.zeros(len(p.shares), dtype=np.int64) for p in self.profiles}
        self.nulls = dict.fromkeys(self.counts, 0)
        self.sums = dict.fromkeys(self.counts, 0.0)
        self.rows = 0
        self.missing: set[str] = set()

    def add(self, X: pl.DataFrame) -> None:
        """Add the rows of ``X`` (a feature table with at least the profiled columns)."""
        self.rows += X.height
        for p in self.profiles:
            if p.name not in X.columns:
                self.missing.add(p.name)
                self.nulls[p.name] += X.height
                continue
            raw = _as_float(X[p.name])
            present = raw[~np.isnan(raw)]
            self.nulls[p.name] += int(raw.size - present.size)
            self.sums[p.name] += float(present.sum())
            if p.kind == "categorical":
                self.counts[p.name] += _level_counts(present, p.levels)
            else:
                idx = np.searchsorted(np.asarray(p.edges), present, side="right")
                self.counts[p.name] += np.bincount(idx, minlength=len(p.edges) + 1)

    def shares(self) -> Mapping[str, Binned]:
        """Per feature: the share of non-null rows per bin, the null share and the non-null rows."""
        out = {}
        for name, counts in self.counts.items():
            total = int(counts.sum())
            shares = counts / total if total else np.zeros(counts.size)
            out[name] = (shares, self.nulls[name] / self.rows if self.rows else 0.0, total)
        return out


MIN_OFF_MODE_ROWS = 100
"""Rows off the most common value needed on both sides before drift off it is measured (noise below that)."""


Binned = tuple[np.ndarray, float, int]
"""A binned distribution: share of the non-null rows per bin, share of nulls, non-null rows."""


def reference_binned(profile: FeatureProfile) -> Binned:
    """The reference side of a profile as a :data:`Binned`."""
    return np.asarray(profile.shares), profile.null_share, round(profile.rows * (1 - profile.null_share))


def drift_index(profile: FeatureProfile, reference: Binned, current: Binned) -> float:
    """PSI of one feature between two binned distributions (binned on ``profile``).

    Nulls are a bin of their own (a feed that stops turns values into nulls). With a ``mode_bin``, the
    index is the larger of the index over all rows and the index of the rows off the most common
    value (renormalised), once both sides have :data:`MIN_OFF_MODE_ROWS` of them: a price change
    moves only the buyers' amounts, a few percent of all rows.
    """
    return drift_detail(profile, reference, current)[0]


def drift_detail(profile: FeatureProfile, reference: Binned, current: Binned) -> tuple[float, int, float]:
    """:func:`drift_index`, its bins and ``1 / n_reference + 1 / n_current`` of the rows it compares.

    Between two samples of one distribution the PSI is about ``(1/n1 + 1/n2) * chi2(bins - 1)``
    (Yurdakul 2018): the last two numbers give the index's noise at the sizes compared (all rows for
    the index over all rows; the rows off the most common value when that index is the larger).
    """
    from omni_ml.monitor._drift import psi

    (ref, ref_null, ref_rows), (cur, cur_null, cur_rows) = reference, current
    ref, cur = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    full_ref, full_cur = np.append(ref * (1 - ref_null), ref_null), np.append(cur * (1 - cur_null), cur_null)
    value = psi(full_ref, full_cur)
    detail = (value, _df(full_ref, full_cur), _inv(_total(ref_rows, ref_null), _total(cur_rows, cur_null)))
    if profile.mode_bin is None:
        return detail
    keep = np.arange(ref.size) != profile.mode_bin
    off_ref, off_cur = ref[keep].sum(), cur[keep].sum()
    if min(off_ref * ref_rows, off_cur * cur_rows) < MIN_OFF_MODE_ROWS:
        return detail
    off = psi(ref[keep] / off_ref, cur[keep] / off_cur)
    if off <= value:
        return detail
    return off, _df(ref[keep], cur[keep]), _inv(off_ref * ref_rows, off_cur * cur_rows)


def _total(non_null_rows: float, null_share: float) -> float:
    """All rows from the non-null rows and the null share."""
    return non_null_rows / (1.0 - null_share) if null_share < 1.0 else float(non_null_rows)


def _df(a: np.ndarray, b: np.ndarray) -> int:
    """Bins holding rows on either side."""
    return max(int(np.count_nonzero((a > 0) | (b > 0))), 2)


def _inv(n_a: float, n_b: float) -> float:
    return 1.0 / max(n_a, 1.0) + 1.0 / max(n_b, 1.0)
