from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.config import from_mapping
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, ConsentError, SchemaError
from omni_ml.features import build_features
from omni_ml.policy import (
    NO_CONTACT,
    RULES,
    PolicyConfig,
    baseline_decisions,
    check_consent,
    costs_from_contacts,
    decide,
    engagement_rates,
    history_facts,
)

CH = ("email", "sms", "push")
CFG = PolicyConfig(conversion_value=10.0, channels=CH, channel_costs={"email": 0.1, "sms": 0.5, "push": 0.05})
UTC = dt.UTC


def _estimates(rows: dict[str, tuple[float, float, float]], p_not: float = 0.1) -> pl.DataFrame:
    out = []
    for cid, ps in rows.items():
        for ch, p in zip(CH, ps, strict=True):
            out.append({"customer_id": cid, "channel": ch, "p_if_contacted": p, "p_if_not": p_not})
    return pl.DataFrame(out)


def _consent(rows: dict[str, tuple[bool, bool, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"customer_id": list(rows), **{f"consent_{c}": [v[i] for v in rows.values()] for i, c in enumerate(CH)}}
    )


def test_best_value_channel_is_uplift_times_value_minus_cost() -> None:
    est = _estimates({"a": (0.20, 0.25, 0.12)})
    out = decide(est, _consent({"a": (True, True, True)}), config=CFG)
    row = out.row(0, named=True)
    # email 0.1*10-0.1=0.9 ; sms 0.15*10-0.5=1.0 ; push 0.02*10-0.05=0.15
    assert row["best_channel"] == "sms"
    assert row["rule"] == "best_value"
    assert row["expected_uplift"] == pytest.approx(0.15)
    assert row["expected_value"] == pytest.approx(1.0)
    assert row["score_email"] == pytest.approx(0.9)
    assert row["score_push"] == pytest.approx(0.15)


def test_pause_when_nothing_beats_no_contact() -> None:
    est = _estimates({"a": (0.10, 0.09, 0.10)})
    row = decide(est, _consent({"a": (True, True, True)}), config=CFG).row(0, named=True)
    assert row["best_channel"] == NO_CONTACT
    assert row["rule"] == "no_positive_value"
    assert row["expected_uplift"] == 0.0
    assert row["expected_value"] == 0.0


def test_consent_masks_channel_and_nulls_its_score() -> None:
    est = _estimates({"a": (0.20, 0.60, 0.12), "b": (0.5, 0.5, 0.5)})
    out = decide(est, _consent({"a": (True, False, True), "b": (False, False, False)}), config=CFG)
    a, b = out.rows(named=True)
    assert a["best_channel"] == "email"
    assert a["score_sms"] is None
    assert b["best_channel"] == NO_CONTACT
    assert b["rule"] == "no_consent"


def test_missing_consent_record_uses_default() -> None:
    est = _estimates({"a": (0.5, 0.1, 0.1)})
    empty = pl.DataFrame(schema={"customer_id": pl.String, "consent_email": pl.Boolean})
    assert decide(est, empty, config=CFG)["rule"].item() == "no_consent"
    opt_out = from_mapping(PolicyConfig, {**CFG.__dict__, "default_consent": True})
    assert decide(est, empty, config=opt_out)["best_channel"].item() == "email"


def test_cost_column_overrides_configured_cost() -> None:
    est = _estimates({"a": (0.20, 0.25, 0.10)}).with_columns(
        pl.when(pl.col("channel") == "sms").then(5.0).otherwise(0.0).alias("cost")
    )
    assert decide(est, _consent({"a": (True, True, True)}), config=CFG)["best_channel"].item() == "email"


def _facts(**cols: list[object]) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base: dict[str, object] = {
        "customer_id": [f"c{i}" for i in range(n)],
        "contacts_7d": [0] * n,
        "contacts_30d": [0] * n,
        "days_since_contact": [None] * n,
        "days_since_incident": [None] * n,
        "recent_categories": [[] for _ in range(n)],
        "preferred_category": [None] * n,
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


def test_pressure_cooldown_and_service_rules_pause_with_their_reason() -> None:
    ids = [f"c{i}" for i in range(5)]
    est = _estimates(dict.fromkeys(ids, (0.5, 0.5, 0.5)))
    consent = _consent(dict.fromkeys(ids, (True, True, True)))
    facts = _facts(
        contacts_7d=[0, 3, 0, 1, 3],
        contacts_30d=[0, 3, 8, 1, 3],
        days_since_contact=[None, 1.0, 5.0, 0.5, 0.5],
        days_since_incident=[None, None, None, None, 3.0],
    )
    out = decide(est, consent, facts, CFG)
    assert out["rule"].to_list() == ["best_value", "pressure_cap", "pressure_cap", "cooldown", "service_incident"]
    assert out["best_channel"].to_list() == ["push", NO_CONTACT, NO_CONTACT, NO_CONTACT, NO_CONTACT]
    # the scores stay visible for paused customers: the cost of the pause is inspectable
    assert out["score_email"].null_count() == 0


def test_category_suppression_offers_complement_or_pauses() -> None:
    ids = [f"c{i}" for i in range(3)]
    est = _estimates(dict.fromkeys(ids, (0.5, 0.1, 0.1)))
    consent = _consent(dict.fromkeys(ids, (True, True, True)))
    facts = _facts(
        recent_categories=[["phones"], ["phones", "accessories"], []],
        preferred_category=["phones", "phones", "phones"],
    )
    out = decide(est, consent, facts, CFG)
    assert out["offer_category"].to_list() == ["accessories", None, "phones"]
    assert out["suppressed_category"].to_list() == ["phones", "phones", None]
    assert out["rule"].to_list() == ["best_value", "category_suppressed", "best_value"]
    assert out["best_channel"].to_list() == ["email", NO_CONTACT, "email"]


def test_campaign_category_from_config_is_suppressed_too() -> None:
    est = _estimates({"c0": (0.5, 0.1, 0.1)})
    cfg = PolicyConfig(**{**CFG.__dict__, "offer_category": "tv"})
    out = decide(est, _consent({"c0": (True, True, True)}), _facts(recent_categories=[["tv"]]), cfg)
    assert out.select("offer_category", "suppressed_category").row(0) == ("audio", "tv")


def test_decide_rejects_bad_estimates() -> None:
    with pytest.raises(SchemaError, match=r"estimates: missing column\(s\) \['p_if_not'\]"):
        decide(
            pl.DataFrame({"customer_id": ["a"], "channel": ["email"], "p_if_contacted": [0.1]}),
            _consent({"a": (True, True, True)}),
            config=CFG,
        )
    dup = pl.concat([_estimates({"a": (0.2, 0.2, 0.2)})] * 2)
    with pytest.raises(SchemaError, match=r"repeat a \(customer_id, channel\) pair \(e.g. 'a', 'email'\)"):
        decide(dup, _consent({"a": (True, True, True)}), config=CFG)


def test_policy_config_validation() -> None:
    with pytest.raises(ConfigError, match="cooldown_days must be >= 0"):
        PolicyConfig(cooldown_days=-1)
    with pytest.raises(ConfigError, match="did you mean 'cooldown_days'"):
        from_mapping(PolicyConfig, {"cooldown_day": 3})


def test_check_consent_raises_with_example() -> None:
    d = pl.DataFrame({"customer_id": ["a", "b"], "best_channel": ["email", "sms"]})
    with pytest.raises(
        ConsentError, match=r"1 of 2 decisions contact a customer without consent \(e.g. 'b' on 'sms'\)"
    ):
        check_consent(d, _consent({"a": (True, False, False), "b": (True, False, False)}))


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
            st.floats(0.0, 1.0),
            st.lists(st.booleans(), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=25,
    ),
    default=st.booleans(),
    drop=st.integers(0, 3),
)
def test_never_recommends_a_channel_without_consent(
    data: list[tuple[list[float], float, list[bool]]], default: bool, drop: int
) -> None:
    rows = {f"c{i}": tuple(p) for i, (p, _, _) in enumerate(data)}
    est = pl.concat(
        [_estimates({cid: ps}, p_not=data[i][1]) for i, (cid, ps) in enumerate(rows.items())]  # type: ignore[arg-type,dict-item]
    )
    consent = _consent({f"c{i}": tuple(c) for i, (_, _, c) in enumerate(data)})  # type: ignore[misc]
    consent = consent.head(max(consent.height - drop, 0))  # some customers without a record
    cfg = PolicyConfig(**{**CFG.__dict__, "default_consent": default})
    out = decide(est, consent, config=cfg)
    granted = {r[0]: dict(zip(CH, r[1:], strict=True)) for r in consent.rows()}
    for row in out.iter_rows(named=True):
        ch = row["best_channel"]
        if ch != NO_CONTACT:
            assert granted.get(row["customer_id"], dict.fromkeys(CH, default))[ch]
            # the chosen channel has the best score among consented channels, and beats the pause
            scores = [row[f"score_{c}"] for c in CH if row[f"score_{c}"] is not None]
            assert row["expected_value"] == pytest.approx(max(scores))
            assert row["expected_value"] > cfg.min_value
        assert row["rule"] in RULES
    for kind in ("random", "always_email", "most_engaged", "contact_everyone"):
        base = baseline_decisions(kind, list(rows), consent, config=cfg, seed=1)  # type: ignore[arg-type]
        for row in base.iter_rows(named=True):
            if row["best_channel"] != NO_CONTACT:
                assert granted.get(row["customer_id"], dict.fromkeys(CH, default))[row["best_channel"]]


def _hist() -> Histories:
    ev = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "c"],
            "timestamp": [dt.datetime(2025, 1, d) for d in (2, 20, 30, 5, 31)] + [dt.datetime(2025, 2, 1)],
            "channel": ["web", "store", "call_center", "email", "email", "web"],
            "event_type": ["purchase", "purchase", "service_call", "open", "click", "purchase"],
            "category": ["phones", "phones", None, None, None, "tv"],
            "amount": [400.0, 300.0, None, None, None, 500.0],
        }
    )
    contacts = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "b"],
            "timestamp": [
                dt.datetime(2025, 1, 3),
                dt.datetime(2025, 1, 29),
                dt.datetime(2025, 1, 4),
                dt.datetime(2025, 1, 30),
                dt.datetime(2025, 2, 1),
            ],
            "channel": ["email", "sms", "email", "email", "sms"],
            "cost": [0.02, 0.1, 0.02, 0.04, 0.1],
        }
    )
    return Histories.from_frames(ev, contacts=contacts)


