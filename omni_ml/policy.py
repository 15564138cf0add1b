"""From per-channel estimates to one decision per customer: value, consent, pressure, suppression, pause.

The decision for a customer at ``as_of`` (DESIGN.md section 5):

Rules in order of precedence (the first that applies is recorded in ``rule``):

1. **Service first**: a service incident (``service_call``, ``complaint``, ``failed_delivery``
   events) in the last ``service_incident_days`` means no promotional contact (rule
   ``service_incident``).
2. **Consent**: a channel is only a candidate if the customer consented to it as of ``as_of``
   (:func:`omni_ml.identity.consent_state`); customers without a record get
   ``default_consent``. No consented channel: rule ``no_consent``.
3. **Pressure**: at most ``max_contacts_7d`` / ``max_contacts_30d`` contacts across all
   channels (rule ``pressure_cap``) and none within ``cooldown_days`` of the last contact
   (rule ``cooldown``); a customer without any consented channel is reported as ``no_consent``.
4. **Category suppression**: never offer a category the customer bought within
   ``suppression_days``; offer its complement (``complements``) instead when known and not
   itself bought recently, else pause (rule ``category_suppressed``). The column
   ``suppressed_category`` records the category that was suppressed.
5. **Value**: expected value of channel ``c`` = (p_if_contacted(c) - p_if_not) x
   value of a conversion - cost(c); the value of a conversion is the customer's own
   (``values``, e.g. from :mod:`omni_ml.models.value`) or the constant ``conversion_value``. The
   best channel wins if its value exceeds ``min_value`` (rule ``best_value``), otherwise the
   answer is to pause (``no_positive_value``).

Every decision carries the rule that fired, so a campaign manager can see why someone was
paused. :func:`baseline_decisions` produces the usual commercial policies (random consented
channel, always email, most-engaged channel, contact everyone) in the same format, so
policies can be compared by truth or off-policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import polars as pl

from omni_ml import _time
from omni_ml._policy_inputs import consent_matrix, conversion_values, wide_estimates
from omni_ml._time import as_utc, before
from omni_ml.data import CONTACTABLE_CHANNELS, NO_CONTACT, TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, ConsentError
from omni_ml.features import build_feature_frames
from omni_ml.features.facts import FactsSpec, categories_for, facts_features, facts_frame

__all__ = [
    "NO_CONTACT",
    "RULES",
    "PolicyConfig",
    "baseline_decisions",
    "check_consent",
    "costs_from_contacts",
    "decide",
    "engagement_rates",
    "history_facts",
]

RULES: tuple[str, ...] = (
    "best_value",
    "no_positive_value",
    "no_consent",
    "pressure_cap",
    "cooldown",
    "service_incident",
    "category_suppressed",
    "baseline",
)
BaselineKind = Literal["random", "always_email", "most_engaged", "contact_everyone"]

# Defaults aligned with the simulated retailer (omni_ml.simulate); set real ones from the logged
# contacts with costs_from_contacts().
_DEFAULT_COSTS: dict[str, float] = {
    "email": 0.02,
    "push": 0.01,
    "sms": 0.08,
    "direct_mail": 0.9,
    "call_center": 4.0,
}
# Complementary categories: someone who just bought the key product is likely to need the
# add-on and unlikely to buy the key product again soon.
_DEFAULT_COMPLEMENTS: dict[str, str] = {
    "phones": "accessories",
    "computers": "accessories",
    "tv": "audio",
    "appliances": "home",
}


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Business settings of the channel decision (all defaults documented; build from YAML with ``from_yaml``).

    Parameters
    ----------
    conversion_value
        Value of one conversion (margin, in the currency of ``channel_costs``): the default for
        customers without a per-customer value (``decide(..., values=...)``).
    channel_costs
        Cost of one contact per channel; overridden by a ``cost`` column in the estimates, and
        usually set from the logged contacts with :func:`costs_from_contacts`.
    channels
        Channels the decision may use (the contactable channels).
    max_contacts_7d, max_contacts_30d
        Contact-pressure caps across channels: a customer at the cap is paused.
    cooldown_days
        Minimum days since the last contact on any channel.
    suppression_days
        A category bought within this many days is never offered.
    complements
        Category to offer instead of a suppressed one (``phones -> accessories``).
    offer_category
        The campaign's category. ``None``: each customer's ``preferred_category`` from the facts.
    service_incident_days
        No promotional contact within this many days of a service incident.
    service_event_types
        Event types that count as service incidents.
    default_consent
        Consent of a customer with no consent record (``False``: opt-in regimes such as GDPR).
    min_value
        A channel must beat pausing by more than this expected value.
    unprofiled
        People without a profiling consent at the scoring moment: ``"anonymous"`` (default) scores them
        without personal features (population propensity and channel, a non-personal reason; see
        :mod:`omni_ml._unprofiled`), ``"exclude"`` leaves them out of the campaign file.
    """

    conversion_value: float = 40.0
    channel_costs: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(_DEFAULT_COSTS))
    channels: tuple[str, ...] = CONTACTABLE_CHANNELS
    max_contacts_7d: int = 3
    max_contacts_30d: int = 8
    cooldown_days: float = 2.0
    suppression_days: int = 30
    complements: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(_DEFAULT_COMPLEMENTS))
    offer_category: str | None = None
    service_incident_days: int = 14
    service_event_types: tuple[str, ...] = ("service_call", "complaint", "failed_delivery")
    default_consent: bool = False
    min_value: float = 0.0
    unprofiled: Literal["anonymous", "exclude"] = "anonymous"

    def __post_init__(self) -> None:
        problems = []
        if self.unprofiled not in ("anonymous", "exclude"):
            problems.append(f"unprofiled must be 'anonymous' or 'exclude' (got {self.unprofiled!r})")
        if not self.channels:
            problems.append("channels is empty")
        if self.conversion_value < 0:
            problems.append(f"conversion_value must be >= 0 (got {self.conversion_value})")
        for name in ("max_contacts_7d", "max_contacts_30d", "suppression_days", "service_incident_days"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.cooldown_days < 0:
            problems.append(f"cooldown_days must be >= 0 (got {self.cooldown_days})")
        if problems:
            msg = "PolicyConfig: " + "; ".join(problems) + ". Hint: see the PolicyConfig docstring for defaults."
            raise ConfigError(msg)

    def cost(self, channel: str) -> float:
        """Cost of one contact on ``channel`` (0 for a channel without a configured cost)."""
        return float(self.channel_costs.get(channel, 0.0))


# ----------------------------------------------------------------------------- history facts


def history_facts(
    hist: Histories,
    as_of: dt.datetime,
    *,
    config: PolicyConfig | None = None,
    customers: Sequence[str] | pl.Series | None = None,
) -> pl.DataFrame:
    """Per-customer facts the rules need, from history strictly before ``as_of``.

    The facts are features of the feature engine (:mod:`omni_ml.features.facts`), so scoring reads them
    in the same plan as the models' inputs. "Within N days" is the window of the features
    (``features/_spec.py``): ``as_of - N days <= timestamp < as_of``, so an event exactly N days back
    counts, and so do the rules of :func:`decide` (an incident exactly ``service_incident_days`` back, a
    contact exactly ``cooldown_days`` back). Days since an event are exact to the microsecond.
    ``customers`` defaults to everyone known: an event before ``as_of``, or any contact, consent or
    customers row; given, the rows follow its order (repeats included).

    Returns
    -------
    polars.DataFrame
        ``customer_id, contacts_7d, contacts_30d, days_since_contact (null: never), days_since_incident
        (null: none), recent_categories (list of categories bought within suppression_days),
        preferred_category (most bought category in the last 365 days, null if none)``.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a", "a"], "timestamp": [dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 5)],
    ...                    "channel": ["web", "call_center"], "event_type": ["purchase", "service_call"],
    ...                    "category": ["phones", None], "amount": [300.0, None]})
    >>> f = history_facts(Histories.from_frames(ev), dt.datetime(2025, 1, 10))
    >>> f.select("days_since_incident", "recent_categories").row(0)
    (5.0, ['phones'])
    """
    cfg = config or PolicyConfig()
    t = as_utc(as_of)
    if customers is None:
        ids = [hist.events.filter(before(t)).select("customer_id")]
        ids += [lf.select("customer_id") for lf in (hist.contacts, hist.consents, hist.customers) if lf is not None]
        keys = pl.concat(ids).drop_nulls().unique().sort("customer_id").collect()
    else:
        keys = pl.DataFrame({"customer_id": pl.Series(list(customers), dtype=pl.String)})
    unique = keys.unique(maintain_order=True)
    spec = facts_spec(cfg, hist, t, unique)
    computed = build_feature_frames(
        hist, unique.with_columns(pl.lit(t).cast(TIMESTAMP).alias("cutoff")), facts_features(spec)
    )
    facts = facts_frame(spec, computed)
    return (
        facts if unique.height == keys.height else keys.join(facts, on="customer_id", how="left", maintain_order="left")
    )


def facts_spec(config: PolicyConfig, hist: Histories, as_of: dt.datetime, customers: pl.DataFrame | None) -> FactsSpec:
    """The facts :func:`history_facts` computes under ``config``, with the categories ``customers`` bought."""
    spec = FactsSpec(config.suppression_days, config.service_event_types)
    return categories_for(spec, hist, as_of, customers)


def costs_from_contacts(hist: Histories, *, before: dt.datetime | None = None) -> dict[str, float]:
    """Mean logged cost per channel (channels without a logged cost are left out)."""
    sent = hist.sent_contacts
    if sent is None:
        return {}
    lf = sent if before is None else sent.filter(_time.before(before))
    frame = lf.group_by("channel").agg(pl.col("cost").mean()).drop_nulls("cost").sort("channel").collect()
    return {str(c): float(v) for c, v in frame.iter_rows()}


def engagement_rates(
    hist: Histories, as_of: dt.datetime, *, channels: Sequence[str] = CONTACTABLE_CHANNELS, prior: float = 1.0
) -> pl.DataFrame:
    """Past engagement rate per customer and channel: (opens + clicks) / contacts, before ``as_of``.

    This is what commercial tools rank channels by. Rates are shrunk towards the channel's
    overall rate with ``prior`` pseudo-contacts so a single lucky open does not dominate.

    Returns
    -------
    polars.DataFrame
        ``customer_id, channel, contacts, engagements, rate``.
    """
    t = as_utc(as_of)
    chans = list(channels)
    empty = pl.DataFrame(
        schema={
            "customer_id": pl.String,
            "channel": pl.String,
            "contacts": pl.Int64,
            "engagements": pl.Int64,
            "rate": pl.Float64,
        }
    )
    if hist.contacts is None:
        return empty
    sent = (
        hist.contacts.filter(before(t) & pl.col("channel").is_in(chans))
        .group_by("customer_id", "channel")
        .agg(pl.len().cast(pl.Int64).alias("contacts"))
    )
    engaged = (
        hist.events.filter(before(t) & pl.col("event_type").is_in(["open", "click"]) & pl.col("channel").is_in(chans))
        .group_by("customer_id", "channel")
        .agg(pl.len().cast(pl.Int64).alias("engagements"))
    )
    frame = (
        sent.join(engaged, on=["customer_id", "channel"], how="left")
        .with_columns(pl.col("engagements").fill_null(0))
        .collect()
    )
    if frame.height == 0:
        return empty
    overall = pl.col("engagements").sum().over("channel") / pl.col("contacts").sum().over("channel")
    return frame.with_columns(
        ((pl.col("engagements") + prior * overall) / (pl.col("contacts") + prior)).alias("rate")
    ).sort("customer_id", "channel")


# ----------------------------------------------------------------------------- decisions


def decide(
    estimates: pl.DataFrame,
    consent: pl.DataFrame,
    facts: pl.DataFrame | None = None,
    config: PolicyConfig | None = None,
    *,
    values: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One decision per customer: the channel with the best expected value, or ``no_contact``.

    Parameters
    ----------
    estimates
        Long frame ``customer_id, channel, p_if_contacted, p_if_not`` (optional ``cost``) with one row per
        customer and channel, e.g. from :meth:`omni_ml.models.ChannelModel.predict_effects` or the
        simulator's truth ``channel_response``.
    consent
        ``customer_id, consent_<channel>...`` as of the decision date (:func:`omni_ml.identity.consent_state`).
        Customers or channels missing here get ``config.default_consent``.
    facts
        :func:`history_facts` as of the decision date; ``None`` applies no pressure, suppression or
        service rules (every customer counts as fresh).
    config
        Business settings; :class:`PolicyConfig` defaults when ``None``.
    values
        Optional per-customer value of a conversion, ``customer_id, conversion_value`` (e.g.
        :meth:`omni_ml.models.value.OrderValueStats.conversion_value`: margin x expected revenue of a
        converting customer). Replaces ``config.conversion_value`` for the customers listed; the others
        keep the constant.

    Returns
    -------
    polars.DataFrame
        ``customer_id, best_channel, expected_uplift, expected_value, score_<channel>..., rule,
        offer_category, suppressed_category``. ``score_<channel>`` is the expected value of contacting on
        that channel (null when the customer has not consented to it, or there is no estimate);
        ``expected_uplift`` and ``expected_value`` are 0 for ``no_contact``.

    Examples
    --------
    >>> import polars as pl
    >>> est = pl.DataFrame({"customer_id": ["a", "a", "b", "b"], "channel": ["email", "sms"] * 2,
    ...                     "p_if_contacted": [0.30, 0.50, 0.10, 0.11], "p_if_not": [0.10, 0.10, 0.10, 0.10]})
    >>> consent = pl.DataFrame({"customer_id": ["a", "b"], "consent_email": [True, True], "consent_sms": [False, True]})
    >>> cfg = PolicyConfig(conversion_value=10.0, channels=("email", "sms"), channel_costs={"email": 0.1, "sms": 0.5})
    >>> decide(est, consent, config=cfg).select("customer_id", "best_channel", "rule").rows()
    [('a', 'email', 'best_value'), ('b', 'no_contact', 'no_positive_value')]
    """
    cfg = config or PolicyConfig()
    channels = list(cfg.channels)
    ids, uplift, cost, available = wide_estimates(estimates, channels, cfg)
    n = ids.len()
    consented_to = consent_matrix(consent, ids, channels, cfg.default_consent)
    allowed = consented_to & available
    worth = conversion_values(values, ids, cfg.conversion_value)
    value = uplift * worth[:, None] - cost
    masked_value = np.where(allowed, value, -np.inf)
    best = np.argmax(masked_value, axis=1) if n else np.zeros(0, dtype=np.int64)
    best_value = masked_value[np.arange(n), best] if n else np.zeros(0)

    rule = np.where(best_value > cfg.min_value, "best_value", "no_positive_value").astype(object)
    # no_consent only without any consented channel; a consented channel without an estimate just
    # leaves nothing that beats the pause (no_positive_value)
    rule[~consented_to.any(axis=1)] = "no_consent"

    offer = np.full(n, None, dtype=object)
    suppressed = np.full(n, None, dtype=object)
    if facts is not None:
        f = ids.to_frame().join(facts, on="customer_id", how="left")
        days_contact = f["days_since_contact"].fill_null(np.inf).to_numpy() if "days_since_contact" in f else None
        consented = rule != "no_consent"
        if days_contact is not None:
            rule[consented & (days_contact <= cfg.cooldown_days)] = "cooldown"
        c7 = f["contacts_7d"].fill_null(0).to_numpy() if "contacts_7d" in f else np.zeros(n)
        c30 = f["contacts_30d"].fill_null(0).to_numpy() if "contacts_30d" in f else np.zeros(n)
        rule[consented & ((c7 >= cfg.max_contacts_7d) | (c30 >= cfg.max_contacts_30d))] = "pressure_cap"
        if "days_since_incident" in f:
            incident = f["days_since_incident"].fill_null(np.inf).to_numpy() <= cfg.service_incident_days
            rule[incident] = "service_incident"
        recent = f["recent_categories"].to_list() if "recent_categories" in f else [None] * n
        preferred = f["preferred_category"].to_list() if "preferred_category" in f else [None] * n
        for k in range(n):
            wanted = cfg.offer_category if cfg.offer_category is not None else preferred[k]
            bought = set(recent[k] or ())
            if wanted is None or wanted not in bought:
                offer[k] = wanted
                continue
            suppressed[k] = wanted
            alternative = cfg.complements.get(wanted)
            if alternative is not None and alternative not in bought:
                offer[k] = alternative
            elif rule[k] in ("best_value", "no_positive_value"):  # suppression precedes the value rule
                rule[k] = "category_suppressed"
    else:
        offer[:] = cfg.offer_category

    contact = rule == "best_value"
    chosen = np.where(contact, np.asarray(channels, dtype=object)[best] if n else [], NO_CONTACT)
    out = pl.DataFrame(
        {
            "customer_id": ids,
            "best_channel": pl.Series(chosen.tolist(), dtype=pl.String),
            "expected_uplift": np.where(contact, uplift[np.arange(n), best] if n else 0.0, 0.0),
            "expected_value": np.where(contact, best_value, 0.0),
            **{
                f"score_{c}": pl.Series(np.where(allowed[:, j], value[:, j], np.nan)).fill_nan(None)
                for j, c in enumerate(channels)
            },
            "rule": pl.Series(rule.tolist(), dtype=pl.String),
            "offer_category": pl.Series(offer.tolist(), dtype=pl.String),
            "suppressed_category": pl.Series(suppressed.tolist(), dtype=pl.String),
        }
    )
    check_consent(out, consent, default=cfg.default_consent)
    return out


def check_consent(decisions: pl.DataFrame, consent: pl.DataFrame, *, default: bool = False) -> None:
    """Raise :class:`~omni_ml.exceptions.ConsentError` if any decision contacts a customer without consent.

    Examples
    --------
    >>> import polars as pl
    >>> d = pl.DataFrame({"customer_id": ["a"], "best_channel": ["sms"]})
    >>> check_consent(d, pl.DataFrame({"customer_id": ["a"], "consent_sms": [False]}))
    Traceback (most recent call last):
    ...
    omni_ml.exceptions.ConsentError: 1 of 1 decisions contact a customer without consent (e.g. 'a' on 'sms'). ...
    """
    contacted = decisions.filter(pl.col("best_channel") != NO_CONTACT).select("customer_id", "best_channel")
    if contacted.height == 0:
        return
    long = consent.unpivot(
        index="customer_id", on=[c for c in consent.columns if c.startswith("consent_")], variable_name="best_channel"
    ).with_columns(pl.col("best_channel").str.strip_prefix("consent_"), pl.col("value").cast(pl.Boolean))
    joined = contacted.join(long, on=["customer_id", "best_channel"], how="left")
    bad = joined.filter(~pl.col("value").fill_null(default))
    if bad.height:
        cid, ch = bad.row(0)[:2]
        msg = (
            f"{bad.height:,} of {decisions.height:,} decisions contact a customer without consent "
            f"(e.g. {cid!r} on {ch!r}). Hint: pass the consent state as of the decision date to decide()."
        )
        raise ConsentError(msg)


# ----------------------------------------------------------------------------- baselines


def baseline_decisions(
    kind: BaselineKind,
    customers: Sequence[str] | pl.Series,
    consent: pl.DataFrame,
    *,
    engagement: pl.DataFrame | None = None,
    facts: pl.DataFrame | None = None,
    config: PolicyConfig | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The policies commercial tools use, in the :func:`decide` output format (scores are null).

    ``random``: a uniformly random consented channel. ``always_email``: email when consented.
    ``most_engaged``: the consented channel with the highest past engagement rate
    (:func:`engagement_rates`; customers with no history get the channel with the best overall rate),
    with the pressure/service rules of ``facts`` applied but no pause for value. ``contact_everyone``:
    every customer on the consented channel with the best overall engagement rate, no pause at all.
    All respect consent.

    Examples
    --------
    >>> import polars as pl
    >>> consent = pl.DataFrame({"customer_id": ["a", "b"], "consent_email": [True, False], "consent_sms": [True, True]})
    >>> cfg = PolicyConfig(channels=("email", "sms"))
    >>> baseline_decisions("always_email", ["a", "b"], consent, config=cfg)["best_channel"].to_list()
    ['email', 'no_contact']
    """
    cfg = config or PolicyConfig()
    channels = list(cfg.channels)
    ids = pl.Series("customer_id", list(customers), dtype=pl.String).unique().sort()
    n = ids.len()
    allowed = consent_matrix(consent, ids, channels, cfg.default_consent)
    rng = np.random.default_rng(seed)
    overall = np.zeros(len(channels))
    rate = np.full((n, len(channels)), np.nan)
    if engagement is not None and engagement.height:
        tot = engagement.group_by("channel").agg(pl.col("engagements").sum() / pl.col("contacts").sum())
        lookup = dict(tot.iter_rows())
        overall = np.array([float(lookup.get(c) or 0.0) for c in channels])
        wide = ids.to_frame().join(
            engagement.pivot(on="channel", index="customer_id", values="rate"), on="customer_id", how="left"
        )
        for j, c in enumerate(channels):
            if c in wide.columns:
                rate[:, j] = wide[c].fill_null(np.nan).to_numpy()
    if kind == "random":
        score = np.where(allowed, rng.random((n, len(channels))), -np.inf)
    elif kind == "always_email":
        score = np.where(allowed & (np.asarray(channels) == "email"), 1.0, -np.inf)
    elif kind == "most_engaged":
        # tie-break by the overall rate, then by a tiny seeded jitter
        filled = np.where(np.isnan(rate), overall, rate)
        score = np.where(allowed, filled + 1e-9 * overall + 1e-12 * rng.random(filled.shape), -np.inf)
    elif kind == "contact_everyone":
        score = np.where(allowed, np.broadcast_to(overall, allowed.shape), -np.inf)
    else:
        msg = f"baseline kind {kind!r} is not one of random, always_email, most_engaged, contact_everyone."
        raise ConfigError(msg)
    best = np.argmax(score, axis=1) if n else np.zeros(0, dtype=np.int64)
    any_allowed = np.isfinite(score).any(axis=1)
    rule = np.where(any_allowed, "baseline", "no_consent").astype(object)
    if kind == "most_engaged" and facts is not None:
        f = ids.to_frame().join(facts, on="customer_id", how="left")
        days_contact = f["days_since_contact"].fill_null(np.inf).to_numpy()
        rule[any_allowed & (days_contact <= cfg.cooldown_days)] = "cooldown"
        over = (f["contacts_7d"].fill_null(0).to_numpy() >= cfg.max_contacts_7d) | (
            f["contacts_30d"].fill_null(0).to_numpy() >= cfg.max_contacts_30d
        )
        rule[any_allowed & over] = "pressure_cap"
        incident = f["days_since_incident"].fill_null(np.inf).to_numpy() <= cfg.service_incident_days
        rule[incident] = "service_incident"  # service first, before consent, as in decide()
    contact = rule == "baseline"
    chosen = np.where(contact, np.asarray(channels, dtype=object)[best] if n else [], NO_CONTACT)
    out = pl.DataFrame(
        {
            "customer_id": ids,
            "best_channel": pl.Series(chosen.tolist(), dtype=pl.String),
            "expected_uplift": pl.Series([None] * n, dtype=pl.Float64),
            "expected_value": pl.Series([None] * n, dtype=pl.Float64),
            **{f"score_{c}": pl.Series([None] * n, dtype=pl.Float64) for c in channels},
            "rule": pl.Series(rule.tolist(), dtype=pl.String),
            "offer_category": pl.Series([cfg.offer_category] * n, dtype=pl.String),
            "suppressed_category": pl.Series([None] * n, dtype=pl.String),
        }
    )
    check_consent(out, consent, default=cfg.default_consent)
    return out
