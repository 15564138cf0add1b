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
from collections.abc import Sequence
from typing import Any, Literal

import polars as pl

from omni_ml.data import CONTACTABLE_CHANNELS, Histories
from omni_ml.exceptions import ConfigError
from omni_ml.models._channel_data import ChannelTrainingData, channel_features, channel_training_data
from omni_ml.models._channel_data import _sample_pause_pairs as _sample_pause_pairs  # tests import it from here
from omni_ml.models._channel_learner import NO_CONTACT, ChannelModel, Learner, Weighting
from omni_ml.models._channel_response import response_history

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