def test_history_facts_use_only_the_past() -> None:
    f = history_facts(_hist(), dt.datetime(2025, 2, 1, tzinfo=UTC)).sort("customer_id")
    a, b = f.rows(named=True)  # c is only seen at the cutoff itself: not yet a customer
    assert (a["contacts_7d"], a["contacts_30d"]) == (1, 2)
    assert a["days_since_contact"] == pytest.approx(3.0)
    assert a["days_since_incident"] == pytest.approx(2.0)
    assert a["recent_categories"] == ["phones"]  # 2 Jan is 30 days before: outside the 30-day window
    assert a["preferred_category"] == "phones"
    # b's contact at exactly 2025-02-01 00:00 is not before the cutoff
    assert (b["contacts_7d"], b["contacts_30d"]) == (1, 2)
    given = history_facts(_hist(), dt.datetime(2025, 2, 1, tzinfo=UTC), customers=["c", "a"])
    assert given["customer_id"].to_list() == ["c", "a"]
    assert given.row(0)[1:6] == (0, 0, None, None, [])


def test_costs_and_engagement_from_history() -> None:
    hist = _hist()
    assert costs_from_contacts(hist) == pytest.approx({"email": 0.08 / 3, "sms": 0.1})
    rates = engagement_rates(hist, dt.datetime(2025, 2, 2), channels=CH, prior=0.0)
    b_email = rates.filter((pl.col("customer_id") == "b") & (pl.col("channel") == "email")).row(0, named=True)
    assert (b_email["contacts"], b_email["engagements"], b_email["rate"]) == (2, 2, 1.0)


