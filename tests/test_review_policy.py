"""Review of the decision rules and off-policy evaluation: each test pins a defect that was fixed."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.evaluation import off_policy_value
from omni_ml.exceptions import SchemaError
from omni_ml.features import build_features
from omni_ml.policy import NO_CONTACT, PolicyConfig, baseline_decisions, decide, history_facts

CH = ("email", "sms", "push")
CFG = PolicyConfig(conversion_value=10.0, channels=CH, channel_costs={"email": 0.1, "sms": 0.5, "push": 0.05})


def _consent(cid: str, flags: tuple[bool, bool, bool]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [cid], **{f"consent_{c}": [v] for c, v in zip(CH, flags, strict=True)}})


def _facts(**cols: object) -> pl.DataFrame:
    base: dict[str, object] = {
        "customer_id": ["a"],
        "contacts_7d": [0],
        "contacts_30d": [0],
        "days_since_contact": [None],
        "days_since_incident": [None],
        "recent_categories": [[]],
        "preferred_category": [None],
    }
    base.update(cols)
    return pl.DataFrame(
        base,
        schema_overrides={
            "days_since_contact": pl.Float64,
            "days_since_incident": pl.Float64,
            "recent_categories": pl.List(pl.String),
            "preferred_category": pl.String,
        },
    )


@settings(max_examples=40, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
    nan_at=st.integers(0, 2),
)
def test_a_nan_cost_never_hides_the_other_channels(p: list[float], nan_at: int) -> None:
    """A NaN in the cost column is a missing cost (like null): the configured cost applies.

    It used to win np.argmax and pause the customer with rule no_positive_value.
    """
    costs = [CFG.cost(c) for c in CH]
    with_nan = [float("nan") if j == nan_at else costs[j] for j in range(3)]
    rows = {"customer_id": ["a"] * 3, "channel": list(CH), "p_if_contacted": p, "p_if_not": [0.0] * 3}
    got = decide(pl.DataFrame({**rows, "cost": with_nan}), _consent("a", (True, True, True)), config=CFG)
    want = decide(pl.DataFrame({**rows, "cost": costs}), _consent("a", (True, True, True)), config=CFG)
    assert got.select("best_channel", "rule").rows() == want.select("best_channel", "rule").rows()
    assert got["expected_value"][0] == pytest.approx(want["expected_value"][0])


def test_a_consented_customer_without_estimates_is_not_reported_as_no_consent() -> None:
    """The recorded rule must be the one that decided: consent was given, there is just nothing to beat the pause."""
    est = pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "channel": ["email", "email"],
            "p_if_contacted": [None, None],
            "p_if_not": [0.1, 0.1],
        },
        schema_overrides={"p_if_contacted": pl.Float64},
    )
    consent = pl.concat([_consent("a", (True, False, False)), _consent("b", (False, False, False))])
    out = decide(est, consent, config=CFG)
    assert out["best_channel"].to_list() == [NO_CONTACT, NO_CONTACT]
    assert out["rule"].to_list() == ["no_positive_value", "no_consent"]
    # and, being consented, the pressure rules apply to it like to anyone else
    facts = _facts(contacts_7d=[5])
    assert decide(est.head(1), consent.head(1), facts, CFG)["rule"].to_list() == ["pressure_cap"]


_T = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def _one_customer_history(days_back: float) -> Histories:
    """A purchase, a service call and a contact, all ``days_back`` days before ``_T``."""
    at = _T - dt.timedelta(days=days_back)
    events = pl.DataFrame(
        {
            "customer_id": ["a", "a"],
            "timestamp": [at, at],
            "channel": ["web", "call_center"],
            "event_type": ["purchase", "service_call"],
            "category": ["phones", None],
            "amount": [10.0, None],
        }
    )
    contacts = pl.DataFrame({"customer_id": ["a"], "timestamp": [at], "channel": ["email"]})
    return Histories.from_frames(events, contacts=contacts)


def test_policy_windows_match_the_feature_windows_at_the_exact_boundary() -> None:
    """ "In the last N days" is ``as_of - N days <= timestamp < as_of`` everywhere (features/_spec.py).

    An event exactly N days back counted in the features' ``contacts_7d``/``purchases_30d`` but not in the
    policy's facts, so the pressure cap, suppression and service rules missed it.
    """
    hist = _one_customer_history(7.0)
    feats = build_features(hist, _T)
    facts = history_facts(hist, _T)
    assert facts["contacts_7d"][0] == feats["contacts_7d"][0] == 1
    hist30 = _one_customer_history(30.0)
    assert build_features(hist30, _T)["purchases_cat_phones_30d"][0] == 1
    assert history_facts(hist30, _T, config=PolicyConfig(suppression_days=30))["recent_categories"][0].to_list() == [
        "phones"
    ]


@settings(max_examples=60, deadline=None)
@given(
    half_days=st.integers(1, 80),
    window=st.integers(0, 30),
    cooldown=st.integers(0, 10),
)
def test_every_rule_window_includes_its_start_and_excludes_as_of(half_days: int, window: int, cooldown: int) -> None:
    days_back = half_days / 2
    cfg = PolicyConfig(
        conversion_value=10.0,
        channels=CH,
        channel_costs=CFG.channel_costs,
        suppression_days=window,
        service_incident_days=window,
        cooldown_days=float(cooldown),
        max_contacts_7d=1,
        max_contacts_30d=2,
        complements={},
        offer_category="phones",
    )
    facts = history_facts(_one_customer_history(days_back), _T, config=cfg)
    assert facts["contacts_7d"][0] == int(days_back <= 7)
    assert facts["contacts_30d"][0] == int(days_back <= 30)
    assert facts["recent_categories"][0].to_list() == (["phones"] if days_back <= window else [])
    est = pl.DataFrame(
        {"customer_id": ["a"] * 3, "channel": list(CH), "p_if_contacted": [0.9] * 3, "p_if_not": [0.0] * 3}
    )
    rule = decide(est, _consent("a", (True, True, True)), facts, cfg)["rule"][0]
    if days_back <= window:
        assert rule == "service_incident"
    elif days_back <= 7:
        assert rule == "pressure_cap"
    elif days_back <= cooldown:
        assert rule == "cooldown"
    else:
        assert rule == "best_value"
    # an event at as_of itself is in the future of the decision
    at_as_of = history_facts(_one_customer_history(0.0), _T, config=cfg)
    assert at_as_of["contacts_7d"][0] == 0
    assert at_as_of["days_since_incident"][0] is None


def test_category_suppression_is_recorded_before_the_value_rule() -> None:
    """Documented precedence: suppression (4) comes before value (5); the paused customer shows why."""
    cfg = PolicyConfig(
        conversion_value=10.0, channels=CH, channel_costs=CFG.channel_costs, offer_category="phones", complements={}
    )
    est = pl.DataFrame(
        {"customer_id": ["a"] * 3, "channel": list(CH), "p_if_contacted": [0.1] * 3, "p_if_not": [0.1] * 3}
    )
    out = decide(est, _consent("a", (True, True, True)), _facts(recent_categories=[["phones"]]), cfg)
    assert out.select("best_channel", "rule", "suppressed_category").row(0) == (
        NO_CONTACT,
        "category_suppressed",
        "phones",
    )


@settings(max_examples=40, deadline=None)
@given(
    flags=st.lists(st.booleans(), min_size=3, max_size=3),
    incident=st.one_of(st.none(), st.floats(0.5, 30.0)),
    contacts_7d=st.integers(0, 5),
    since_contact=st.one_of(st.none(), st.floats(0.1, 10.0)),
)
def test_most_engaged_baseline_records_the_same_rule_as_decide(
    flags: list[bool], incident: float | None, contacts_7d: int, since_contact: float | None
) -> None:
    """Baselines apply the service, consent and pressure rules with decide's precedence (service first)."""
    facts = _facts(days_since_incident=[incident], contacts_7d=[contacts_7d], days_since_contact=[since_contact])
    consent = _consent("a", (flags[0], flags[1], flags[2]))
    est = pl.DataFrame(
        {"customer_id": ["a"] * 3, "channel": list(CH), "p_if_contacted": [0.9] * 3, "p_if_not": [0.0] * 3}
    )
    learned = decide(est, consent, facts, CFG)["rule"][0]
    base = baseline_decisions("most_engaged", ["a"], consent, facts=facts, config=CFG)["rule"][0]
    assert (base if base != "baseline" else "best_value") == learned


