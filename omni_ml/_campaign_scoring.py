"""Scoring one chunk with a fitted :class:`~omni_ml.campaign.CampaignModel`: its customers' campaign rows.

:func:`score_personal` is the body of :meth:`CampaignModel.score <omni_ml.campaign.CampaignModel.score>`
for the people scored from their own histories: one engine plan for every consumer's features
(:func:`chunk_inputs`), then propensity and its decile against the fixed edges, customer value and
12-month CLV, the channel decision (:func:`chunk_decisions`), reason codes and send times, each joined on
``customer_id`` in the order of the plan. Every step reads only the chunk's own customers' rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from omni_ml.data import NO_CONTACT, TIMESTAMP, Histories
from omni_ml.monitor._reference import N_DECILES, ranking_scores
from omni_ml.monitor._reference import deciles as monitor_deciles

if TYPE_CHECKING:
    from omni_ml.campaign import CampaignModel

__all__ = [
    "N_DECILES",
    "NO_CHANNEL_MODEL",
    "SEND_TIME_SCHEMA",
    "ChunkInputs",
    "channel_reasons",
    "chunk_decisions",
    "chunk_inputs",
    "clv_12m",
    "conform",
    "customer_value",
    "deciles",
    "propensity_reasons",
    "ranking_scores",
    "reason_schema",
    "score_personal",
    "send_times",
]

NO_CHANNEL_MODEL = "no_channel_model"
_CLV_WEEKS = 52.0

# the send-time columns of the campaign table (omni_ml.timing), after the reasons
SEND_TIME_SCHEMA: dict[str, pl.DataType] = {
    "send_weekday": pl.Int8(),
    "send_hour": pl.Int8(),
    "send_time_zone": pl.String(),
    "send_on": pl.Date(),
    "send_time_reason": pl.String(),
}


@dataclasses.dataclass(frozen=True)
class ChunkInputs:
    """The engine features of one scoring chunk, computed in one plan and read by each consumer.

    ``frame``: ``customer_id, cutoff`` and the union of the features of the propensity model, the channel
    model and its response history (:class:`~omni_ml.models._channel_response.ResponseSpec`), the value
    model and the policy's facts (:mod:`omni_ml.features.facts`), one row per customer sorted by
    ``customer_id``. ``consumers``: those whose features are in it (a feature set whose names mean
    something else than another's builds its own). ``facts``, ``response``: their specs when planned.
    """

    frame: pl.DataFrame
    consumers: frozenset[str]
    facts: Any = None
    response: Any = None


def reason_schema(k: int) -> dict[str, pl.DataType]:
    """The reason columns beside the texts: codes, signed contributions (pp), baseline and other factors."""
    if k < 1:
        return {}
    cols: dict[str, pl.DataType] = {f"reason_code_{i}": pl.String() for i in range(1, k + 1)}
    cols.update({f"reason_pp_{i}": pl.Float64() for i in range(1, k + 1)})
    cols.update({"reason_baseline": pl.Float64(), "reason_other_pp": pl.Float64()})
    cols.update({f"channel_reason_code_{i}": pl.String() for i in range(1, k + 1)})
    cols.update({f"channel_reason_pp_{i}": pl.Float64() for i in range(1, k + 1)})
    cols["channel_reason_other_pp"] = pl.Float64()
    return cols


def conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with exactly the columns of ``schema``, in its order and types (a missing column is null)."""
    missing = [name for name in schema if name not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=schema[name]).alias(name) for name in missing)
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def deciles(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Decile 1 (highest) .. 10 (lowest) of each score against fixed ascending edges (ties go up), as Int8.

    The monitor's rule (:func:`omni_ml.monitor._reference.deciles`), so its training reference and the
    campaign file count deciles alike.
    """
    return monitor_deciles(p, edges).astype(np.int8)


def score_personal(
    model: CampaignModel, hist: Histories, moment: dt.datetime, k: int, schema: pl.Schema
) -> pl.DataFrame:
    """The campaign rows of the customers of ``hist``, from their own histories (see ``CampaignModel.score``)."""
    inputs = model._chunk_inputs(hist, moment)
    if inputs.frame.height == 0:
        return pl.DataFrame(schema=schema)
    ids = inputs.frame["customer_id"]
    X = inputs.frame.select(model.feature_set_.names)
    raw, propensity = ranking_scores(model.propensity_, X)  # deciles rank the raw score (no ties), see there
    base = pl.DataFrame(
        {
            "customer_id": ids,
            "as_of": pl.Series([moment] * ids.len(), dtype=TIMESTAMP),
            "propensity": propensity,
            "propensity_decile": deciles(raw, np.asarray(model.decile_edges_)),
        }
    )
    base = base.with_columns(
        pl.Series("customer_value", customer_value(model, hist, moment, ids, inputs.frame, propensity)),
        pl.Series("clv_12m", clv_12m(getattr(model, "clv_models_", None), hist, moment, ids)).fill_nan(None),
    )
    decisions, channel_X = model._decide(hist, moment, ids, inputs)
    out = base.join(decisions, on="customer_id", how="left", maintain_order="left")
    if k > 0:
        out = out.join(propensity_reasons(model, X, ids, k), on="customer_id", how="left", maintain_order="left")
        if channel_X is not None:
            why = channel_reasons(model, channel_X, ids, out, k, hist, moment)
            out = out.join(why, on="customer_id", how="left", maintain_order="left")
    timing = getattr(model, "timing_", None)
    if timing is not None:
        out = out.join(
            model._send_times(timing, hist, moment, out), on="customer_id", how="left", maintain_order="left"
        )
    out = out.with_columns(personalised=pl.lit(True))
    return conform(out, schema)


def chunk_inputs(model: CampaignModel, hist: Histories, moment: dt.datetime) -> ChunkInputs:
    """Every engine feature the chunk's consumers read, built in one plan (see :class:`ChunkInputs`)."""
    from omni_ml.features import build_feature_frames, union_features
    from omni_ml.features.facts import facts_features
    from omni_ml.policy import facts_spec

    consumers: list[tuple[str, Sequence[Any]]] = [("propensity", model.feature_set_.features)]
    channel_fs = getattr(model.channel_model_, "feature_set_", None)
    if channel_fs is not None:
        consumers.append(("channel", channel_fs.features))
    response = None
    if model.channel_model_ is not None:
        from omni_ml.models._channel_data import response_spec

        response = response_spec(model.channel_model_)
        if response is not None:
            consumers.append(("response", response.features()))
    value_fs = getattr(getattr(model, "value_model_", None), "feature_set_", None)
    if value_fs is not None:
        consumers.append(("value", value_fs.features))
    facts = None
    if model.channel_model_ is not None:
        facts = facts_spec(model.policy_, hist, moment, None)
        consumers.append(("facts", facts_features(facts)))
    planned: list[str] = []
    features: list[Any] = []
    for name, theirs in consumers:  # a consumer whose names clash with the plan builds its own (as before)
        merged = union_features(features, theirs)
        if merged is not None:
            planned.append(name)
            features = merged
    frame = build_feature_frames(hist, moment, features, config=model.feature_set_.config).sort("customer_id")
    return ChunkInputs(
        frame,
        frozenset(planned),
        facts if "facts" in planned else None,
        response if "response" in planned else None,
    )


def customer_value(
    model: CampaignModel,
    hist: Histories,
    moment: dt.datetime,
    ids: pl.Series,
    X: pl.DataFrame,
    propensity: np.ndarray,
) -> np.ndarray:
    """Expected revenue over the horizon per id: the value model's, else propensity x orders x order value."""
    value_model = getattr(model, "value_model_", None)
    if value_model is not None:
        return (
            value_model.predict_frame(X)
            if set(value_model.feature_names_) <= set(X.columns)
            else _value_of(hist, moment, ids, value_model)
        )
    stats = getattr(model, "value_stats_", None)
    if stats is None:
        return np.full(ids.len(), np.nan)
    value = np.asarray(propensity, dtype=np.float64) * stats.orders_per_buyer * stats.order_value(hist, moment, ids)
    return np.asarray(value, dtype=np.float64)


def _value_of(hist: Histories, moment: dt.datetime, ids: pl.Series, model: Any) -> np.ndarray:
    """The value model's prediction per id, from features it builds itself (its names clash with the plan's)."""
    pred = model.predict(hist, moment)
    joined = ids.to_frame().join(pred, on="customer_id", how="left", maintain_order="left")
    return joined["customer_value"].to_numpy().astype(np.float64)


def chunk_decisions(
    model: CampaignModel, hist: Histories, moment: dt.datetime, ids: pl.Series, inputs: ChunkInputs | None = None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The decisions and the channel model's input rows (one per id, in order; ``None`` without a model).

    ``inputs`` (rows in the order of ``ids``) holds the engine features of the consumers it planned for;
    the others are built here.
    """
    from omni_ml.features.facts import facts_frame
    from omni_ml.identity import consent_state
    from omni_ml.policy import check_consent, decide, history_facts

    policy = model.policy_
    if model.channel_model_ is None:
        none = pl.DataFrame(
            {
                "customer_id": ids,
                "best_channel": pl.Series([NO_CONTACT] * ids.len(), dtype=pl.String),
                "expected_uplift": pl.Series([0.0] * ids.len(), dtype=pl.Float64),
                "expected_value": pl.Series([0.0] * ids.len(), dtype=pl.Float64),
                **{f"score_{c}": pl.Series([None] * ids.len(), dtype=pl.Float64) for c in model.channels},
                "rule": pl.Series([NO_CHANNEL_MODEL] * ids.len(), dtype=pl.String),
                "offer_category": pl.Series([None] * ids.len(), dtype=pl.String),
                "suppressed_category": pl.Series([None] * ids.len(), dtype=pl.String),
            }
        )
        return none, None
    from omni_ml.models.channel import channel_features

    # The channel model's inputs: its feature set's columns and its response history, read from the plan.
    planned = inputs is not None and "channel" in inputs.consumers
    response = inputs.response if inputs is not None else None
    who, channel_X = channel_features(
        model.channel_model_,
        hist,
        moment,
        customers=ids,
        features=inputs.frame.select(model.channel_model_.feature_set_.names) if planned else None,  # type: ignore[union-attr]
        response=response.frame(inputs.frame) if response is not None else None,  # type: ignore[union-attr]
    )
    effects = model.channel_model_.predict_effects(channel_X, customer_id=who)
    keys = pl.DataFrame({"customer_id": ids, "cutoff": pl.Series([moment] * ids.len(), dtype=TIMESTAMP)})
    consent = consent_state(hist, keys, channels=list(policy.channels), default=policy.default_consent).drop("cutoff")
    if inputs is not None and inputs.facts is not None:
        facts = facts_frame(inputs.facts, inputs.frame)
    else:
        facts = history_facts(hist, moment, config=policy, customers=ids)
    margin = getattr(model, "value_margin_", None)
    stats = getattr(model, "value_stats_", None)
    values = stats.conversion_value(hist, moment, ids, margin=margin) if margin is not None and stats else None
    decisions = decide(effects, consent, facts, policy, values=values)
    # Guard at the boundary of the campaign table, independent of the policy's own check.
    check_consent(decisions, consent, default=policy.default_consent)
    return decisions, channel_X


def send_times(
    model: CampaignModel, timing: Any, hist: Histories, moment: dt.datetime, out: pl.DataFrame
) -> pl.DataFrame:
    """``send_weekday, send_hour, send_time_zone, send_on, send_time_reason`` per row of ``out``."""
    from omni_ml.explanation import timing_reasons

    decisions = out.select("customer_id", "best_channel")
    rec: pl.DataFrame = timing.recommend(hist, moment, decisions, policy=model.policy_)
    return rec.select("customer_id", *[c for c in SEND_TIME_SCHEMA if c != "send_time_reason"]).with_columns(
        timing_reasons(rec, decisions["best_channel"])
    )


def propensity_reasons(model: CampaignModel, X: pl.DataFrame, ids: pl.Series, k: int) -> pl.DataFrame:
    """Why likely to buy: one reason per family against the moment's baseline (:func:`explain_reasons`)."""
    from omni_ml.explanation import explain_reasons

    frame = explain_reasons(
        model.propensity_,
        X,
        feature_set=model.feature_set_,
        top_k=k,
        keys=ids.to_frame(),
        reference=getattr(model, "reason_reference_", None),
    )
    wanted = [c for c in reason_schema(k) if not c.startswith("channel_")]
    return frame.select("customer_id", *[f"reason_{i}" for i in range(1, k + 1)], *wanted)


def channel_reasons(
    model: CampaignModel,
    channel_X: pl.DataFrame,
    ids: pl.Series,
    decided: pl.DataFrame,
    k: int,
    hist: Histories,
    moment: Any,
) -> pl.DataFrame:
    """Why the chosen channel rather than no contact (null where the decision is ``no_contact``).

    ``decided`` holds ``best_channel`` and the ``score_<channel>`` columns of the same customers, in order.
    """
    from omni_ml.explanation import call_outcomes, explain_channel_reasons

    frame = explain_channel_reasons(
        model.channel_model_,
        channel_X,
        decided["best_channel"],
        scores=decided.select(f"score_{c}" for c in model.channels),
        costs=dict(model.policy_.channel_costs),
        top_k=k,
        keys=ids.to_frame(),
        reference=getattr(model, "reason_reference_", None),
        calls=call_outcomes(hist, moment, ids),
    )
    wanted = [c for c in reason_schema(k) if c.startswith("channel_")]
    return frame.select("customer_id", *[f"channel_reason_{i}" for i in range(1, k + 1)], *wanted)


def clv_12m(models: tuple[Any, Any] | None, hist: Histories, moment: dt.datetime, ids: pl.Series) -> np.ndarray:
    """Expected revenue over the next 52 weeks per id (null without models or without a purchase yet)."""
    from omni_ml.models.btyd import btyd_customer_value, rfm_summary

    if models is None:
        return np.full(ids.len(), np.nan)
    summary = rfm_summary(hist, moment, unit_days=7.0).filter(pl.col("customer_id").is_in(ids.implode()))
    value = btyd_customer_value(models[0], models[1], summary, _CLV_WEEKS).select("customer_id", "customer_value")
    joined = ids.to_frame().join(value, on="customer_id", how="left", maintain_order="left")
    # rounded to 1/10,000 of a currency unit: numpy's vectorised exp/log differ in the last bits with the length of
    # the chunk, and the file must hold the same bytes for any chunk count
    return np.round(joined["customer_value"].to_numpy().astype(np.float64), 4)
