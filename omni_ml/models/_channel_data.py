"""Training units and scoring inputs of the channel model (see :mod:`omni_ml.models.channel`).

:func:`channel_training_data` builds the decision units a :class:`~omni_ml.models.channel.ChannelModel`
learns from (logged contacts, sampled no-contact units, logged pauses) with their features and outcomes;
:func:`channel_features` builds its input rows for scoring. Both are re-exported by
:mod:`omni_ml.models.channel`, the module to import them from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from sklearn.utils.validation import check_is_fitted

from omni_ml import _time
from omni_ml._time import as_utc, before, window
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError
from omni_ml.models._channel_learner import NO_CONTACT, ChannelModel
from omni_ml.models._channel_response import ResponseSpec, response_history

if TYPE_CHECKING:
    from omni_ml.models.channel import ChannelConfig

_MAX_DRAW_ROUNDS = 10  # rounds of no-contact draws (the first almost always suffices)


@dataclasses.dataclass(frozen=True)
class ChannelTrainingData:
    """Decision units for the channel model: features, arm, outcome, logging probability.

    ``keys`` holds ``customer_id, cutoff, arm, converted, assignment_probability,
    sample_weight_population`` (one row per unit, aligned with ``X``); ``sampling_fraction`` is the share
    of eligible no-contact (customer, campaign day) pairs that were sampled; ``lookback_days_used`` the days
    from the start of the training period to ``as_of`` (less than the configured lookback when the history
    is shorter).
    """

    X: pl.DataFrame
    keys: pl.DataFrame
    feature_set: Any
    sampling_fraction: float
    n_campaign_days: int
    lookback_days_used: float | None = None

    @property
    def arm(self) -> pl.Series:
        """The arm of each unit (a channel or ``no_contact``)."""
        return self.keys["arm"]

    @property
    def y(self) -> np.ndarray:
        """Converted (0/1) within the window."""
        return self.keys["converted"].to_numpy()


def _require_contacts(hist: Histories, channels: Sequence[str]) -> pl.DataFrame:
    msg_tail = (
        "Channel choice learns from logged outbound contacts and the purchases that followed them. "
        "Hint: add a contacts table (customer_id, timestamp, channel, [cost, assignment_probability]) with "
        f"contacts on the contactable channels {list(channels)}; purchase propensity works without it."
    )
    if hist.contacts is None:
        msg = f"channel choice needs contacts: the histories have no contacts table. {msg_tail}"
        raise DataInsufficientError(msg)
    contacts = hist.contacts.filter(pl.col("channel").is_in(list(channels))).collect()
    if contacts.height == 0:
        found = hist.contacts.select(pl.col("channel").unique()).collect()["channel"].to_list()
        msg = (
            f"channel choice needs contacts: the contacts table has no rows on a contactable channel "
            f"(found channels {sorted(map(str, found))[:5]}). {msg_tail}"
        )
        raise DataInsufficientError(msg)
    return contacts


def channel_training_data(
    hist: Histories, as_of: dt.datetime, config: ChannelConfig | None = None
) -> ChannelTrainingData:
    """Build decision units (logged contacts + sampled no-contact units) with features and outcomes.

    See the module docstring for the sampling of no-contact units. Features are built with
    :func:`omni_ml.features.build_features` as of each unit's cutoff (the contact's timestamp), so
    nothing at or after the decision is used; outcomes are purchases in ``[cutoff, cutoff + window)``.

    Raises
    ------
    DataInsufficientError
        Without contacts on a contactable channel in the training period.
    """
    from omni_ml.labels import contact_outcomes
    from omni_ml.models.channel import ChannelConfig

    cfg = config or ChannelConfig()
    t = as_utc(as_of)
    all_contacts = _require_contacts(hist, cfg.channels)
    start, stop, shortened = _training_period(all_contacts, t, cfg)
    period = window(start, end=stop)
    outcomes = contact_outcomes(hist, cfg.window_days, as_of=t, incomplete="drop")
    contact_units = _logged_contact_units(outcomes, period, all_contacts, cfg, (start, stop, shortened))
    days = _campaign_days(all_contacts, period)
    customers = _known_customers(hist)
    target = int(np.ceil(cfg.pause_ratio * contact_units.height))
    pause_units, sampling_fraction = _sampled_pause_units(hist, customers, days, all_contacts, cfg, target, t)
    # Logged pauses (contacts rows on channel no_contact: control-group and explored pauses fed back by
    # `omni-ml feedback`) are randomised no-contact units with a known assignment probability; they stand for
    # themselves (population weight 1), the sampled pairs for 1 / sampling_fraction pairs each.
    keys = pl.concat(
        [
            pl.concat([contact_units, pause_units]).with_columns(
                pl.when(pl.col("arm") == NO_CONTACT)
                .then(1.0 / sampling_fraction)
                .otherwise(1.0)
                .alias("sample_weight_population")
            ),
            _logged_pause_units(outcomes, period),
        ]
    )
    X, feature_set = _unit_features(hist, keys, cfg, t)
    return ChannelTrainingData(
        X=X,
        keys=keys,
        feature_set=feature_set,
        sampling_fraction=sampling_fraction,
        n_campaign_days=days.height,
        lookback_days_used=(t - start).total_seconds() / 86_400.0,
    )


def _training_period(
    all_contacts: pl.DataFrame, t: dt.datetime, cfg: ChannelConfig
) -> tuple[dt.datetime, dt.datetime, bool]:
    """``(start, stop, shortened)`` of the training period; a lookback past the history starts at its first contact."""
    start = t - dt.timedelta(days=cfg.lookback_days)
    stop = t - dt.timedelta(days=cfg.window_days)
    first_contact = all_contacts["timestamp"].min()
    shortened = isinstance(first_contact, dt.datetime) and first_contact > start
    if shortened:
        start = first_contact  # type: ignore[assignment]
    return start, stop, shortened


def _logged_contact_units(
    outcomes: pl.DataFrame | pl.LazyFrame,
    period: pl.Expr,
    all_contacts: pl.DataFrame,
    cfg: ChannelConfig,
    span: tuple[dt.datetime, dt.datetime, bool],
) -> pl.DataFrame:
    """One unit per logged contact on ``cfg.channels`` in the training period (``span``: start, stop, shortened)."""
    start, stop, shortened = span
    logged = outcomes.filter(period & pl.col("channel").is_in(list(cfg.channels)))
    if isinstance(logged, pl.LazyFrame):
        logged = logged.collect()
    if logged.height == 0:
        msg = (
            f"channel choice needs contacts: none of the {all_contacts.height:,} contacts falls in the training "
            f"period [{start:%Y-%m-%d}, {stop:%Y-%m-%d}). Hint: "
            + (
                f"the contacts start on {start:%Y-%m-%d}; choose an as_of at least {cfg.window_days} days later."
                if shortened
                else "raise lookback_days or choose a later as_of."
            )
        )
        raise DataInsufficientError(msg)
    return logged.select(
        "customer_id",
        pl.col("timestamp").cast(TIMESTAMP).alias("cutoff"),
        pl.col("channel").alias("arm"),
        pl.col("converted").cast(pl.Int8),
        pl.col("assignment_probability").cast(pl.Float64),
    )


def _campaign_days(all_contacts: pl.DataFrame, period: pl.Expr) -> pl.DataFrame:
    """The campaign days of the training period: ``day``, ``cutoff`` (its first contact) and ``n`` contacts."""
    days = (
        all_contacts.filter(period)
        .group_by(pl.col("timestamp").dt.truncate("1d").alias("day"))
        .agg(pl.col("timestamp").min().alias("cutoff"), pl.len().alias("n"))
        .sort("day")
    )
    # a campaign day sends to many; a stray contact (e.g. a service call-back) does not make one
    median_sent = days["n"].cast(pl.Float64).median()
    return days.filter(pl.col("n") >= max(2.0, 0.1 * (float(median_sent) if median_sent is not None else 0.0)))  # type: ignore[arg-type]


def _known_customers(hist: Histories) -> pl.Series:
    """Every customer id in events, consents and customers, sorted."""
    return (
        pl.concat(
            [hist.events.select("customer_id")]
            + [lf.select("customer_id") for lf in (hist.consents, hist.customers) if lf is not None]
        )
        .drop_nulls()
        .unique()
        .sort("customer_id")
        .collect()["customer_id"]
    )


def _sampled_pause_units(
    hist: Histories,
    customers: pl.Series,
    days: pl.DataFrame,
    all_contacts: pl.DataFrame,
    cfg: ChannelConfig,
    target: int,
    t: dt.datetime,
) -> tuple[pl.DataFrame, float]:
    """The sampled no-contact units with their outcomes, and the share of eligible pairs they are."""
    from omni_ml.labels import purchase_labels

    pause, acceptance = _sample_pause_pairs(hist, customers, days["cutoff"], all_contacts, cfg, target)
    if pause.height == 0:
        msg = (
            "channel choice needs no-contact units: no consented, uncontacted (customer, campaign day) pair was "
            "found. Hint: the historic policy contacted everyone; effects versus a pause cannot be estimated."
        )
        raise DataInsufficientError(msg)
    labels = purchase_labels(hist, pause, cfg.window_days, as_of=t)
    if isinstance(labels, pl.LazyFrame):
        labels = labels.collect()
    pause_units = pause.join(
        labels.select(
            "customer_id", pl.col("cutoff").cast(TIMESTAMP), pl.col("label").cast(pl.Int8).alias("converted")
        ),
        on=["customer_id", "cutoff"],
        how="left",
    ).select(
        "customer_id",
        pl.col("cutoff").cast(TIMESTAMP),
        pl.lit(NO_CONTACT).alias("arm"),
        pl.col("converted").fill_null(0),
        pl.lit(None, dtype=pl.Float64).alias("assignment_probability"),
    )
    eligible_pairs = acceptance * customers.len() * days.height
    return pause_units, pause.height / max(eligible_pairs, 1.0)


def _logged_pause_units(outcomes: pl.DataFrame | pl.LazyFrame, period: pl.Expr) -> pl.DataFrame:
    """The logged pauses (contacts rows on ``no_contact``) of the training period, population weight 1 each."""
    logged_pauses = outcomes.filter(period & (pl.col("channel") == NO_CONTACT))
    if isinstance(logged_pauses, pl.LazyFrame):
        logged_pauses = logged_pauses.collect()
    return logged_pauses.select(
        "customer_id",
        pl.col("timestamp").cast(TIMESTAMP).alias("cutoff"),
        pl.lit(NO_CONTACT).alias("arm"),
        pl.col("converted").cast(pl.Int8),
        pl.col("assignment_probability").cast(pl.Float64),
        pl.lit(1.0).alias("sample_weight_population"),
    )


def _unit_features(hist: Histories, keys: pl.DataFrame, cfg: ChannelConfig, t: dt.datetime) -> tuple[pl.DataFrame, Any]:
    """The model inputs of each unit (features as of its cutoff, response history) and the feature set.

    The feature set's features and the response history's hidden features are built in one engine plan.
    """
    from omni_ml.features import FeatureSet

    feature_set = FeatureSet.from_histories(hist, cfg.feature_config(), before=t)
    with_history, with_baseline = cfg.response_columns
    spec = ResponseSpec(tuple(cfg.channels), cfg.window_days, with_baseline) if with_history else None
    X = _model_inputs(hist, keys.select("customer_id", "cutoff"), feature_set, spec)
    if X.height != keys.height:
        msg = f"build_features returned {X.height:,} rows for {keys.height:,} decision units; expected one per unit."
        raise SchemaError(msg)
    return X, feature_set


def _model_inputs(hist: Histories, keys: pl.DataFrame, feature_set: Any, spec: ResponseSpec | None) -> pl.DataFrame:
    """The feature set's columns and, with ``spec``, the response-history columns, from one engine plan."""
    from omni_ml.features import build_feature_frames

    features = [*feature_set.features, *(spec.features() if spec is not None else [])]
    frame = build_feature_frames(hist, keys, features, config=feature_set.config)
    X = frame.select(feature_set.names)
    return X if spec is None else pl.concat([X, spec.frame(frame)], how="horizontal")