# ----------------------------------------------------------------------------- off-policy

_ACTS = np.array(["email", "no_contact"] * 20)
_REWARD = np.tile([1.0, 0.0], 20)
_P0 = np.full(40, 0.5)


@settings(max_examples=30, deadline=None)
@given(excess=st.floats(0.01, 5.0))
def test_a_stochastic_target_with_probabilities_outside_0_1_is_rejected(excess: float) -> None:
    """Rows summing to 1 with a negative entry are not a policy; they gave IPS/SNIPS outside the reward range."""
    bad = np.tile([1.0 + excess, -excess], (40, 1))
    with pytest.raises(SchemaError, match=r"probabilities in \[0, 1\]"):
        off_policy_value(_ACTS, _REWARD, bad, logging_probability=_P0, action_space=["email", "no_contact"])
    with pytest.raises(SchemaError, match=r"baseline: .*probabilities in \[0, 1\]"):
        off_policy_value(
            _ACTS,
            _REWARD,
            np.full(40, "email"),
            logging_probability=_P0,
            action_space=["email", "no_contact"],
            baseline=bad,
        )


def test_a_non_finite_outcome_model_is_an_error_not_a_silent_fall_back_to_snips() -> None:
    """A q_hat with NaN (e.g. for a channel never logged) made DR NaN and ``best`` quietly report SNIPS."""
    q = np.zeros((40, 2))
    q[3, 0] = np.nan
    with pytest.raises(SchemaError, match=r"q_hat: 1 of 40 units .*'email'"):
        off_policy_value(_ACTS, _REWARD, np.full(40, "no_contact"), logging_probability=_P0, q_hat=q)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_an_infinite_logging_probability_is_rejected_not_taken_as_missing(bad: float) -> None:
    """Only null/NaN mean "not logged"; +-inf is a wrong value (it was estimated over, or blamed on missing X)."""
    p0 = _P0.copy()
    p0[5] = bad
    with pytest.raises(SchemaError, match=r"values must be in \(0, 1\]"):
        off_policy_value(_ACTS, _REWARD, np.full(40, "email"), logging_probability=p0)


@pytest.mark.parametrize("bad", [np.nan, -1.0, np.inf])
def test_design_weights_must_be_finite_and_non_negative(bad: float) -> None:
    """A NaN design weight turned every estimate into NaN without a word."""
    design = np.ones(40)
    design[7] = bad
    with pytest.raises(SchemaError, match=r"sample_weight: 1 of 40 .*unit 7"):
        off_policy_value(_ACTS, _REWARD, np.full(40, "email"), logging_probability=_P0, sample_weight=design)
