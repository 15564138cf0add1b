"""The parts :meth:`CampaignModel.fit <omni_ml.campaign.CampaignModel.fit>` fits beside the propensity model.

The histories as of the fit (:func:`rows_before`), the policy's channel costs from the logged contacts
(:func:`policy_with_logged_costs`), the channel model and its off-policy back-test (:func:`fit_channel`),
the reason codes' reference (:func:`reason_reference`), the send-time model (:func:`fit_timing`) and the
BG/NBD + Gamma-Gamma models of the 12-month CLV (:func:`fit_clv`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

import polars as pl

from omni_ml._time import before
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError

if TYPE_CHECKING:
    from omni_ml.campaign import CampaignConfig
    from omni_ml.evaluation import ChannelBacktest
    from omni_ml.models import ChannelModel
    from omni_ml.policy import PolicyConfig
    from omni_ml.timing import SendTimeModel

__all__ = ["fit_channel", "fit_clv", "fit_timing", "policy_with_logged_costs", "reason_reference", "rows_before"]


def rows_before(hist: Histories, moment: dt.datetime) -> Histories:
    """Only rows strictly before ``moment``: nothing a model fitted at ``moment`` could not have known."""
    changes: dict[str, Any] = {
        table: lf.filter(before(moment))
        for table, lf in hist.tables().items()
        if "timestamp" in lf.collect_schema().names()
    }
    if hist.report is not None:
        changes["report"] = dataclasses.replace(hist.report, as_of=moment)
    return hist.replace(**changes)


def reason_reference(X: pl.DataFrame) -> dict[str, float]:
    """The baseline reason codes compare a customer with: the median of each feature over ``X``."""
    from omni_ml.explanation import reference_medians

    return reference_medians(X)


def policy_with_logged_costs(policy: PolicyConfig, hist: Histories, moment: dt.datetime) -> PolicyConfig:
    """``policy`` with the mean logged cost per channel before ``moment`` in place of its configured costs."""
    from omni_ml.policy import costs_from_contacts

    logged = costs_from_contacts(hist, before=moment)
    if logged:
        policy = dataclasses.replace(policy, channel_costs={**dict(policy.channel_costs), **logged})
    return policy


def fit_channel(
    hist: Histories, moment: dt.datetime, cfg: CampaignConfig, policy: PolicyConfig
) -> tuple[ChannelModel | None, str | None, ChannelBacktest | None]:
    """``(channel model or None, note, back-test or None)``: the note says why a model or back-test is missing."""
    from omni_ml.evaluation import channel_backtest
    from omni_ml.models.channel import channel_training_data, fit_channel_model

    channel_cfg = cfg.channel
    channel_model: ChannelModel | None = None
    note = None
    backtest: ChannelBacktest | None = None
    if channel_cfg is None:
        note = "channel model disabled in the config (channel: null)"
    elif hist.contacts is None:
        note = "the histories have no contacts table (plain transaction log): channel choice needs logged contacts"
    else:
        try:
            units = channel_training_data(hist, moment, channel_cfg)
            channel_model = fit_channel_model(hist, moment, channel_cfg, data=units)
        except DataInsufficientError as exc:
            note = str(exc)
        if channel_model is not None and cfg.channel_backtest_days is not None:
            try:
                backtest = channel_backtest(
                    hist,
                    moment,
                    channel_cfg,
                    policy,
                    holdout_days=cfg.channel_backtest_days,
                    data=units,
                    seed=channel_cfg.seed,
                )
            except DataInsufficientError as exc:
                note = f"channel back-test skipped: {exc}"
    return channel_model, note, backtest


def fit_timing(hist: Histories, moment: dt.datetime, timing: Any) -> SendTimeModel | None:
    """The send-time model of ``CampaignConfig.timing`` fitted at ``moment`` (``None`` when timing is disabled)."""
    from omni_ml.config import from_mapping
    from omni_ml.timing import SendTimeModel, TimingConfig

    if timing is None:
        return None
    tcfg = timing
    if isinstance(tcfg, dict):
        tcfg = from_mapping(TimingConfig, tcfg, where="CampaignConfig.timing")
    if not isinstance(tcfg, TimingConfig):
        msg = f"CampaignConfig.timing: expected a TimingConfig or a mapping of its fields, got {type(tcfg).__name__}."
        raise ConfigError(msg)
    return SendTimeModel(config=tcfg).fit(hist, moment)


def fit_clv(hist: Histories, moment: dt.datetime) -> tuple[Any, Any] | None:
    """BG/NBD + Gamma-Gamma fitted on every customer's purchases before ``moment`` (weeks); None if impossible."""
    from omni_ml.models.btyd import BetaGeoModel, GammaGammaModel, rfm_summary

    summary = rfm_summary(hist, moment, unit_days=7.0)
    repeat = summary.filter(pl.col("x") > 0)
    if summary.height < 10 or repeat.height < 10:
        return None  # a log this thin cannot identify four (three) parameters: clv_12m stays null
    purchases = BetaGeoModel().fit(summary["x"], summary["t_x"], summary["T"])
    value = GammaGammaModel().fit(repeat["x"], repeat["mean_value"])
    return purchases, value
