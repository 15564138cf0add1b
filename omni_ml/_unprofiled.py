"""People without a profiling consent: who they are at a moment, and their rows without personal features.

The ``profiling`` consent (:mod:`omni_ml.identity._profiling`) is the customer's permission to be
recognised across channels *and personalised*. Identity resolution already ignores the links of a
person without it; this module keeps their own history out of the campaign table too.

A customer is **unprofiled** at ``t`` when profiling is required and their latest ``profiling``
consent record strictly before ``t`` (records keyed by their customer id or by any identifier
resolved to them; a withdrawal at the same instant as a grant wins) is not a grant. Profiling is
required when the consents table holds any profiling record at any time (the identity rules'
``"if_recorded"`` default: the source collects this consent); histories without one score
everyone as before.

What the campaign table gives an unprofiled customer (``unprofiled: anonymous``, the default; with
``exclude`` they get no row at all):

- ``propensity``: the population's, the training base rate (share of buyers within the horizon at the
  latest training cutoff); ``propensity_decile`` is the decile of that propensity against the model's
  fixed edges; ``customer_value`` is that propensity x orders per buyer x the population mean order
  value; ``clv_12m`` is null (it is a model of the person's own purchases).
- the channel decision of :func:`omni_ml.policy.decide` on the *population* channel effects (the mean
  effect per channel over every customer when the model was fitted), with the conversion valued at the
  population's order value: the same channel on every such row, among the channels they consented to,
  under the same consent, pressure, cool-down and service rules as anybody else (their own contact and
  consent records are operational, not profiling). No preferred category is inferred from their
  purchases: ``offer_category`` is the campaign's (``PolicyConfig.offer_category``) or null.
- ``reason_1`` = :data:`NOT_PERSONALISED` (code ``not_personalised``) and no other reason, no
  contribution in percentage points; ``channel_reason_1`` says the channel is the population's.
- send time from the send-time model's population profile in UTC (none of their events or
  attributes are read).
- ``personalised`` = false (true on every other row).

Their events and attributes are never read to build these rows: the personal pipeline runs on the
histories without them, and their rows are built from fitted population constants and their consent
and contact records only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import polars as pl

from omni_ml._time import before
from omni_ml.data import NO_CONTACT, PROFILING, TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError

__all__ = [
    "NOT_PERSONALISED",
    "NOT_PERSONALISED_CHANNEL",
    "NOT_PERSONALISED_CODE",
    "UNPROFILED_MODES",
    "UnprofiledMode",
    "check_mode",
    "population_effects",
    "population_decile",
    "population_propensity",
    "population_estimates",
    "split_unprofiled",
    "unprofiled_rows",
    "unprofiled_customers",
]

UnprofiledMode = Literal["anonymous", "exclude"]
UNPROFILED_MODES: tuple[str, ...] = ("anonymous", "exclude")
NOT_PERSONALISED = "not personalised: no profiling consent"
NOT_PERSONALISED_CHANNEL = "not personalised: the channel that does best on average over all customers"
NOT_PERSONALISED_CODE = "not_personalised"
_PERSON_TABLES = ("events", "contacts", "consents", "customers")


def check_mode(mode: Any, *, where: str = "unprofiled") -> UnprofiledMode:
    """``mode`` if it is ``"anonymous"`` or ``"exclude"``, else a :class:`~omni_ml.exceptions.ConfigError`."""
    if mode not in UNPROFILED_MODES:
        msg = (
            f"{where} = {mode!r} must be 'anonymous' (score people without a profiling consent without personal "
            "features) or 'exclude' (leave them out of the campaign file)."
        )
        raise ConfigError(msg)
    return mode  # type: ignore[no-any-return]


def profiling_recorded(hist: Histories) -> bool:
    """Whether the consents table holds any profiling record: then profiling consent is required."""
    from omni_ml.identity._profiling import profiling_recorded as recorded

    return recorded(hist)


def unprofiled_customers(hist: Histories, moment: dt.datetime, *, required: bool | None = None) -> pl.Series:
    """Customers scored at ``moment`` (customers table, or an event before it) without a profiling consent.

    Parameters
    ----------
    hist
        Resolved histories.
    moment
        The scoring moment: the consent state is the latest record strictly before it.
    required
        Whether profiling consent is required; ``None``: when ``hist`` holds any profiling record. A chunked
        job decides this once over all customers and passes it to every chunk.

    Returns
    -------
    polars.Series
        ``customer_id`` values, sorted (empty when profiling is not required).
    """
    from omni_ml.identity import consent_state

    if required is None:
        required = profiling_recorded(hist)
    empty = pl.Series("customer_id", [], dtype=pl.String)
    if not required:
        return empty
    sources = [hist.events.filter(before(moment)).select("customer_id")]
    if hist.customers is not None:
        sources.append(hist.customers.select("customer_id"))
    ids = pl.concat(sources).drop_nulls().unique().sort("customer_id").collect()["customer_id"]
    if ids.len() == 0:
        return empty
    keys = pl.DataFrame({"customer_id": ids, "cutoff": pl.Series([moment] * ids.len(), dtype=TIMESTAMP)})
    state = consent_state(hist, keys, channels=[PROFILING], default=False)
    return ids.filter(~state[f"consent_{PROFILING}"])


def split_unprofiled(hist: Histories, ids: pl.Series) -> tuple[Histories, Histories]:
    """``(everyone else's histories, the histories of ids)``: every person table split by customer_id."""
    wanted = ids.implode()
    others: dict[str, Any] = {"identity_links": None}
    theirs: dict[str, Any] = {"identity_links": None}
    for table in _PERSON_TABLES:
        lf = getattr(hist, table)
        if lf is None:
            continue
        mine = pl.col("customer_id").is_in(wanted).fill_null(False)
        others[table] = lf.filter(~mine)
        theirs[table] = lf.filter(mine)
    return hist.replace(**others), hist.replace(**theirs)


def population_effects(model: Any, hist: Histories, moment: dt.datetime) -> dict[str, tuple[float, float]]:
    """Mean ``(p_if_contacted, p_if_not)`` per channel over every customer at ``moment``: the non-personal effect."""
    from omni_ml.models.channel import channel_features

    who, X = channel_features(model, hist, moment)
    if who.len() == 0:
        return {}
    effects = model.predict_effects(X, customer_id=who)
    means = (
        effects.group_by("channel")
        .agg(pl.col("p_if_contacted").cast(pl.Float64).mean(), pl.col("p_if_not").cast(pl.Float64).mean())
        .drop_nulls()
        .sort("channel")
    )
    return {row[0]: (float(row[1]), float(row[2])) for row in means.iter_rows()}


def population_estimates(
    ids: pl.Series, effects: Mapping[str, tuple[float, float]] | None, channels: tuple[str, ...]
) -> pl.DataFrame:
    """The long estimates frame of :func:`omni_ml.policy.decide`: every id gets the population's effects.

    A channel without a population effect (or a model saved before they were recorded) has null
    estimates, so it is never chosen.
    """
    n = ids.len()
    known = effects or {}
    rows_channel: list[str] = []
    p1: list[float | None] = []
    p0: list[float | None] = []
    for channel in channels:
        pair = known.get(channel)
        rows_channel += [channel] * n
        p1 += [pair[0] if pair else None] * n
        p0 += [pair[1] if pair else None] * n
    return pl.DataFrame(
        {
            "customer_id": pl.concat([ids.cast(pl.String)] * len(channels)) if channels else ids.clear(),
            "channel": pl.Series(rows_channel, dtype=pl.String),
            "p_if_contacted": pl.Series(p1, dtype=pl.Float64),
            "p_if_not": pl.Series(p0, dtype=pl.Float64),
        }
    )


def population_decile(propensity: float, model: Any) -> int:
    """Decile (1 = top) of a propensity against the model's fixed edges (mapped to probabilities)."""
    edges = np.asarray(model.decile_edges_, dtype=np.float64)
    prop = model.propensity_
    if hasattr(prop, "proba_from_raw"):
        edges = np.asarray(prop.proba_from_raw(edges), dtype=np.float64)
    return int(10 - np.searchsorted(edges, propensity, side="right"))


def population_propensity(model: Any) -> float:
    """The non-personal propensity: the training base rate (the median score for a model saved before it)."""
    rate = getattr(model, "population_propensity_", None)
    if rate is not None:
        return float(rate)
    median = np.asarray([model.decile_edges_[len(model.decile_edges_) // 2]], dtype=np.float64)
    prop = model.propensity_
    return float(prop.proba_from_raw(median)[0]) if hasattr(prop, "proba_from_raw") else float(median[0])


def unprofiled_rows(
    model: Any, hist: Histories, moment: dt.datetime, ids: pl.Series, k: int, schema: pl.Schema
) -> pl.DataFrame:
    """Rows without personal features for ``ids`` (no profiling consent): see :mod:`omni_ml._unprofiled`.

    ``hist`` holds only these customers; only their consent and contact records (and service incidents,
    which only ever pause) are read, by the same policy rules as everybody's.
    """
    from omni_ml.identity import consent_state
    from omni_ml.policy import check_consent, decide, history_facts

    n = ids.len()
    p = population_propensity(model)
    stats = getattr(model, "value_stats_", None)
    value = p * stats.orders_per_buyer * stats.mean_order_value if stats is not None else None
    base = pl.DataFrame(
        {
            "customer_id": ids,
            "as_of": pl.Series([moment] * n, dtype=TIMESTAMP),
            "propensity": pl.Series([p] * n, dtype=pl.Float64),
            "propensity_decile": pl.Series([population_decile(p, model)] * n, dtype=pl.Int8),
            "customer_value": pl.Series([value] * n, dtype=pl.Float64),
        }
    )
    policy = model.policy_
    if model.channel_model_ is None:
        decisions, _ = model._decide(hist, moment, ids)
    else:
        keys = pl.DataFrame({"customer_id": ids, "cutoff": pl.Series([moment] * n, dtype=TIMESTAMP)})
        consent = consent_state(hist, keys, channels=list(policy.channels), default=policy.default_consent)
        consent = consent.drop("cutoff")
        facts = history_facts(hist, moment, config=policy, customers=ids).with_columns(
            pl.lit(None, dtype=pl.String).alias("preferred_category")  # no category inferred from purchases
        )
        margin = getattr(model, "value_margin_", None)
        values = None
        if margin is not None and stats is not None:
            worth = margin * stats.orders_per_buyer * stats.mean_order_value
            values = pl.DataFrame({"customer_id": ids, "conversion_value": pl.Series([worth] * n)})
        estimates = population_estimates(ids, getattr(model, "population_effects_", None), tuple(policy.channels))
        decisions = decide(estimates, consent, facts, policy, values=values)
        check_consent(decisions, consent, default=policy.default_consent)
    out = base.join(decisions, on="customer_id", how="left", maintain_order="left")
    contacted = pl.col("best_channel") != NO_CONTACT
    if k > 0:
        out = out.with_columns(
            pl.lit(NOT_PERSONALISED).alias("reason_1"),
            pl.lit(NOT_PERSONALISED_CODE).alias("reason_code_1"),
            pl.when(contacted).then(pl.lit(NOT_PERSONALISED_CHANNEL)).alias("channel_reason_1"),
            pl.when(contacted).then(pl.lit(NOT_PERSONALISED_CODE)).alias("channel_reason_code_1"),
        )
    timing = getattr(model, "timing_", None)
    if timing is not None:
        # the population's send time: none of their events or attributes (time zone included) are read
        anonymous = hist.replace(events=hist.events.clear(), customers=None)
        out = out.join(
            model._send_times(timing, anonymous, moment, out), on="customer_id", how="left", maintain_order="left"
        )
    out = out.with_columns(personalised=pl.lit(False))
    from omni_ml._campaign_scoring import conform

    return conform(out, schema)
