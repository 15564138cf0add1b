"""Training sets for purchase propensity: stacked cutoffs, features before each, labels after, split by time.

A training row is one ``(customer_id, cutoff)`` snapshot: its features see events with
``timestamp < cutoff`` (:func:`omni_ml.features.build_features`), its label is at least one purchase in
``[cutoff, cutoff + horizon)`` (:func:`omni_ml.labels.purchase_labels`). Rows of several cutoffs are
stacked; validation always uses the *latest* cutoffs (:meth:`TrainingSet.split_out_of_time`), never a
random row split. :func:`training_cutoffs` chooses cutoffs whose label windows are fully observed before
the as-of date; with ``n=None`` as many as the history holds (:data:`AUTO_MAX_CUTOFFS` at most, the first
at least :data:`AUTO_WARMUP_DAYS` after the first event, :data:`AUTO_MIN_CUTOFFS` at least).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from omni_ml._history import SHORT_HISTORY_DAYS, HistoryChoice, adapt_to_history
from omni_ml._time import as_utc, before, utc_column
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, LeakageError, SchemaError
from omni_ml.features import FeatureConfig, FeatureSet, build_features
from omni_ml.labels import purchase_labels

__all__ = [
    "AUTO_MAX_CUTOFFS",
    "AUTO_MIN_CUTOFFS",
    "AUTO_WARMUP_DAYS",
    "SHORT_HISTORY_DAYS",
    "AdaptiveCutoffs",
    "HistoryChoice",
    "TrainConfig",
    "TrainingSet",
    "adapt_to_history",
    "cutoffs",
    "fit_cutoffs",
    "to_utc",
    "training_cutoffs",
    "training_set",
]

_EVERY = re.compile(r"^\s*(\d+)\s*([dw])\s*$")
_KEY_COLUMNS = ("customer_id", "cutoff")

#: ``n_cutoffs=None`` takes at most this many cutoffs: 18 x 28 days = 16 months, so the latest label
#: window's season is also seen a year earlier (``benchmarks/RESULTS.md``, section "Propensity").
AUTO_MAX_CUTOFFS = 18
#: ... and at least this many (training, early stopping, calibration and a back-test cutoff), else an error.
AUTO_MIN_CUTOFFS = 4
#: ... each cutoff at least this many days after the day of the first event, so that no snapshot is taken
#: of a history that has barely begun (every customer new, every window empty). 28 days keeps the 12
#: monthly cutoffs a one-year history (e.g. 2024-01-01..2025-01-01, 30-day horizon) always had.
AUTO_WARMUP_DAYS = 28


def to_utc(value: str | dt.date | dt.datetime) -> dt.datetime:
    """A date, datetime or ISO string as a timezone-aware UTC datetime (a date means midnight).

    Examples
    --------
    >>> to_utc("2025-06-01")
    datetime.datetime(2025, 6, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    return as_utc(value, name="date")


def _as_timedelta(every: str | int | dt.timedelta) -> dt.timedelta:
    if isinstance(every, dt.timedelta):
        step = every
    elif isinstance(every, int):
        step = dt.timedelta(days=every)
    else:
        match = _EVERY.match(every)
        if not match:
            msg = f"every={every!r}: expected a number of days or weeks like '28d' or '4w'."
            raise ConfigError(msg)
        step = dt.timedelta(days=int(match[1]) * (7 if match[2] == "w" else 1))
    if step <= dt.timedelta(0):
        msg = f"every={every!r}: the step between cutoffs must be positive."
        raise ConfigError(msg)
    return step


def cutoffs(
    last: str | dt.date | dt.datetime, every: str | int | dt.timedelta = "28d", n: int = 12
) -> list[dt.datetime]:
    """``n`` cutoffs ending at ``last``, ``every`` apart, oldest first (UTC).

    Examples
    --------
    >>> [c.date().isoformat() for c in cutoffs("2025-06-01", every="28d", n=3)]
    ['2025-04-06', '2025-05-04', '2025-06-01']
    """
    if n < 1:
        msg = f"n={n}: at least one cutoff is needed."
        raise ConfigError(msg)
    end = to_utc(last)
    step = _as_timedelta(every)
    return [end - step * k for k in range(n - 1, -1, -1)]


class AdaptiveCutoffs(list[dt.datetime]):
    """Cutoffs from ``training_cutoffs(..., n=None)`` before the history is known: a plan, not a final list.

    It holds the :data:`AUTO_MAX_CUTOFFS` candidate cutoffs, oldest first. :func:`training_set` keeps the
    latest ones that start at least ``warmup_days`` after the day of the histories' first event and
    raises :class:`~omni_ml.exceptions.DataInsufficientError` when fewer than ``min_cutoffs`` remain
    (:meth:`fit_history` does the same for a known start). Used as a plain list it is all candidates.
    """

    def __init__(self, cutoffs: Sequence[dt.datetime], *, every_days: int, warmup_days: int, min_cutoffs: int) -> None:
        super().__init__(cutoffs)
        self.every_days = every_days
        self.warmup_days = warmup_days
        self.min_cutoffs = min_cutoffs

    def fit_history(self, first_event: str | dt.date | dt.datetime) -> list[dt.datetime]:
        """The cutoffs at least ``warmup_days`` after the day of ``first_event``; an error if too few fit."""
        start = to_utc(first_event)
        start = to_utc(start.date())
        earliest = start + dt.timedelta(days=self.warmup_days)
        kept = [c for c in self if c >= earliest]
        if len(kept) < self.min_cutoffs:
            last = self[-1] if self else earliest
            msg = (
                f"training cutoffs: the history starts {start:%Y-%m-%d} and n_cutoffs=None wants each cutoff at "
                f"least {self.warmup_days} days later ({earliest:%Y-%m-%d} or after), but only {len(kept)} of the "
                f"cutoffs {self.every_days} days apart up to the last fully observed one ({last:%Y-%m-%d}) are; "
                f"at least {self.min_cutoffs} are needed. "
                "Hint: pass an explicit n_cutoffs (TrainConfig(n_cutoffs=...)), "
                "a smaller every_days or a shorter horizon, or load a longer history."
            )
            raise DataInsufficientError(msg)
        return kept


def training_cutoffs(
    as_of: str | dt.date | dt.datetime,
    horizon_days: int,
    every_days: int = 28,
    n: int | None = 12,
    *,
    first_event: str | dt.date | dt.datetime | None = None,
) -> list[dt.datetime]:
    """Cutoffs whose label windows ``[cutoff, cutoff + horizon)`` all end at or before ``as_of``.

    The latest cutoff is ``as_of - horizon_days``, so its labels are exactly the last fully observed
    window; the others step back ``every_days``.

    ``n=None`` adapts the number to the history: as many cutoffs as start at least
    :data:`AUTO_WARMUP_DAYS` days after the day of the first event, at most :data:`AUTO_MAX_CUTOFFS`;
    fewer than :data:`AUTO_MIN_CUTOFFS` raise :class:`~omni_ml.exceptions.DataInsufficientError`. With
    ``first_event`` this happens here; without it the result is an :class:`AdaptiveCutoffs` plan that
    :func:`training_set` fits to the histories it is given. An explicit ``n`` is used exactly.

    Examples
    --------
    >>> cs = training_cutoffs("2025-06-01", horizon_days=30, n=2)
    >>> [c.date().isoformat() for c in cs]
    ['2025-04-04', '2025-05-02']
    >>> len(training_cutoffs("2025-01-01", 30, n=None, first_event="2024-01-01"))  # one year of history
    12
    >>> len(training_cutoffs("2025-01-01", 30, n=None, first_event="2023-01-01"))  # two years: capped
    18
    """
    if horizon_days < 1:
        msg = f"horizon_days={horizon_days}: the label window must be at least one day."
        raise ConfigError(msg)
    last = to_utc(as_of) - dt.timedelta(days=horizon_days)
    if n is not None:
        return cutoffs(last, every=every_days, n=n)
    plan = AdaptiveCutoffs(
        cutoffs(last, every=every_days, n=AUTO_MAX_CUTOFFS),
        every_days=every_days,
        warmup_days=AUTO_WARMUP_DAYS,
        min_cutoffs=AUTO_MIN_CUTOFFS,
    )
    return plan if first_event is None else plan.fit_history(first_event)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How :func:`omni_ml.evaluation.fit_propensity` builds, fits and back-tests a propensity model.

    Attributes
    ----------
    every_days, n_cutoffs
        Spacing and number of training cutoffs (see :func:`training_cutoffs`). ``n_cutoffs=None`` (default)
        fits the number to the history: as many as start :data:`AUTO_WARMUP_DAYS` (28) days after the first
        event, at most :data:`AUTO_MAX_CUTOFFS` (18, i.e. 16 months at 28 days), an error below
        :data:`AUTO_MIN_CUTOFFS` (4). One year of history gives 12 (the former fixed default), two years 18.
        An explicit number is used exactly.
    n_valid
        Latest cutoffs held out for the out-of-time back-test report.
    model
        Keyword arguments of :class:`~omni_ml.models.PropensityModel` (their names are checked by
        :class:`~omni_ml.campaign.CampaignConfig` and by the model itself).
    features
        A ``FeatureConfig`` (a mapping of its fields is converted once, here); ``None`` means the
        feature defaults.
    short_history
        ``None`` (default): decided from the training cutoffs by :func:`adapt_to_history` -- when they
        span less than :data:`SHORT_HISTORY_DAYS` (365) days, the ``time_of_year`` feature family and the
        propensity calibration map are left out, each unless set explicitly (``features.families`` given or
        ``time_of_year`` in ``features.exclude``; ``calibration`` in ``model``). ``True`` / ``False``:
        treat the history as short / long whatever the cutoffs.
    """

    every_days: int = 28
    n_cutoffs: int | None = None
    n_valid: int = 1
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    features: FeatureConfig | None = None
    short_history: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.features, Mapping):
            from omni_ml.config import from_mapping

            object.__setattr__(self, "features", from_mapping(FeatureConfig, self.features, where="train.features"))
        if not isinstance(self.model, Mapping):
            msg = f"train.model: expected a mapping of PropensityModel settings, got {type(self.model).__name__}."
            raise ConfigError(msg)
        if self.short_history is not None and not isinstance(self.short_history, bool):
            msg = f"train.short_history: expected true, false or null (automatic), got {self.short_history!r}."
            raise ConfigError(msg)


def fit_cutoffs(hist: Histories, cutoffs: Sequence[str | dt.date | dt.datetime]) -> list[dt.datetime]:
    """The training cutoffs as UTC datetimes, oldest first; an :class:`AdaptiveCutoffs` plan fitted to ``hist``.

    Raises
    ------
    DataInsufficientError
        The plan has too few cutoffs after the history's warm-up, or ``hist`` has no events.
    """
    if isinstance(cutoffs, AdaptiveCutoffs):
        first = hist.events.select(pl.col("timestamp").min()).collect().item()
        if first is None:
            msg = "events: no rows, so no training cutoff fits the history. Hint: load a non-empty events table."
            raise DataInsufficientError(msg)
        cutoffs = cutoffs.fit_history(first)
    return sorted({to_utc(c) for c in cutoffs})


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """Stacked ``(customer_id, cutoff)`` rows: numeric features ``X``, labels ``y`` and the row ``keys``.

    Attributes
    ----------
    X : polars.DataFrame
        Numeric feature columns only (no ids, no timestamps).
    y : numpy.ndarray
        0/1 labels, ``int8``.
    keys : polars.DataFrame
        ``customer_id`` and ``cutoff`` of each row (same order as ``X``).
    feature_set : FeatureSet or None
        The fitted feature definition used to build ``X``.
    horizon_days : int or None
        Label window length; used to purge overlapping label windows when splitting.

    Examples
    --------
    >>> import datetime as dt, numpy as np, polars as pl
    >>> days = [dt.datetime(2025, m, 1, tzinfo=dt.UTC) for m in (1, 2, 3)]
    >>> keys = pl.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": days})
    >>> ts = TrainingSet(pl.DataFrame({"x": [1.0, 2.0, 3.0]}), np.array([0, 1, 0]), keys, horizon_days=28)
    >>> train, valid = ts.split_out_of_time(n_valid=1)
    >>> train.keys["customer_id"].to_list(), valid.keys["customer_id"].to_list()
    (['a', 'b'], ['c'])
    """

    X: pl.DataFrame
    y: np.ndarray
    keys: pl.DataFrame
    feature_set: Any = None
    horizon_days: int | None = None

    def __post_init__(self) -> None:
        n = self.X.height
        if len(self.y) != n or self.keys.height != n:
            msg = f"TrainingSet: X has {n:,} rows, y {len(self.y):,}, keys {self.keys.height:,}; they must match."
            raise SchemaError(msg)
        missing = [c for c in _KEY_COLUMNS if c not in self.keys.columns]
        if missing:
            msg = f"TrainingSet.keys: missing column(s) {missing}; got {self.keys.columns}."
            raise SchemaError(msg)
        leaked = [c for c in self.X.columns if c in _KEY_COLUMNS or c in ("label", "n_purchases", "revenue")]
        if leaked:
            msg = f"TrainingSet.X: id or label column(s) {leaked} among the features. Hint: keep them in keys/y."
            raise LeakageError(msg)

    def __len__(self) -> int:
        return self.X.height

    @property
    def cutoff(self) -> pl.Series:
        """The cutoff of every row (pass as ``fit(..., cutoff=ts.cutoff)``)."""
        return self.keys["cutoff"]

    @property
    def cutoffs(self) -> list[Any]:
        """Distinct cutoffs, oldest first."""
        return self.keys["cutoff"].unique().sort().to_list()

    def fingerprint(self) -> dict[str, Any]:
        """Aggregates that identify this training set without any personal data.

        Rows, customers, features, cutoffs (count, first, last), label rate and a SHA-256 over polars' row
        hashes (fixed seed) of the keys, labels and feature values: identical for identical content within
        one polars version.
        """
        import hashlib

        digest = hashlib.sha256()
        for frame in (self.keys.select(list(_KEY_COLUMNS)), self.X, pl.DataFrame({"label": self.y})):
            digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
        digest.update(",".join(self.X.columns).encode())
        cutoffs = self.cutoffs
        return {
            "rows": self.X.height,
            "customers": self.keys["customer_id"].n_unique(),
            "features": self.X.width,
            "cutoffs": len(cutoffs),
            "first_cutoff": str(cutoffs[0]) if cutoffs else "",
            "last_cutoff": str(cutoffs[-1]) if cutoffs else "",
            "label_rate": round(float(np.mean(self.y)), 6) if len(self.y) else float("nan"),
            "horizon_days": self.horizon_days,
            "content_hash": digest.hexdigest(),
        }

    def subset(self, mask: np.ndarray | pl.Series) -> TrainingSet:
        """Rows where ``mask`` is true, in their order."""
        m = mask if isinstance(mask, pl.Series) else pl.Series(np.asarray(mask, dtype=bool))
        idx = np.flatnonzero(m.to_numpy())
        return dataclasses.replace(self, X=self.X[idx], y=self.y[idx], keys=self.keys[idx])

    def split_out_of_time(self, n_valid: int = 2, *, purge: bool = True) -> tuple[TrainingSet, TrainingSet]:
        """Hold out the latest ``n_valid`` cutoffs; train on earlier ones. Never a random row split.

        With ``purge`` (and ``horizon_days`` known) a training cutoff is dropped when its label window
        ``[cutoff, cutoff + horizon)`` reaches past the first validation cutoff, so no training label
        is observed in the validation period (purging, Lopez de Prado 2018, ch. 7).

        Raises
        ------
        DataInsufficientError
            When fewer than ``n_valid + 1`` distinct cutoffs exist or purging leaves no training cutoff.
        """
        distinct = self.cutoffs
        if n_valid < 1 or len(distinct) < n_valid + 1:
            msg = (
                f"split_out_of_time: {len(distinct)} distinct cutoff(s) cannot give {n_valid} validation "
                "cutoff(s) and at least one earlier training cutoff. Hint: build the set with more cutoffs."
            )
            raise DataInsufficientError(msg)
        valid_cutoffs = distinct[-n_valid:]
        first_valid = valid_cutoffs[0]
        train_cutoffs = distinct[:-n_valid]
        if purge and self.horizon_days is not None:
            horizon = dt.timedelta(days=self.horizon_days)
            train_cutoffs = [c for c in train_cutoffs if c + horizon <= first_valid]
        if not train_cutoffs:
            msg = (
                f"split_out_of_time: every training cutoff's {self.horizon_days}-day label window overlaps the "
                f"validation period starting {first_valid}. Hint: space cutoffs at least the horizon apart."
            )
            raise DataInsufficientError(msg)
        cut = self.keys["cutoff"]
        return self.subset(cut.is_in(train_cutoffs)), self.subset(cut.is_in(valid_cutoffs))

    def to_frame(self) -> pl.DataFrame:
        """Keys, features and ``label`` side by side."""
        return pl.concat([self.keys, self.X, pl.DataFrame({"label": self.y})], how="horizontal")


def _observed_until(hist: Histories, as_of: dt.datetime | None) -> tuple[dt.datetime, bool]:
    if as_of is not None:
        return as_of, True
    if hist.report is not None and hist.report.as_of is not None:
        return hist.report.as_of, True
    ts = pl.col("timestamp")
    last, timed = hist.events.select(ts.max(), (ts != ts.dt.truncate("1d")).any().alias("timed")).collect().row(0)
    if last is None:
        msg = "events: no rows, so no label window is observed. Hint: load a non-empty events table."
        raise DataInsufficientError(msg)
    if timed:  # timestamps: the data is only known to reach the last event, not the end of its day
        return last, False
    # dates (every timestamp midnight): the last day is observed to its end
    return last + dt.timedelta(days=1), False


def _first_seen(hist: Histories) -> pl.DataFrame:
    """Each customer's earliest known moment: first events/contacts/consents row or customers-table date.

    Customers with no timestamped row and no date attribute get no row (they are kept: nothing says when
    they arrived, and without any record they can never be labelled 1).
    """
    parts = [
        lf.select("customer_id", pl.col("timestamp").cast(TIMESTAMP).alias("__first_seen"))
        for name, lf in hist.tables().items()
        if name in ("events", "contacts", "consents")
    ]
    if hist.customers is not None:
        schema = hist.customers.collect_schema()
        dates = [c for c, t in schema.items() if isinstance(t, pl.Datetime) or t == pl.Date]
        parts += [
            hist.customers.select(
                pl.col("customer_id").cast(pl.String),
                utc_column(c, schema[c]).cast(TIMESTAMP).alias("__first_seen"),
            )
            for c in dates
        ]
    return (
        pl.concat(parts, how="vertical")
        .drop_nulls()
        .group_by("customer_id")
        .agg(pl.col("__first_seen").min())
        .collect()
    )


def _is_resolved(hist: Histories) -> bool:
    from omni_ml.identity import require_resolved

    try:
        require_resolved(hist, *[t for t in ("events", "contacts", "consents") if getattr(hist, t) is not None])
    except SchemaError:
        return False
    return True


def _rows(
    hist: Histories, moments: list[dt.datetime], horizon_days: int, feature_set: Any, until: dt.datetime
) -> tuple[pl.DataFrame, np.ndarray]:
    """Features and labels of the customers known before each of ``moments``, in ``hist``'s identities."""
    features = build_features(hist, moments, feature_set=feature_set)
    features = features.join(_first_seen(hist), on="customer_id", how="left", maintain_order="left")
    # a customer first seen at or after a cutoff did not exist then: such a row is future knowledge
    # (its label is 1 whenever the first record is a purchase in the window), and scoring at t never sees it
    features = features.filter(pl.col("__first_seen").is_null() | before(pl.col("cutoff"), "__first_seen"))
    features = features.drop("__first_seen")
    keys = features.select("customer_id", pl.col("cutoff").cast(TIMESTAMP))
    if keys.height == 0:
        return features, np.zeros(0, dtype=np.int8)
    labels = purchase_labels(hist, keys, horizon_days, as_of=until)
    joined = keys.with_row_index("__row").join(
        labels.select("customer_id", pl.col("cutoff").cast(TIMESTAMP), "label"),
        on=["customer_id", "cutoff"],
        how="left",
    )
    joined = joined.sort("__row")
    if joined.height != keys.height or joined["label"].null_count():
        msg = (
            f"training_set: labels for {joined['label'].null_count():,} of {keys.height:,} rows are missing "
            "or duplicated. Hint: (customer_id, cutoff) must be unique in the features."
        )
        raise SchemaError(msg)
    return features, joined["label"].cast(pl.Int8).to_numpy()


def training_set(
    hist: Histories,
    cutoffs: Sequence[str | dt.date | dt.datetime],
    horizon_days: int,
    *,
    feature_set: Any = None,
    config: Any = None,
    as_of: str | dt.date | dt.datetime | None = None,
) -> TrainingSet:
    """Build the stacked training set: features before each cutoff, purchase labels after it.

    A row ``(customer, cutoff)`` exists only when the customer was known before the cutoff: a first
    events/contacts/consents row (or customers-table date, e.g. a signup date) strictly before it.
    A customer who first appears at or after a cutoff gets no row for it (scoring at that moment
    could not have seen them; their row would carry a label from their very first purchase).

    Parameters
    ----------
    hist
        Histories. When some events/contacts/consents rows carry only an identifier, identities are
        resolved as of each cutoff (:func:`omni_ml.resolve_identities`), so a row at ``t`` uses only
        links seen before ``t`` (DESIGN.md section 4); its label counts the purchases of the customer as
        known at ``t`` (rows carrying their customer_id, or identifiers linked to them before ``t``).
        Resolved histories are used as they are.
    cutoffs
        Training cutoffs (e.g. :func:`training_cutoffs`). An :class:`AdaptiveCutoffs` plan
        (``training_cutoffs(..., n=None)``) is first fitted to the first event of ``hist``.
    horizon_days
        Label window length in days.
    feature_set
        A fitted ``FeatureSet`` to reuse; by default one is fitted on events before the first cutoff's
        latest allowed moment (the features engineer's ``FeatureSet.from_histories``).
    config
        A ``FeatureConfig`` for a new feature set.
    as_of
        The moment data is known until. Every label window must end at or before it; defaults to the
        load's ``as_of`` or, failing that, the last event (the midnight after it when every
        timestamp is a midnight, i.e. the events are dates).

    Returns
    -------
    TrainingSet

    Raises
    ------
    LeakageError
        A label window ends after ``as_of``.
    DataInsufficientError
        A label window ends after the last event (labels would be truncated), no rows result, or an
        :class:`AdaptiveCutoffs` plan has too few cutoffs after the history's warm-up.
    """
    if not cutoffs:
        msg = "training_set: no cutoffs given. Hint: use training_cutoffs(as_of, horizon_days)."
        raise ConfigError(msg)
    moments = fit_cutoffs(hist, cutoffs)
    if horizon_days < 1:
        msg = f"horizon_days={horizon_days}: the label window must be at least one day."
        raise ConfigError(msg)
    until, explicit = _observed_until(hist, to_utc(as_of) if as_of is not None else None)
    horizon = dt.timedelta(days=horizon_days)
    late = [c for c in moments if c + horizon > until]
    if late:
        events_end = f"the end of the events ({until:%Y-%m-%d %H:%M:%S})"
        what = f"the as-of date {until:%Y-%m-%d %H:%M}" if explicit else events_end
        msg = (
            f"training_set: {len(late)} cutoff(s) have label windows [cutoff, cutoff + {horizon_days}d) ending after "
            f"{what} (e.g. {late[-1]:%Y-%m-%d}). Hint: use training_cutoffs(as_of, horizon_days)."
        )
        raise (LeakageError if explicit else DataInsufficientError)(msg)
    if _is_resolved(hist):
        as_of_cutoff = [(hist, moments)]
    else:  # identity as of each cutoff: a link seen at or after t must not merge histories into a row at t
        from omni_ml.identity import resolve_identities

        as_of_cutoff = [(resolve_identities(hist, as_of=t), [t]) for t in moments]
    if feature_set is None:
        feature_set = FeatureSet.from_histories(as_of_cutoff[-1][0], config=config, before=moments[-1])
    parts = [_rows(h, ts, horizon_days, feature_set, until) for h, ts in as_of_cutoff]
    features = pl.concat([f for f, _ in parts], how="vertical")
    if features.height == 0:
        msg = f"training_set: no customers have history before any of the {len(moments)} cutoffs."
        raise DataInsufficientError(msg)
    keys = features.select("customer_id", pl.col("cutoff").cast(TIMESTAMP))
    X = features.drop("customer_id", "cutoff")
    y = np.concatenate([labels for _, labels in parts]).astype(np.int8)
    return TrainingSet(X=X, y=y, keys=keys, feature_set=feature_set, horizon_days=horizon_days)
