"""Best channel per customer: the incremental conversion of contacting on each channel versus not contacting.

For a customer with history ``x`` and each contactable channel ``c`` the model estimates
``P(convert | x, contacted on c now)`` and ``P(convert | x, not contacted)``; the incremental effect
(uplift) is their difference. "Convert" means at least one purchase in ``[t, t + window)`` after the
decision moment ``t``.

Learners (meta-learners in the sense of Kunzel, Sekhon, Bickel & Yu 2019, PNAS 116:4156):

- ``"s"`` (S-learner, the default): one LightGBM classifier on the features plus the arm (``no_contact``
  or the channel) as an integer-coded categorical feature; effects come from predicting every arm for
  each customer. Shares strength across arms (few contacts on a rare channel still borrow the baseline
  response), but may shrink effects towards zero when the arm rarely wins a split.
- ``"t"`` (T-learner): one LightGBM classifier per arm; effects are differences of separately fitted
  models. No shrinkage of the arm, but noisier for arms with few rows (with effects of a few percentage
  points against base rates of 3-10 %, separately fitted models mostly difference their noise).

Inputs: the features of :mod:`omni_ml.features` as of each decision, optionally the customer's response
history (:func:`response_history`: conversions after past contacts per channel and overall, and with
``baseline=True`` the same compared with the customer's own purchase rate outside response windows).

Training data (:func:`channel_training_data`) are the logged contacts of the historic policy (one row
per contact, features as of the contact's timestamp, outcome from
:func:`omni_ml.labels.contact_outcomes`) and a random sample of **no-contact units**: (customer,
campaign day) pairs in which a customer who had consented to at least one contactable channel was
not contacted on a day the historic policy ran a campaign (a day with contacts), with the cutoff
at that day's first contact and no contact in the following response window. They are drawn
uniformly among such pairs (``pause_ratio`` times as many as contacts); each stands for
``1 / sampling_fraction`` pairs (``sample_weight_population``), which matters for population totals
only: the model conditions on the arm, so the per-arm sampling rate does not bias it. A lookback longer
than the history starts at the first logged contact. **Logged pauses**
(contacts rows on channel ``no_contact``: the randomised control-group and explored pauses that
``omni-ml feedback`` appends) join them as no-contact units of their own, with their logged
``assignment_probability`` and population weight 1.

Debiasing with the logged ``assignment_probability`` (``weighting="ipw"``): a contact row is weighted
by ``1 / assignment_probability`` (clipped at ``max_weight``, normalised to mean 1 within its arm), so
each arm's rows stand for the whole population of decisions rather than the people the historic
policy preferred for that channel. This corrects covariate shift between arms that a finite,
regularised model would otherwise carry into its effect estimates; it adds variance, so the default is
``weighting="none"``: use ``"ipw"`` when the logging policy targeted on things the features see only
coarsely.

The measured shares of the oracle's gain for the defaults, the learners, the baselines and every variant
tried are in ``benchmarks/RESULTS.md`` (section "Channel policy"), with the commands that reproduce them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
from sklearn.utils.validation import check_is_fitted

from omni_ml import _time
from omni_ml._time import as_utc, before, window
from omni_ml.data import CONTACTABLE_CHANNELS, TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError
from omni_ml.models._channel_learner import NO_CONTACT, ChannelModel, Learner, Weighting
from omni_ml.models._channel_response import response_history

_MAX_DRAW_ROUNDS = 10  # rounds of no-contact draws (the first almost always suffices)

__all__ = [
    "NO_CONTACT",
    "ChannelConfig",
    "ChannelModel",
    "ChannelTrainingData",
    "channel_features",
    "channel_training_data",
    "fit_channel_model",
    "predict_channel_effects",
    "response_history",
]


# ----------------------------------------------------------------------------- from histories


@dataclasses.dataclass(frozen=True)
class ChannelConfig:
    """How :func:`fit_channel_model` builds training data and which learner it fits.

    Parameters
    ----------
    window_days
        Response window: a conversion is a purchase within this many days of the decision.
    lookback_days
        Decisions (contacts and no-contact units) from ``[as_of - lookback_days, as_of - window_days)``
        train the model; the end leaves every outcome window complete before ``as_of``. A lookback longer
        than the history adapts: training starts at the first logged contact (the days actually used are
        ``ChannelTrainingData.lookback_days_used`` and ``training_summary_["lookback_days_used"]``).
    pause_ratio
        No-contact units sampled per logged contact.
    channels
        Contactable channels to estimate.
    learner, weighting, n_estimators, learning_rate, num_leaves, min_child_samples
        Passed to :class:`ChannelModel`.
    features
        :class:`omni_ml.features.FeatureConfig` of the features (``None``: see :meth:`feature_config`).
    response_history
        Add :func:`response_history` columns (past contacts per channel, the conversions that followed
        them and their rate, over the whole history before each unit) to the features. ``False`` leaves
        every response-history column out (whatever ``response_baseline`` says).
    response_baseline
        With ``response_history``, also add its baseline-adjusted columns (``baseline=True``: the
        conversions the person's own purchase rate outside response windows would give, the shrunk excess
        per contact and the observed / expected ratio, per channel and overall; the usual rate and the
        days it was observed); the channel reasons put each of them in words (e.g. "bought 1.9x as often
        after past sms contacts as usual"). ``False``: the counts and rates only.
    pause_units
        Which (customer, campaign day) pairs are no-contact units: ``"window"`` (default) pairs without a
        contact from the start of the day to the end of the response window; ``"day"`` pairs without a
        contact on the campaign day itself (later contacts, like those that follow a logged contact,
        belong to the outcome). ``"window"`` selects on the future: a customer who buys in the window is
        targeted more by a policy that favours recent buyers, so is more often excluded, which lowers the
        no-contact conversion and inflates every channel's uplift; ``"day"`` compares like with like.
    calibrate_pause
        When the training period holds at least ``min_logged_pauses`` logged pauses (randomised
        control-group and explored ``no_contact`` decisions fed back by ``omni-ml feedback``), shift the
        no-contact arm's log-odds so its mean prediction on them equals their observed conversion rate,
        each weighted by ``1 / assignment_probability`` (:meth:`ChannelModel.calibrate_arm`): a level bias
        of the sampled no-contact units (see ``pause_units``) then leaves every channel's uplift. Off by
        default: the offset is only as precise as the logged pauses' conversion rate (a few thousand
        pauses at a 3 % rate leave it within about +-15 %), and it moves the no-contact arm alone.
    min_logged_pauses
        Fewest logged pauses (with at least one conversion) for ``calibrate_pause``.
    seed
        Seed of the no-contact sampling and of LightGBM.
    """

    window_days: int = 7
    lookback_days: int = 365
    pause_ratio: float = 1.0
    channels: tuple[str, ...] = CONTACTABLE_CHANNELS
    learner: Learner = "s"
    weighting: Weighting = "none"
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 40
    features: Any = None
    response_history: bool = True
    response_baseline: bool = True
    pause_units: Literal["window", "day"] = "window"
    calibrate_pause: bool = False
    min_logged_pauses: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window_days < 1 or self.lookback_days <= self.window_days:
            msg = (
                f"ChannelConfig: need window_days >= 1 and lookback_days > window_days "
                f"(got {self.window_days}, {self.lookback_days})."
            )
            raise ConfigError(msg)
        if self.pause_ratio <= 0:
            msg = f"ChannelConfig: pause_ratio must be > 0 (got {self.pause_ratio})."
            raise ConfigError(msg)

    @property
    def response_columns(self) -> tuple[bool, bool]:
        """``(response history on, its baseline-adjusted columns on)`` as training and scoring apply them."""
        return self.response_history, self.response_history and self.response_baseline

    def feature_config(self) -> Any:
        """The feature config used: ``features``, else the defaults with a 365-day engagement window.

        Per-channel opens and clicks are rare; a year of them says more about a person's channel
        affinity than 90 days.
        """
        from omni_ml.features import FeatureConfig

        return self.features if self.features is not None else FeatureConfig(engagement_window=365)

    def model(self) -> ChannelModel:
        """The unfitted :class:`ChannelModel` this config describes."""
        return ChannelModel(
            learner=self.learner,
            weighting=self.weighting,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.seed,
        )


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
    from omni_ml.features import FeatureSet, build_features
    from omni_ml.labels import contact_outcomes, purchase_labels

    cfg = config or ChannelConfig()
    t = as_utc(as_of)
    start = t - dt.timedelta(days=cfg.lookback_days)
    stop = t - dt.timedelta(days=cfg.window_days)
    all_contacts = _require_contacts(hist, cfg.channels)
    # A lookback longer than the history adapts: the period starts at the first logged contact.
    first_contact = all_contacts["timestamp"].min()
    shortened = isinstance(first_contact, dt.datetime) and first_contact > start
    if shortened:
        start = first_contact  # type: ignore[assignment]
    period = window(start, end=stop)
    outcomes = contact_outcomes(hist, cfg.window_days, as_of=t, incomplete="drop")
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
    contact_units = logged.select(
        "customer_id",
        pl.col("timestamp").cast(TIMESTAMP).alias("cutoff"),
        pl.col("channel").alias("arm"),
        pl.col("converted").cast(pl.Int8),
        pl.col("assignment_probability").cast(pl.Float64),
    )

    # no-contact units: (customer, campaign day) pairs without a contact in [cutoff, cutoff + window)
    days = (
        all_contacts.filter(period)
        .group_by(pl.col("timestamp").dt.truncate("1d").alias("day"))
        .agg(pl.col("timestamp").min().alias("cutoff"), pl.len().alias("n"))
        .sort("day")
    )
    # a campaign day sends to many; a stray contact (e.g. a service call-back) does not make one
    median_sent = days["n"].cast(pl.Float64).median()
    days = days.filter(pl.col("n") >= max(2.0, 0.1 * (float(median_sent) if median_sent is not None else 0.0)))  # type: ignore[arg-type]
    customers = (
        pl.concat(
            [hist.events.select("customer_id")]
            + [lf.select("customer_id") for lf in (hist.consents, hist.customers) if lf is not None]
        )
        .drop_nulls()
        .unique()
        .sort("customer_id")
        .collect()["customer_id"]
    )
    target = int(np.ceil(cfg.pause_ratio * contact_units.height))
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
    sampling_fraction = pause.height / max(eligible_pairs, 1.0)
    # Logged pauses (contacts rows on channel no_contact: control-group and explored pauses fed back by
    # `omni-ml feedback`) are randomised no-contact units with a known assignment probability; they stand for
    # themselves (population weight 1), the sampled pairs for 1 / sampling_fraction pairs each.
    logged_pauses = outcomes.filter(period & (pl.col("channel") == NO_CONTACT))
    if isinstance(logged_pauses, pl.LazyFrame):
        logged_pauses = logged_pauses.collect()
    decided = logged_pauses.select(
        "customer_id",
        pl.col("timestamp").cast(TIMESTAMP).alias("cutoff"),
        pl.lit(NO_CONTACT).alias("arm"),
        pl.col("converted").cast(pl.Int8),
        pl.col("assignment_probability").cast(pl.Float64),
        pl.lit(1.0).alias("sample_weight_population"),
    )
    keys = pl.concat(
        [
            pl.concat([contact_units, pause_units]).with_columns(
                pl.when(pl.col("arm") == NO_CONTACT)
                .then(1.0 / sampling_fraction)
                .otherwise(1.0)
                .alias("sample_weight_population")
            ),
            decided,
        ]
    )
    feature_set = FeatureSet.from_histories(hist, cfg.feature_config(), before=t)
    frame = build_features(hist, keys.select("customer_id", "cutoff"), feature_set=feature_set)
    X = frame.drop("customer_id", "cutoff")
    with_history, with_baseline = cfg.response_columns
    if with_history:
        extra = response_history(
            hist, keys.select("customer_id", "cutoff"), cfg.channels, cfg.window_days, baseline=with_baseline
        )
        X = pl.concat([X, extra], how="horizontal")
    if X.height != keys.height:
        msg = f"build_features returned {X.height:,} rows for {keys.height:,} decision units; expected one per unit."
        raise SchemaError(msg)
    return ChannelTrainingData(
        X=X,
        keys=keys,
        feature_set=feature_set,
        sampling_fraction=sampling_fraction,
        n_campaign_days=days.height,
        lookback_days_used=(t - start).total_seconds() / 86_400.0,
    )


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


def fit_channel_model(
    hist: Histories,
    as_of: dt.datetime,
    config: ChannelConfig | None = None,
    *,
    data: ChannelTrainingData | None = None,
) -> ChannelModel:
    """Fit a :class:`ChannelModel` from histories as of ``as_of`` (the helper the CLI and pyfunc call).

    ``data``: the :func:`channel_training_data` of ``hist`` at ``as_of`` with ``config``, if already built.

    Raises
    ------
    DataInsufficientError
        For a transaction-only history (no contacts table or no contacts on a contactable channel).
    """
    cfg = config or ChannelConfig()
    data = data if data is not None else channel_training_data(hist, as_of, cfg)
    model = cfg.model().fit(data.X, data.arm, data.y, assignment_probability=data.keys["assignment_probability"])
    probability = data.keys["assignment_probability"]
    logged = ((data.arm == NO_CONTACT) & probability.is_not_null() & (probability > 0)).fill_null(False)
    n_logged = int(logged.sum())
    converted = int(data.y[logged.to_numpy()].sum())
    pause_offset = None
    if cfg.calibrate_pause and n_logged >= cfg.min_logged_pauses and 0 < converted < n_logged:
        pause_offset = model.calibrate_arm(
            data.X.filter(logged),
            NO_CONTACT,
            data.y[logged.to_numpy()],
            sample_weight=1.0 / probability.filter(logged).to_numpy(),
        )
    model.training_summary_ = {
        "n_units": data.keys.height,
        "n_per_arm": model.n_rows_per_arm_,
        "sampling_fraction_no_contact": data.sampling_fraction,
        "n_campaign_days": data.n_campaign_days,
        "window_days": cfg.window_days,
        "lookback_days": cfg.lookback_days,
        "lookback_days_used": data.lookback_days_used,
        "response_history": cfg.response_columns[0],
        "response_baseline": cfg.response_columns[1],
        "channels": list(cfg.channels),
        "logged_pauses": n_logged,
        "pause_offset": pause_offset,
    }
    model.feature_set_ = data.feature_set
    return model


def predict_channel_effects(
    model: ChannelModel, hist: Histories, as_of: dt.datetime, *, customers: Sequence[str] | pl.Series | None = None
) -> pl.DataFrame:
    """Per-channel estimates for customers as of ``as_of`` (features from history strictly before it).

    ``customers`` defaults to every customer known before ``as_of`` (events, contacts, consents,
    customers). Returns the long frame of :meth:`ChannelModel.predict_effects`.
    """
    who, frame = channel_features(model, hist, as_of, customers=customers)
    return model.predict_effects(frame, customer_id=who)


def channel_features(
    model: ChannelModel,
    hist: Histories,
    as_of: dt.datetime,
    *,
    customers: Sequence[str] | pl.Series | None = None,
    features: pl.DataFrame | None = None,
) -> tuple[pl.Series, pl.DataFrame]:
    """The customers and the channel model's input rows as of ``as_of`` (see :func:`predict_channel_effects`).

    Returns ``(customer_id, X)`` with one row of ``X`` per customer, in the order of ``customer_id``;
    with the response-history columns the model was fitted on (see :class:`ChannelConfig`).

    ``features``: the model's feature-set columns already built for ``customers`` as of ``as_of`` (one row
    per customer, in order; e.g. sliced from one plan shared with other consumers, see
    :func:`omni_ml.features.build_feature_frames`); only the response history is then computed here.
    """
    from omni_ml.features import build_features

    check_is_fitted(model, "boosters_")
    t = as_utc(as_of)
    if customers is None:
        ids = [hist.events.filter(before(t)).select("customer_id")]
        ids += [lf.select("customer_id") for lf in (hist.consents, hist.customers) if lf is not None]
        who = pl.concat(ids).drop_nulls().unique().sort("customer_id").collect()["customer_id"]
    else:
        who = pl.Series("customer_id", list(customers), dtype=pl.String)
    keys = pl.DataFrame({"customer_id": who, "cutoff": pl.Series([t] * who.len(), dtype=TIMESTAMP)})
    if features is None:
        frame = build_features(hist, keys, feature_set=getattr(model, "feature_set_", None)).drop(
            "customer_id", "cutoff"
        )
    else:
        frame = _given_features(model, features, customers)
    settings = _response_settings(model)
    if settings is not None:
        channels, window_days, baseline = settings
        extra = response_history(hist, keys, channels, window_days, baseline=baseline)
        frame = pl.concat([frame, extra], how="horizontal")
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


def _response_settings(model: ChannelModel) -> tuple[list[str], int, bool] | None:
    """``(channels, window_days, baseline)`` of the model's response-history columns, ``None`` without them.

    From ``training_summary_`` (:func:`fit_channel_model`); for a model fitted directly on
    :func:`channel_training_data`'s ``X`` (no summary), from its feature names, with the default
    response window of :class:`ChannelConfig` and a warning: the window the columns were built with
    is not recorded in the model (``fit_channel_model(hist, as_of, config, data=units)`` records it).
    """
    summary = getattr(model, "training_summary_", None) or {}
    if "response_history" in summary:
        if not summary["response_history"]:
            return None
        return list(summary["channels"]), int(summary["window_days"]), bool(summary.get("response_baseline", False))
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
    return channels, ChannelConfig.window_days, "resp_baseline_rate" in names
