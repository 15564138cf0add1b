"""The campaign model: one fitted bundle that turns raw histories and an as-of date into the campaign table.

:class:`CampaignModel` holds everything a scoring job needs, fitted together at one as-of date:

* the :class:`~omni_ml.features.FeatureSet` (feature definitions + vocabularies learned at fit time);
* the calibrated :class:`~omni_ml.models.PropensityModel` (P(purchase within the horizon));
* the propensity **decile edges**: the 10%, 20%, ... 90% quantiles of the propensity model's raw score
  (log-odds; the calibrated propensity is a monotone function of it, so the order is the same, and
  with ``calibration="isotonic"`` a step function whose ties the raw score does not have) over the
  training rows at the latest training cutoff (the population closest to the one being scored).
  A scored customer's ``propensity_decile`` (1 = highest ten percent, as in
  :func:`omni_ml.evaluation.lift_table`) compares their propensity with these *fixed* thresholds, never
  with quantiles of the batch being scored, so a customer gets the same decile whether scored alone,
  in any chunk or with everyone. The share of customers per decile at scoring time therefore shows
  drift instead of being exactly 10%;
* optionally a :class:`~omni_ml.models.ChannelModel` (per-channel incremental conversion) and the
  :class:`~omni_ml.policy.PolicyConfig` that turns its estimates into one decision per customer
  (consent, pressure, cool-down, service, category suppression, value). Without logged contacts
  (a plain transaction log) there is no channel model: every decision is ``no_contact`` with rule
  ``no_channel_model`` and propensity still works;
* explanation settings (how many reason codes by default).

:meth:`CampaignModel.score` is a pure function of each customer's own rows: features, propensity,
deciles, consent, history facts, decisions and reasons are computed customer by customer, so the
output for any partition of customers is the corresponding subset of the output for all of them
(what lets :func:`omni_ml.scoring.score` work in chunks and on Spark). Save with :meth:`save`,
load with :meth:`CampaignModel.load` (joblib); the MLflow pyfunc in ``omni_ml/_mlflow_model.py`` wraps it.
The steps of a scoring chunk are in ``omni_ml/_campaign_scoring.py``, the fit's other parts (channel
model, send times, CLV) in ``omni_ml/_campaign_fit.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from omni_ml._campaign_fit import (
    fit_channel,
    fit_clv,
    fit_timing,
    policy_with_logged_costs,
    reason_reference,
    rows_before,
)
from omni_ml._campaign_scoring import (
    N_DECILES,
    NO_CHANNEL_MODEL,
    SEND_TIME_SCHEMA,
    ChunkInputs,
    chunk_decisions,
    chunk_inputs,
    ranking_scores,
    reason_schema,
    score_personal,
    send_times,
)
from omni_ml._campaign_scoring import clv_12m as _clv_12m  # noqa: F401 - imported from here by a benchmark
from omni_ml._customer_inputs import check_customer_columns, check_customers, customer_attributes
from omni_ml._time import as_utc
from omni_ml._unprofiled import (
    UnprofiledMode,
    check_mode,
    population_effects,
    split_unprofiled,
    unprofiled_customers,
    unprofiled_rows,
)
from omni_ml.config import check_keys, from_mapping, from_yaml
from omni_ml.data import CONTACTABLE_CHANNELS, TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, ModelNotFoundError
from omni_ml.identity import ensure_resolved
from omni_ml.models.channel import ChannelConfig
from omni_ml.models.value import ValueConfig
from omni_ml.monitor import training_reference
from omni_ml.policy import PolicyConfig
from omni_ml.training import TrainConfig

__all__ = [
    "NO_CHANNEL_MODEL",
    "CampaignConfig",
    "CampaignModel",
    "CampaignModelLike",
    "ExperimentConfig",
    "load_experiment",
]


@dataclasses.dataclass(frozen=True)
class CampaignConfig:
    """How :meth:`CampaignModel.fit` trains the bundle (build from YAML with ``omni_ml.config.from_yaml``).

    Parameters
    ----------
    train
        Propensity recipe: a :class:`~omni_ml.training.TrainConfig` (cutoff spacing and count,
        back-test cutoffs, LightGBM parameters, feature config). A mapping of its fields is converted
        here, once; ``None`` means the defaults.
    channel
        Channel-model recipe (:class:`~omni_ml.models.channel.ChannelConfig`; a mapping is converted);
        ``None`` never fits one (every decision is ``no_contact`` / ``no_channel_model``).
    policy
        Business rules of the decision (:class:`~omni_ml.policy.PolicyConfig`; a mapping is converted).
    costs_from_contacts
        Replace the policy's channel costs by the mean logged cost per channel (where logged).
    reasons
        Default number of reason codes per customer.
    value_margin
        ``None`` (default): the policy values every conversion at ``policy.conversion_value``. A number:
        each customer's conversion is worth ``value_margin x`` their expected revenue given a purchase
        (orders per buyer x shrunk mean order value, :class:`~omni_ml.models.value.OrderValueStats`),
        passed to :func:`~omni_ml.policy.decide` as ``values``.
    value_model
        ``None`` (default): the campaign table's ``customer_value`` (expected revenue over the horizon) is
        the heuristic propensity x orders per buyer x shrunk order value. A
        :class:`~omni_ml.models.value.ValueConfig` or mapping of its fields (``horizon_days`` defaults to
        the propensity horizon): a LightGBM value model is fitted and predicts it instead. A mapping is
        checked here (unknown keys are a :class:`~omni_ml.exceptions.ConfigError`) and completed with
        the propensity horizon at fit time.
    channel_backtest_days
        Held-out days of the channel policy's off-policy back-test
        (:func:`omni_ml.evaluation.channel_backtest`: learned policy, random channel and always-email, valued
        over pausing everyone with IPS / SNIPS / DR and 95% intervals); its metrics join ``metrics_``.
        ``None`` skips it.
    timing
        Send-time recipe (:class:`~omni_ml.timing.TimingConfig` or a mapping of its fields; ``{}``: its
        defaults): the campaign table gets ``send_weekday, send_hour, send_time_zone, send_on,
        send_time_reason``. ``None`` leaves those columns null.

    Examples
    --------
    >>> from omni_ml.config import from_mapping
    >>> cfg = from_mapping(CampaignConfig, {"train": {"n_cutoffs": 4}, "channel": None, "reasons": 2})
    >>> cfg.channel is None, cfg.reasons
    (True, 2)
    """

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    channel: ChannelConfig | None = dataclasses.field(default_factory=ChannelConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    costs_from_contacts: bool = True
    reasons: int = 3
    value_margin: float | None = None
    value_model: Any = None  # ValueConfig | Mapping | None: a mapping waits for the propensity horizon
    channel_backtest_days: int | None = 42
    timing: Any = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        def build(name: str, cls: type, default: Any) -> None:
            value = getattr(self, name)
            if value is None:
                value = default
            elif isinstance(value, Mapping):
                value = from_mapping(cls, value, where=f"campaign.{name}")
            elif not isinstance(value, cls):
                got = type(value).__name__
                msg = f"campaign.{name}: expected a {cls.__name__} or a mapping of its fields, got {got}."
                raise ConfigError(msg)
            object.__setattr__(self, name, value)

        build("train", TrainConfig, TrainConfig())
        build("channel", ChannelConfig, None)
        build("policy", PolicyConfig, PolicyConfig())
        _check_model_keys(self.train.model)
        if isinstance(self.value_model, Mapping):
            # every key checked now (nested features too); built at fit with the propensity horizon as default
            from_mapping(ValueConfig, {"horizon_days": 1, **self.value_model}, where="campaign.value_model")
            object.__setattr__(self, "value_model", dict(self.value_model))
        elif self.value_model is not None and not isinstance(self.value_model, ValueConfig):
            got = type(self.value_model).__name__
            msg = f"campaign.value_model: expected a ValueConfig, a mapping or None, got {got}."
            raise ConfigError(msg)
        if not isinstance(self.reasons, int) or isinstance(self.reasons, bool) or not 0 <= self.reasons <= 20:
            msg = f"CampaignConfig.reasons must be an integer in 0..20 (got {self.reasons!r})."
            raise ConfigError(msg)
        if self.value_margin is not None and not (
            isinstance(self.value_margin, int | float) and self.value_margin >= 0
        ):
            msg = f"CampaignConfig.value_margin must be None or a number >= 0 (got {self.value_margin!r})."
            raise ConfigError(msg)
        days = self.channel_backtest_days
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 7):
            msg = f"CampaignConfig.channel_backtest_days must be None or an integer >= 7 (got {days!r})."
            raise ConfigError(msg)

    def resolved(self) -> tuple[TrainConfig, ChannelConfig | None, PolicyConfig]:
        """``(train, channel, policy)``: the typed parts (already built by the constructor)."""
        return self.train, self.channel, self.policy


def _check_model_keys(model: Mapping[str, Any]) -> None:
    """Unknown :class:`~omni_ml.models.PropensityModel` settings under ``train.model`` are a ConfigError."""
    from omni_ml.models import PropensityModel

    check_keys(model, PropensityModel().get_params(), where="campaign.train.model", what="PropensityModel")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """An experiment YAML (``experiments/*.yaml``): its MLflow experiment name and the campaign recipe.

    Examples
    --------
    >>> cfg = from_mapping(ExperimentConfig, {"experiment": "x", "campaign": {"channel": None, "reasons": 1}})
    >>> cfg.experiment, cfg.campaign.channel, cfg.campaign.reasons
    ('x', None, 1)
    """

    experiment: str | None = None
    campaign: CampaignConfig = dataclasses.field(default_factory=CampaignConfig)

    def __post_init__(self) -> None:
        if self.campaign is None:
            object.__setattr__(self, "campaign", CampaignConfig())
        elif isinstance(self.campaign, Mapping):
            object.__setattr__(self, "campaign", from_mapping(CampaignConfig, self.campaign, where="campaign"))


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML once into typed settings; a misspelt key at any level is a ConfigError.

    Raises
    ------
    ConfigError
        Missing or invalid file, or an unknown key (named with its closest known key).
    """
    return from_yaml(ExperimentConfig, path)


@runtime_checkable
class CampaignModelLike(Protocol):
    """What scoring, tracking and the MLflow pyfunc need of a campaign model (:class:`CampaignModel` has it)."""

    def score(self, hist: Histories, as_of: str | dt.date | dt.datetime, *, reasons: int | None = 3) -> pl.DataFrame:
        """The campaign table as of ``as_of``."""
        ...

    def output_schema(self, *, reasons: int = 3) -> pl.Schema:
        """Columns and types of :meth:`score`."""
        ...


class CampaignModel:
    """Features + propensity + (optional) channel model + policy + reason codes, fitted at one as-of date.

    Parameters
    ----------
    config
        The training recipe; :class:`CampaignConfig` defaults when ``None``.

    Attributes
    ----------
    config_ : CampaignConfig
        The config the fit used (``fit(config=...)`` or the constructor's or the defaults).
    as_of_ : datetime
        The as-of date of training (UTC). Scoring earlier than this would use a model that saw the future.
    horizon_days_ : int
        Propensity horizon: P(purchase in ``[as_of, as_of + horizon_days)``).
    feature_set_ : FeatureSet
        Feature definition of the propensity model.
    propensity_ : PropensityModel
        The calibrated propensity model (final fit on every training cutoff).
    decile_edges_ : tuple[float, ...]
        Nine ascending thresholds of the raw score (10%..90% quantiles at the latest training cutoff).
    channel_model_ : ChannelModel or None
        ``None`` without usable contacts; ``channel_note_`` then says why.
    policy_ : PolicyConfig
        The decision rules, with channel costs from the logged contacts when configured.
    metrics_ : dict[str, float]
        The propensity back-test metrics (out of time) and training sizes, and the channel policy's
        off-policy back-test metrics (``offpolicy_*``) when there is a channel model.
    channel_backtest_ : ChannelBacktest or None
        The channel policy's out-of-time off-policy back-test (:func:`omni_ml.evaluation.channel_backtest`).
    report_ : Report
        The full back-test report (tables and plots for MLflow).
    history_choice_ : omni_ml.training.HistoryChoice
        What training chose for the length of its history (calendar features and calibration map left out
        when the cutoffs span under a year, unless configured) and why.
    reference_ : omni_ml.monitor.Reference
        The training reference scoring runs are compared with (aggregates only, see :mod:`omni_ml.monitor`).

    Examples
    --------
    >>> CampaignModel().is_fitted
    False
    """

    def __init__(self, config: CampaignConfig | None = None) -> None:
        self.config = config

    # ------------------------------------------------------------------ state

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return hasattr(self, "propensity_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            msg = "CampaignModel is not fitted. Hint: call .fit(hist, as_of, horizon_days=...) or load a saved model."
            raise ModelNotFoundError(msg)

    @property
    def channels(self) -> tuple[str, ...]:
        """The contactable channels decisions may use (the ``score_<channel>`` columns)."""
        policy = getattr(self, "policy_", None)
        return tuple(policy.channels) if policy is not None else CONTACTABLE_CHANNELS

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        hist: Histories,
        as_of: str | dt.date | dt.datetime,
        *,
        horizon_days: int = 30,
        config: CampaignConfig | None = None,
    ) -> CampaignModel:
        """Fit every part at ``as_of``: propensity on stacked cutoffs, decile edges, channel model, policy.

        Parameters
        ----------
        hist
            Histories; identifier-only rows are resolved first (:func:`omni_ml.resolve_identities` as of ``as_of``),
            except for the propensity training rows, which are resolved as of their own cutoff (links seen later
            do not merge histories into an earlier row). The channel model's units still use the resolution as
            of ``as_of``.
        as_of
            The moment the data ends. Training labels all end at or before it.
        horizon_days
            Propensity horizon in days.
        config
            Used instead of the config given to the constructor for this fit (``self.config`` is left as
            it was; the config used is ``config_``).

        Returns
        -------
        CampaignModel
            ``self``, fitted.

        Raises
        ------
        DataInsufficientError, LeakageError, ConfigError
            From the training-set, propensity and channel helpers.
        """
        from omni_ml.evaluation import fit_propensity
        from omni_ml.training import adapt_to_history, fit_cutoffs, training_cutoffs, training_set

        cfg = config or self.config or CampaignConfig()
        train_cfg, policy = cfg.train, cfg.policy
        moment = as_utc(as_of, name="as_of")
        # The propensity rows at each cutoff t see identity links known before t only: training_set resolves
        # unresolved histories as of each cutoff (a link made at a later purchase, e.g. a login at checkout,
        # must not merge browsing into a row at t). The rest of the fit works on the histories as of `moment`.
        raw = rows_before(hist, moment)
        hist = ensure_resolved(raw, moment)

        cuts = fit_cutoffs(
            raw, training_cutoffs(moment, horizon_days, every_days=train_cfg.every_days, n=train_cfg.n_cutoffs)
        )
        train_cfg, history_choice = adapt_to_history(train_cfg, cuts)  # under a year of cutoffs: no calendar, no map
        ts = training_set(raw, cuts, horizon_days, config=train_cfg.features, as_of=moment)
        propensity, report = fit_propensity(hist, moment, horizon_days, train_cfg, ts=ts)

        latest = ts.keys["cutoff"] == ts.keys["cutoff"].max()
        ranks = ranking_scores(propensity, ts.X.filter(latest))[0]
        edges = np.quantile(ranks, np.arange(1, N_DECILES) / N_DECILES)

        if cfg.costs_from_contacts and hist.contacts is not None:
            policy = policy_with_logged_costs(policy, hist, moment)
        channel_model, note, backtest = fit_channel(hist, moment, cfg, policy)

        self.config_ = cfg
        self.history_choice_ = history_choice
        self.as_of_ = moment
        self.horizon_days_ = int(horizon_days)
        self.feature_set_ = ts.feature_set
        self.training_set_fingerprint_ = ts.fingerprint()  # logged by tracking as the MLflow training dataset
        self.propensity_ = propensity
        self.decile_edges_ = tuple(float(e) for e in edges)
        self.channel_model_ = channel_model
        self.channel_note_ = note
        self.policy_ = policy
        self.reasons_ = cfg.reasons
        self.reason_reference_ = reason_reference(ts.X.filter(latest))
        # the non-personal scores of people without a profiling consent (omni_ml._unprofiled)
        self.population_propensity_ = float(np.asarray(ts.y, dtype=np.float64)[latest.to_numpy()].mean())
        self.population_effects_ = (
            population_effects(channel_model, hist, moment) if channel_model is not None else None
        )
        self.channel_backtest_ = backtest
        self.metrics_ = {k: float(v) for k, v in report.metrics.items() if isinstance(v, int | float)}
        if backtest is not None:
            self.metrics_.update(backtest.metrics)
        self.report_ = report
        self._fit_value(hist, moment, cfg)
        self.timing_: Any = fit_timing(hist, moment, cfg.timing)
        self.reference_ = training_reference(self, hist, ts)
        return self

    def _fit_value(self, hist: Histories, moment: dt.datetime, cfg: CampaignConfig) -> None:
        from omni_ml.models.value import CustomerValueModel, OrderValueStats

        try:
            self.value_stats_: Any = OrderValueStats.fit(hist, moment, horizon_days=self.horizon_days_)
        except DataInsufficientError:
            self.value_stats_ = None
        self.value_margin_ = cfg.value_margin
        self.value_model_: Any = None
        if cfg.value_model is not None:
            vcfg = cfg.value_model
            if isinstance(vcfg, Mapping):
                vcfg = from_mapping(ValueConfig, {"horizon_days": self.horizon_days_, **vcfg}, where="value_model")
            self.value_model_ = CustomerValueModel(vcfg).fit(hist, moment)
        self.clv_models_: Any = fit_clv(hist, moment)

    # ------------------------------------------------------------------ score

    def output_schema(self, *, reasons: int = 3) -> pl.Schema:
        """Columns and types of :meth:`score` with ``reasons`` reason codes."""
        cols: dict[str, pl.DataType] = {
            "customer_id": pl.String(),
            "as_of": TIMESTAMP,
            "propensity": pl.Float64(),
            "propensity_decile": pl.Int8(),
            "best_channel": pl.String(),
            "expected_uplift": pl.Float64(),
            "expected_value": pl.Float64(),
            "customer_value": pl.Float64(),
            "clv_12m": pl.Float64(),
        }
        cols.update({f"score_{c}": pl.Float64() for c in self.channels})
        cols.update({"rule": pl.String(), "offer_category": pl.String(), "suppressed_category": pl.String()})
        cols["personalised"] = pl.Boolean()
        cols.update({f"reason_{k}": pl.String() for k in range(1, reasons + 1)})
        cols.update({f"channel_reason_{k}": pl.String() for k in range(1, reasons + 1)})
        cols.update(SEND_TIME_SCHEMA)
        cols.update(reason_schema(reasons))
        return pl.Schema(cols)

    def customer_attributes(self) -> dict[str, tuple[str, ...]]:
        """Columns of the customers table the fitted model reads, each with the features built from it."""
        return customer_attributes(self)

    def check_customer_columns(self, columns: Sequence[str] | None) -> None:
        """Raise when the customers table (its ``columns``; ``None``: no table) lacks a column the model reads."""
        check_customer_columns(self, columns)

    def check_customers(self, customers: pl.LazyFrame | None) -> None:
        """Raise when the customers table lacks a column the model reads or holds values it cannot read.

        See :mod:`omni_ml._customer_inputs`; ``score`` calls it before any work.
        """
        check_customers(self, customers)

    def score(
        self,
        hist: Histories,
        as_of: str | dt.date | dt.datetime,
        *,
        reasons: int | None = 3,
        unprofiled: UnprofiledMode | None = None,
        profiling_required: bool | None = None,
    ) -> pl.DataFrame:
        """The campaign table as of ``as_of``: one row per customer, sorted by ``customer_id``.

        Parameters
        ----------
        hist
            Histories (resolved or not; see :meth:`fit`). Every customer in the customers table or with
            an event before ``as_of`` gets a row.
        as_of
            Scoring moment: features and consent see only rows strictly before it.
        reasons
            Reason codes per customer (``None``: the config's default; 0: none, faster).
        unprofiled
            People without a profiling consent at ``as_of`` (:mod:`omni_ml._unprofiled`): ``"anonymous"``
            scores them without personal features (population propensity and channel, a non-personal
            reason, ``personalised`` false), ``"exclude"`` leaves them out. ``None``: the policy's
            ``unprofiled`` setting (default ``"anonymous"``).
        profiling_required
            Whether profiling consent is required; ``None``: when ``hist`` holds any profiling record (a
            chunked job decides it once over all customers).

        Returns
        -------
        polars.DataFrame
            :meth:`output_schema` columns: ``customer_id, as_of, propensity, propensity_decile (1 = top
            10%), best_channel (or no_contact), expected_uplift, expected_value, customer_value, score_<channel>...,
            rule, offer_category, suppressed_category, reason_1..reason_K, channel_reason_1..channel_reason_K,
            send_weekday, send_hour, send_time_zone, send_on, send_time_reason``.
            ``reason_*`` explain the propensity; ``channel_reason_*`` explain the channel decision (why the
            chosen channel rather than no contact: SHAP of the channel model's effect, in percentage points
            of conversion), null for ``no_contact``. ``customer_value`` is the expected
            revenue over the propensity horizon (the value model's, or propensity x orders per buyer x shrunk
            order value; null for a model saved before it existed). ``send_*`` come from the send-time model
            (:mod:`omni_ml.timing`; null when ``timing`` is disabled or for a model saved before it existed):
            the customer's best weekday (1 = Monday) and hour in ``send_time_zone``, and ``send_on``, the date
            of the recommended contact within the campaign period (null for ``no_contact``). ``clv_12m`` is the
            expected revenue over the next 12 months (52 weeks) by BG/NBD + Gamma-Gamma
            (:mod:`omni_ml.models.btyd`, fitted on the training histories), null for a customer without a
            purchase yet or when the models could not be fitted. ``personalised`` is false on the rows of
            people without a profiling consent, scored from population constants only.

        Raises
        ------
        ConsentError
            If a decision would contact a customer without consent (a bug guard: never expected).
        """
        self._check_fitted()
        k = self.reasons_ if reasons is None else int(reasons)
        schema = self.output_schema(reasons=k)
        moment = as_utc(as_of, name="as_of")
        mode = check_mode(unprofiled if unprofiled is not None else getattr(self.policy_, "unprofiled", "anonymous"))
        self.check_customers(hist.customers)
        hist = ensure_resolved(hist, moment)
        unprofiled_ids = unprofiled_customers(hist, moment, required=profiling_required)
        if unprofiled_ids.len() == 0:
            return self._score_personal(hist, moment, k, schema)
        # their events and attributes are never read by the personal pipeline
        others, theirs = split_unprofiled(hist, unprofiled_ids)
        out = self._score_personal(others, moment, k, schema)
        if mode == "exclude":
            return out
        rows = unprofiled_rows(self, theirs, moment, unprofiled_ids, k, schema)
        return pl.concat([out, rows]).sort("customer_id")

    def _score_personal(self, hist: Histories, moment: dt.datetime, k: int, schema: pl.Schema) -> pl.DataFrame:
        """The campaign rows of the customers of ``hist``, from their own histories (see :meth:`score`)."""
        return score_personal(self, hist, moment, k, schema)

    def _chunk_inputs(self, hist: Histories, moment: dt.datetime) -> ChunkInputs:
        """Every engine feature the chunk's consumers read, built in one plan (see :class:`ChunkInputs`)."""
        return chunk_inputs(self, hist, moment)

    def _decide(
        self, hist: Histories, moment: dt.datetime, ids: pl.Series, inputs: ChunkInputs | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """The decisions and the channel model's input rows (one per id, in order; ``None`` without a model).

        ``inputs`` (rows in the order of ``ids``) holds the engine features of the consumers it planned for;
        the others are built here.
        """
        return chunk_decisions(self, hist, moment, ids, inputs)

    def _send_times(self, timing: Any, hist: Histories, moment: dt.datetime, out: pl.DataFrame) -> pl.DataFrame:
        """``send_weekday, send_hour, send_time_zone, send_on, send_time_reason`` per row of ``out``."""
        return send_times(self, timing, hist, moment, out)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Save the fitted bundle with joblib (compressed) and its checksum ``<path>.sha256``; returns the path.

        Written through the atomic writer (:mod:`omni_ml._io`): a failed or interrupted save leaves no
        partial model under ``path`` (an earlier model there stays as it was). See
        :mod:`omni_ml._model_files` for what the checksum protects.
        """
        from omni_ml._model_files import dump_verified

        self._check_fitted()
        target = Path(path)
        dump_verified(self, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> CampaignModel:
        """Load a bundle saved with :meth:`save`, after checking its sha256 against ``<path>.sha256``.

        Raises
        ------
        ModelNotFoundError
            No such file, no or a wrong checksum (nothing is unpickled then), or not a CampaignModel.
        """
        from omni_ml._model_files import load_verified

        source = Path(path)
        obj = load_verified(source)
        if not isinstance(obj, cls):
            msg = f"model {str(source)!r} holds a {type(obj).__name__}, not a CampaignModel."
            raise ModelNotFoundError(msg)
        return obj

    def __repr__(self) -> str:
        if not self.is_fitted:
            return "CampaignModel(unfitted)"
        channel = "none" if self.channel_model_ is None else ",".join(self.channel_model_.channels_)
        return (
            f"CampaignModel(as_of={self.as_of_:%Y-%m-%d}, horizon_days={self.horizon_days_}, "
            f"features={len(self.feature_set_.names)}, channel_model={channel})"
        )