def test_baselines_follow_their_definitions() -> None:
    ids = ["a", "b", "c", "d"]
    consent = _consent(
        {"a": (True, True, True), "b": (False, True, True), "c": (False, False, False), "d": (True, True, False)}
    )
    eng = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b"],
            "channel": ["email", "sms", "sms", "push"],
            "contacts": [10, 10, 10, 10],
            "engagements": [1, 6, 0, 5],
            "rate": [0.1, 0.6, 0.0, 0.5],
        }
    )
    email = baseline_decisions("always_email", ids, consent, config=CFG)
    assert email["best_channel"].to_list() == ["email", NO_CONTACT, NO_CONTACT, "email"]
    engaged = baseline_decisions("most_engaged", ids, consent, engagement=eng, config=CFG)
    # d has no history: overall best rate sms (6/20) beats push (5/10)? no: push 0.5 > sms 0.3 but d has no push
    assert engaged["best_channel"].to_list() == ["sms", "push", NO_CONTACT, "sms"]
    everyone = baseline_decisions("contact_everyone", ids, consent, engagement=eng, config=CFG)
    assert everyone["best_channel"].to_list() == ["push", "push", NO_CONTACT, "sms"]
    assert everyone["rule"].to_list() == ["baseline", "baseline", "no_consent", "baseline"]
    r1 = baseline_decisions("random", ids * 50, consent, config=CFG, seed=3)
    r2 = baseline_decisions("random", ids * 50, consent, config=CFG, seed=3)
    assert r1.equals(r2)
    with pytest.raises(ConfigError, match="baseline kind 'best'"):
        baseline_decisions("best", ids, consent, config=CFG)  # type: ignore[arg-type]