def _sample_pause_pairs(
    hist: Histories,
    customers: pl.Series,
    cutoffs: pl.Series,
    all_contacts: pl.DataFrame,
    cfg: ChannelConfig,
    target: int,
) -> tuple[pl.DataFrame, float]:
    """``target`` eligible (customer, campaign day) pairs drawn uniformly, and the eligible share of the pairs drawn.

    Eligible: no contact from the start of the day to the end of the response window (``pause_units="day"``:
    to the end of the day), and consent to at least one of ``cfg.channels`` at the cutoff. The first round
    draws ``3 * target + 100`` pairs; when
    fewer than ``target`` of them are eligible (about a third are, so ``pause_ratio=3`` used to fall a few
    percent short), further rounds draw new pairs from the same seeded stream until ``target`` is reached
    or no eligible pair is left to find. The eligible share is counted over *distinct* pairs drawn: they are
    a uniform sample of all pairs, whereas counting repeated draws as misses underestimated the eligible
    pairs (by 8 % at ``pause_ratio=1`` on the default world and 21 % at ``pause_ratio=3``, where a
    draw hits a pair already drawn more often), and so overstated ``sampling_fraction``.
    """
    from omni_ml.identity import consent_state

    rng = np.random.default_rng(cfg.seed)
    # A pair is a pause when the customer was not contacted in the response window after the campaign
    # day ("window"), or not on the campaign day itself ("day"); see ChannelConfig.pause_units.
    if cfg.pause_units == "window":
        blocked_until = pl.col("cutoff") + dt.timedelta(days=cfg.window_days)
    else:
        blocked_until = pl.col("cutoff").dt.truncate("1d") + dt.timedelta(days=1)
    contacts = all_contacts.select("customer_id", pl.col("timestamp").alias("__ts"))
    n_draw, n_distinct, n_found = int(target * 3 + 100), 0, 0
    seen: pl.DataFrame | None = None
    found: list[pl.DataFrame] = []
    for _ in range(_MAX_DRAW_ROUNDS):
        drawn = pl.DataFrame(
            {
                "customer_id": customers.gather(rng.integers(0, customers.len(), n_draw)),
                "cutoff": cutoffs.gather(rng.integers(0, cutoffs.len(), n_draw)),
            }
        ).unique(maintain_order=True)
        if seen is not None:  # a pair drawn in an earlier round is not drawn again
            drawn = drawn.join(seen, on=["customer_id", "cutoff"], how="anti", maintain_order="left")
        seen = drawn if seen is None else pl.concat([seen, drawn])
        n_distinct += drawn.height
        touched = (
            drawn.with_row_index("__u")
            .join(contacts, on="customer_id")
            .filter(_time.window(pl.col("cutoff").dt.truncate("1d"), end=blocked_until, column="__ts"))
            .select("__u")
            .unique()
        )
        candidates = drawn.with_row_index("__u").join(touched, on="__u", how="anti", maintain_order="left")
        consent = consent_state(hist, candidates.select("customer_id", "cutoff"), channels=list(cfg.channels))
        any_consent = consent.select(pl.any_horizontal(pl.exclude("customer_id", "cutoff"))).to_series()
        eligible = candidates.filter(any_consent).drop("__u")
        found.append(eligible)
        n_found += eligible.height
        if n_found >= target or eligible.height == 0:
            break
        n_draw = int(np.ceil(1.25 * (target - n_found) * n_draw / max(eligible.height, 1))) + 100
    pairs = pl.concat(found)
    if pairs.height < target:
        warnings.warn(
            f"channel_training_data: pause_ratio={cfg.pause_ratio:g} asks for {target:,} no-contact units, but only "
            f"{pairs.height:,} (customer, campaign day) pairs without a contact and with consent were found; all "
            "of them are used. Hint: lower pause_ratio.",
            UserWarning,
            stacklevel=3,
        )
    return pairs.head(target), pairs.height / max(n_distinct, 1)


