"""The policy's history facts are engine features (issue 21): same values as a plain reading of their definition."""

from __future__ import annotations

import datetime as dt

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from omni_ml.data import NO_CONTACT, Histories
from omni_ml.exceptions import ConfigError
from omni_ml.features import FeatureConfig, FeatureSet, build_feature_frames, build_features, union_features
from omni_ml.features.facts import FactsSpec, facts_features, facts_frame
from omni_ml.policy import PolicyConfig, facts_spec, history_facts

T = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
CUSTOMERS = ("a", "b", "c")
SERVICE = ("service_call", "complaint")


def _offsets(*days: int) -> list[dt.timedelta]:
    """Every window edge: exactly ``d`` days back, a microsecond inside and outside."""
    return [d * DAY + e for d in days for e in (-US, dt.timedelta(0), US)]


# edges of the 7/30-day pressure windows, the 10-day suppression window below and the 365-day preference,
# the cutoff itself (a row at the cutoff is not known) and a microsecond before it; plus a few inside
_EDGES = [*_offsets(7, 10, 30, 365), dt.timedelta(0), US, -US, -DAY, 2 * DAY, 100 * DAY]
_offset = st.one_of(st.sampled_from(_EDGES), st.integers(-DAY // US, 400 * DAY // US).map(lambda n: n * US))

_event = st.tuples(
    st.sampled_from(CUSTOMERS),
    _offset,
    st.sampled_from(["purchase", "purchase", "view", "service_call", "complaint"]),
    st.sampled_from(["phones", "audio", "tv", None]),
)
_contact = st.tuples(st.sampled_from(CUSTOMERS), _offset, st.sampled_from(["email", "sms", NO_CONTACT]))


def _histories(events: list, contacts: list) -> Histories:
    ev = pl.DataFrame(
        {
            "customer_id": [e[0] for e in events],
            "timestamp": [T - e[1] for e in events],
            "channel": ["web"] * len(events),
            "event_type": [e[2] for e in events],
            "category": [e[3] for e in events],
            "amount": [10.0 if e[2] == "purchase" else None for e in events],
        },
        schema_overrides={"category": pl.String, "amount": pl.Float64},
    )
    co = pl.DataFrame(
        {
            "customer_id": [c[0] for c in contacts],
            "timestamp": [T - c[1] for c in contacts],
            "channel": [c[2] for c in contacts],
        }
    )
    return Histories.from_frames(ev, contacts=co if contacts else None)


def _oracle(events: list, contacts: list, customer: str, suppression_days: int) -> dict[str, object]:
    """The facts read off their definitions, one customer at a time, in plain Python."""

    def within(offset: dt.timedelta, days: int) -> bool:  # as_of - days <= timestamp < as_of
        return dt.timedelta(0) < offset <= days * DAY

    def days_since(offsets: list[dt.timedelta]) -> float | None:
        known = [o for o in offsets if o > dt.timedelta(0)]
        return min(known) / DAY if known else None

    sent = [c[1] for c in contacts if c[0] == customer and c[2] != NO_CONTACT]
    mine = [e for e in events if e[0] == customer]
    bought = [(e[1], e[3]) for e in mine if e[2] == "purchase" and e[3] is not None]
    year: dict[str, int] = {}
    for offset, category in bought:
        if within(offset, 365):
            year[category] = year.get(category, 0) + 1
    top = max(year.values(), default=0)
    return {
        "customer_id": customer,
        "contacts_7d": sum(within(o, 7) for o in sent),
        "contacts_30d": sum(within(o, 30) for o in sent),
        "days_since_contact": days_since(sent),
        "days_since_incident": days_since([e[1] for e in mine if e[2] in SERVICE]),
        "recent_categories": sorted({c for o, c in bought if suppression_days and within(o, suppression_days)}),
        "preferred_category": min((c for c, n in year.items() if n == top), default=None),
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_event, min_size=1, max_size=25),
    contacts=st.lists(_contact, max_size=12),
    suppression_days=st.sampled_from([0, 10, 30]),
)
def test_history_facts_equal_their_definition_at_every_window_edge(
    events: list, contacts: list, suppression_days: int
) -> None:
    events, contacts = list(dict.fromkeys(events)), list(dict.fromkeys(contacts))  # loading drops exact duplicates
    config = PolicyConfig(suppression_days=suppression_days, service_event_types=SERVICE)
    got = history_facts(_histories(events, contacts), T, config=config, customers=list(CUSTOMERS))
    assert got.columns == [
        "customer_id",
        "contacts_7d",
        "contacts_30d",
        "days_since_contact",
        "days_since_incident",
        "recent_categories",
        "preferred_category",
    ]
    assert got.to_dicts() == [_oracle(events, contacts, c, suppression_days) for c in CUSTOMERS]


def test_history_facts_without_customers_lists_everyone_known_and_keeps_a_given_order() -> None:
    events = [("b", DAY, "purchase", "tv"), ("a", -DAY, "view", None)]  # a's only event is after as_of
    contacts = [("c", -DAY, "email")]  # contacts (any time) make a customer known, as before
    hist = _histories(events, contacts)
    assert history_facts(hist, T)["customer_id"].to_list() == ["b", "c"]
    given_order = history_facts(hist, T, customers=["c", "b", "c"])
    assert given_order["customer_id"].to_list() == ["c", "b", "c"]
    assert given_order["recent_categories"].to_list() == [[], ["tv"], []]


def test_the_facts_join_another_feature_list_in_one_plan_and_read_the_same() -> None:
    events = [("a", 3 * DAY, "purchase", "tv"), ("a", 40 * DAY, "purchase", "audio"), ("b", 2 * DAY, "complaint", None)]
    hist = _histories(events, [("a", DAY, "sms"), ("b", 8 * DAY, "email")])
    fs = FeatureSet.from_histories(hist, FeatureConfig(windows=(7, 30)), before=T)
    spec = facts_spec(PolicyConfig(), hist, T, None)
    union = union_features(fs.features, facts_features(spec))
    assert union is not None
    frame = build_feature_frames(hist, [T], union)
    assert frame.select(fs.names).equals(build_features(hist, T, feature_set=fs).select(fs.names))
    assert facts_frame(spec, frame).equals(history_facts(hist, T, customers=frame["customer_id"]))


def test_union_refuses_one_name_with_two_meanings() -> None:
    one = facts_features(FactsSpec(10, SERVICE, ("tv",)))
    other = facts_features(FactsSpec(20, SERVICE, ("tv",)))  # __fact_recent_0 over 20 days, not 10
    assert union_features(one, one) is not None
    assert union_features(one, other) is None


@pytest.mark.parametrize("days", [2.5, -1])
def test_a_suppression_window_the_engine_cannot_cut_is_a_config_error(days: float) -> None:
    with pytest.raises(ConfigError, match=r"suppression_days must be a whole number of days >= 0.*Hint"):
        FactsSpec(days, SERVICE)  # type: ignore[arg-type]