def test_random_baseline_spreads_over_consented_channels() -> None:
    ids = [f"x{i}" for i in range(600)]
    consent = _consent(dict.fromkeys(ids, (True, True, False)))
    out = baseline_decisions("random", ids, consent, config=CFG, seed=0)
    share = out["best_channel"].value_counts().sort("best_channel")
    assert share["best_channel"].to_list() == ["email", "sms"]
    assert np.all(np.abs(share["count"].to_numpy() / 600 - 0.5) < 0.08)


def test_most_engaged_respects_pressure_rules() -> None:
    consent = _consent({"c0": (True, True, True), "c1": (True, True, True)})
    facts = _facts(contacts_7d=[5, 0], contacts_30d=[5, 0])
    out = baseline_decisions("most_engaged", ["c0", "c1"], consent, facts=facts, config=CFG)
    assert out["rule"].to_list() == ["pressure_cap", "baseline"]


def _consent_one(cid: str, flags: tuple[bool, bool, bool]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [cid], **{f"consent_{c}": [v] for c, v in zip(CH, flags, strict=True)}})


def _facts_one(**cols: object) -> pl.DataFrame:
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
    got = decide(pl.DataFrame({**rows, "cost": with_nan}), _consent_one("a", (True, True, True)), config=CFG)
    want = decide(pl.DataFrame({**rows, "cost": costs}), _consent_one("a", (True, True, True)), config=CFG)
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
    consent = pl.concat([_consent_one("a", (True, False, False)), _consent_one("b", (False, False, False))])
    out = decide(est, consent, config=CFG)
    assert out["best_channel"].to_list() == [NO_CONTACT, NO_CONTACT]
    assert out["rule"].to_list() == ["no_positive_value", "no_consent"]
    # and, being consented, the pressure rules apply to it like to anyone else
    facts = _facts_one(contacts_7d=[5])
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
    rule = decide(est, _consent_one("a", (True, True, True)), facts, cfg)["rule"][0]
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
    out = decide(est, _consent_one("a", (True, True, True)), _facts_one(recent_categories=[["phones"]]), cfg)
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
    facts = _facts_one(days_since_incident=[incident], contacts_7d=[contacts_7d], days_since_contact=[since_contact])
    consent = _consent_one("a", (flags[0], flags[1], flags[2]))
    est = pl.DataFrame(
        {"customer_id": ["a"] * 3, "channel": list(CH), "p_if_contacted": [0.9] * 3, "p_if_not": [0.0] * 3}
    )
    learned = decide(est, consent, facts, CFG)["rule"][0]
    base = baseline_decisions("most_engaged", ["a"], consent, facts=facts, config=CFG)["rule"][0]
    assert (base if base != "baseline" else "best_value") == learned