def channel_features(
    model: ChannelModel,
    hist: Histories,
    as_of: dt.datetime,
    *,
    customers: Sequence[str] | pl.Series | None = None,
    features: pl.DataFrame | None = None,
    response: pl.DataFrame | None = None,
) -> tuple[pl.Series, pl.DataFrame]:
    """The customers and the channel model's input rows as of ``as_of`` (see :func:`predict_channel_effects`).

    Returns ``(customer_id, X)`` with one row of ``X`` per customer, in the order of ``customer_id``;
    with the response-history columns the model was fitted on (see :class:`ChannelConfig`).

    ``features``: the model's feature-set columns already built for ``customers`` as of ``as_of`` (one row
    per customer, in order; e.g. sliced from one plan shared with other consumers, see
    :func:`omni_ml.features.build_feature_frames`); ``response``: likewise its response-history columns
    (:meth:`ResponseSpec.frame <omni_ml.models._channel_response.ResponseSpec.frame>` of the same plan, with
    the model's :func:`response_spec`). What is not given is built here, in one engine plan.
    """
    check_is_fitted(model, "boosters_")
    t = as_utc(as_of)
    if customers is None:
        ids = [hist.events.filter(before(t)).select("customer_id")]
        ids += [lf.select("customer_id") for lf in (hist.consents, hist.customers) if lf is not None]
        who = pl.concat(ids).drop_nulls().unique().sort("customer_id").collect()["customer_id"]
    else:
        who = pl.Series("customer_id", list(customers), dtype=pl.String)
    keys = pl.DataFrame({"customer_id": who, "cutoff": pl.Series([t] * who.len(), dtype=TIMESTAMP)})
    spec = response_spec(model) if response is None else None
    if features is None:
        feature_set = getattr(model, "feature_set_", None)
        if feature_set is None:
            from omni_ml.features import FeatureSet

            feature_set = FeatureSet.from_histories(hist, None, before=t)
        frame = _model_inputs(hist, keys, feature_set, spec)
    else:
        frame = _given_features(model, features, customers)
        if spec is not None:
            extra = response_history(hist, keys, spec.channels, spec.window_days, baseline=spec.baseline)
            frame = pl.concat([frame, extra], how="horizontal")
    if response is not None:
        frame = pl.concat([frame, response], how="horizontal")
    return who, frame


def _given_features(
    model: ChannelModel, features: pl.DataFrame, customers: Sequence[str] | pl.Series | None
) -> pl.DataFrame:
    """``features`` checked against the model's feature set and the customers (see :func:`channel_features`)."""
    feature_set = getattr(model, "feature_set_", None)
    if customers is None or feature_set is None:
        msg = (
            "channel_features: precomputed features need the customers they belong to and a model with a "
            "feature set. Hint: pass customers=... (the rows' customer ids, in order), or leave features out."
        )
        raise ConfigError(msg)
    n = len(customers)
    if features.height != n or features.columns != feature_set.names:
        missing = [c for c in feature_set.names if c not in features.columns]
        msg = (
            f"channel_features: features has {features.height:,} rows and {features.width} columns; expected "
            f"{n:,} rows (one per customer) and the model's {len(feature_set.names)} feature columns in order "
            f"(missing {missing[:5]}). Hint: select model.feature_set_.names from the frame built for customers."
        )
        raise SchemaError(msg)
    return features


def response_spec(model: ChannelModel) -> ResponseSpec | None:
    """The :class:`ResponseSpec` of the model's response-history columns, ``None`` without them.

    From ``training_summary_`` (:func:`fit_channel_model`); for a model fitted directly on
    :func:`channel_training_data`'s ``X`` (no summary), from its feature names, with the default
    response window of :class:`ChannelConfig` and a warning: the window the columns were built with
    is not recorded in the model (``fit_channel_model(hist, as_of, config, data=units)`` records it).
    """
    from omni_ml.models.channel import ChannelConfig

    summary = getattr(model, "training_summary_", None) or {}
    if "response_history" in summary:
        if not summary["response_history"]:
            return None
        return ResponseSpec(
            tuple(summary["channels"]), int(summary["window_days"]), bool(summary.get("response_baseline", False))
        )
    names = model.feature_names_
    channels = [n.removeprefix("resp_contacts_") for n in names if n.startswith("resp_contacts_")]
    channels = [c for c in channels if c != "all"]
    if not channels:
        return None
    warnings.warn(
        "ChannelModel has response-history columns but no training_summary_ (it was fitted outside "
        f"fit_channel_model): they are rebuilt with the default {ChannelConfig.window_days}-day response window, "
        "which is wrong if the training data used another window_days. Hint: fit with "
        "fit_channel_model(hist, as_of, config, data=units) to record the settings.",
        UserWarning,
        stacklevel=3,
    )
    return ResponseSpec(tuple(channels), ChannelConfig.window_days, "resp_baseline_rate" in names)
