"""Labels: `cutoff <= timestamp < cutoff + horizon`, fully observed windows only, no overlap with features."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.exceptions import DataInsufficientError, LeakageError, SchemaError
from omni_ml.features import FeatureConfig, build_features
from omni_ml.labels import contact_outcomes, observed_until, purchase_labels
from omni_ml.training import training_set

UTC = dt.UTC
C = dt.datetime(2025, 3, 1, 6, 0, 0, 500, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
END = C + 100 * DAY


def _hist(purchases: list[tuple[str, dt.datetime, float]], **tables: pl.DataFrame) -> Histories:
    ev = pl.DataFrame(
        {
            "customer_id": [p[0] for p in purchases],
            "timestamp": [p[1] for p in purchases],
            "channel": ["web"] * len(purchases),
            "event_type": ["purchase"] * len(purchases),
            "amount": [p[2] for p in purchases],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    return Histories.from_frames(ev, **tables)


def test_label_window_is_half_open_to_the_microsecond() -> None:
    hist = _hist(
        [
            ("at", C, 10.0),  # at the cutoff: in the label
            ("before", C - US, 10.0),  # 1 us before: a feature, not a label
            ("last", C + 30 * DAY - US, 2.5),  # last microsecond of the window: in
            ("after", C + 30 * DAY, 10.0),  # at cutoff + horizon: out
            ("x", END, 1.0),
        ]
    )
    keys = pl.DataFrame({"customer_id": ["at", "before", "last", "after", "none"], "cutoff": [C] * 5})
    out = purchase_labels(hist, keys, 30)
    assert out["label"].to_list() == [1, 0, 1, 0, 0]
    assert out["n_purchases"].to_list() == [1, 0, 1, 0, 0]
    assert out["revenue"].to_list() == [10.0, 0.0, 2.5, 0.0, 0.0]
    assert out.schema["label"] == pl.Int8


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(-60 * 86_400, 60 * 86_400).map(lambda s: C + dt.timedelta(seconds=s)), max_size=6),
    st.sampled_from([7, 14, 30]),
)
def test_label_windows_never_overlap_feature_windows(moments: list[dt.datetime], horizon: int) -> None:
    edges = [C, C - US, C + horizon * DAY, C + horizon * DAY - US]
    purchases = [("a", t, 1.0) for t in [*moments, *edges[: len(moments) % 5]]] + [("z", END, 1.0)]
    hist = _hist(purchases)
    keys = pl.DataFrame({"customer_id": ["a"], "cutoff": [C]})
    feats = build_features(hist, keys, config=FeatureConfig(windows=(7, 365), families=("rfm",)))
    labels = purchase_labels(hist, keys, horizon)
    seen = feats["purchases_total"].item()
    future = labels["n_purchases"].item()
    distinct = sorted({t for cid, t, _amount in purchases if cid == "a"})
    assert seen == sum(t < C for t in distinct)
    assert future == sum(C <= t < C + horizon * DAY for t in distinct)
    assert seen + future == sum(t < C + horizon * DAY for t in distinct)  # each purchase counted once at most


def test_label_window_not_fully_observed_raises_leakage_error() -> None:
    hist = _hist([("a", C, 1.0), ("a", C + 20 * DAY, 1.0)])
    keys = pl.DataFrame({"customer_id": ["a", "a"], "cutoff": [C - 30 * DAY, C]})
    with pytest.raises(LeakageError, match=r"1 of 2 windows end after the end of observation .*Hint: use cutoffs"):
        purchase_labels(hist, keys, 30)
    with pytest.raises(LeakageError, match="end of observation 2025-02-15"):
        purchase_labels(hist, keys.head(1), 30, as_of=dt.datetime(2025, 2, 15))
    # the window may end exactly at the end of observation
    assert purchase_labels(hist, keys, 20)["n_purchases"].to_list() == [0, 1]  # C + 20d itself is outside


def test_observed_until_prefers_as_of_then_load_as_of_then_last_event() -> None:
    hist = _hist([("a", C, 1.0)])
    assert observed_until(hist) == C
    assert observed_until(hist, dt.datetime(2026, 1, 1)) == dt.datetime(2026, 1, 1, tzinfo=UTC)
    ev = hist.events.collect()
    loaded = Histories.from_frames(ev, as_of=dt.datetime(2025, 6, 1))
    assert observed_until(loaded) == dt.datetime(2025, 6, 1, tzinfo=UTC)


def test_labels_keep_key_order_and_extra_columns() -> None:
    hist = _hist([("b", C + DAY, 3.0), ("z", END, 1.0)])
    keys = pl.DataFrame({"customer_id": ["b", "a", "b"], "cutoff": [C, C, C + 2 * DAY], "fold": [1, 2, 3]})
    out = purchase_labels(hist, keys, 7)
    assert out.columns == ["customer_id", "cutoff", "fold", "label", "n_purchases", "revenue"]
    assert out["fold"].to_list() == [1, 2, 3]
    assert out["label"].to_list() == [1, 0, 0]


@pytest.mark.parametrize(
    ("keys", "horizon", "match"),
    [
        (pl.DataFrame({"cutoff": [C]}), 7, r"keys: missing column\(s\) \['customer_id'\]"),
        (pl.DataFrame({"customer_id": ["a"], "cutoff": [C]}), 0, "horizon: expected a positive whole number"),
        (pl.DataFrame({"customer_id": ["a"], "cutoff": ["x"]}), 7, "keys.cutoff: expected a Datetime or Date"),
    ],
)
def test_bad_label_requests_are_schema_errors(keys: pl.DataFrame, horizon: int, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        purchase_labels(_hist([("a", END, 1.0)]), keys, horizon)


def _contact_hist() -> Histories:
    ev = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "z"],
            "timestamp": [C + DAY, C + 2 * DAY, C + 3 * DAY, C + 7 * DAY, C - US, END],
            "channel": ["email", "email", "store", "sms", "web", "web"],
            "event_type": ["open", "click", "purchase", "click", "purchase", "visit"],
            "amount": [None, None, 50.0, None, 9.0, None],
            "campaign_id": ["X", "Y", None, None, None, None],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    co = pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "timestamp": [C, C],
            "channel": ["email", "sms"],
            "campaign_id": ["X", None],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    return Histories.from_frames(ev, contacts=co)


def test_contact_outcomes_follow_the_response_window() -> None:
    out = contact_outcomes(_contact_hist(), 7).sort("customer_id")
    a, b = out.row(0, named=True), out.row(1, named=True)
    assert (a["converted"], a["opened"], a["clicked"], a["revenue"]) == (1, 1, 0, 50.0)  # click is campaign Y
    # b's purchase is 1 us before the contact; b's click is exactly at contact + 7 days: both outside
    assert (b["converted"], b["opened"], b["clicked"], b["revenue"]) == (0, 0, 0, 0.0)
    assert out.schema["converted"] == pl.Int8


def test_contact_outcomes_refuse_unobserved_windows_unless_told_to_drop() -> None:
    hist = _contact_hist()
    with pytest.raises(LeakageError, match=r"contact outcomes with a 7-day window: 2 of 2 windows end after"):
        contact_outcomes(hist, 7, as_of=C + 6 * DAY)
    assert contact_outcomes(hist, 7, as_of=C + 6 * DAY, incomplete="drop").height == 0


def test_contact_outcomes_need_a_contacts_table() -> None:
    with pytest.raises(SchemaError, match="no contacts table"):
        contact_outcomes(_hist([("a", C, 1.0)]))


T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


AS_OF = dt.datetime(2025, 1, 1, tzinfo=UTC)


TINY = FeatureConfig(windows=(30,))


_seconds = st.integers(0, 300 * 86_400).map(lambda s: T0 + dt.timedelta(seconds=s))


_customer_events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), _seconds, st.sampled_from(["purchase", "visit"])),
    min_size=1,
    max_size=12,
)


def _events(rows: list[tuple[str, dt.datetime, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "timestamp": [r[1] for r in rows],
            "channel": ["web"] * len(rows),
            "event_type": [r[2] for r in rows],
            "amount": [10.0 if r[2] == "purchase" else None for r in rows],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC"), "amount": pl.Float64},
    )


@settings(max_examples=30, deadline=None)
@given(_customer_events, st.integers(20, 200), st.sampled_from(["UTC", "Europe/Copenhagen", "America/New_York"]))
def test_label_keys_in_any_time_zone_or_as_dates_mean_the_same_instant(
    rows: list[tuple[str, dt.datetime, str]], day: int, zone: str
) -> None:
    """A cutoff given in another zone (across DST) or as a date labels exactly like its UTC instant."""
    hist = Histories.from_frames(_events(rows))
    cutoff = T0 + dt.timedelta(days=day)
    ids = ["a", "b", "c", "d"]
    utc = purchase_labels(hist, pl.DataFrame({"customer_id": ids, "cutoff": [cutoff] * 4}), 30, as_of=AS_OF)
    local = pl.DataFrame({"customer_id": ids, "cutoff": [cutoff.astimezone(ZoneInfo(zone))] * 4})
    dates = pl.DataFrame({"customer_id": ids, "cutoff": [cutoff.date()] * 4})
    for keys in (local, dates):
        out = purchase_labels(hist, keys, 30, as_of=AS_OF)
        assert out.select("label", "n_purchases", "revenue").equals(utc.select("label", "n_purchases", "revenue"))
    naive = pl.DataFrame({"customer_id": ids, "cutoff": [cutoff.replace(tzinfo=None)] * 4})
    assert purchase_labels(hist, naive, 30, as_of=AS_OF)["label"].equals(utc["label"])
    want = [
        int(any(r[0] == c and r[2] == "purchase" and cutoff <= r[1] < cutoff + 30 * DAY for r in rows)) for c in ids
    ]
    assert utc["label"].to_list() == want


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 23 * 3600 + 3599), st.integers(1, 86_399), st.sampled_from([7, 30]))
def test_without_as_of_a_window_past_the_last_timestamp_is_not_labelled(
    last_second: int, past: int, horizon: int
) -> None:
    """Timestamped events and no as-of: the data is only known to reach the last event, not its midnight."""
    last = dt.datetime(2024, 6, 30, tzinfo=UTC) + dt.timedelta(seconds=last_second)
    ev = _events([("a", T0, "visit"), ("a", last, "visit")])
    next_midnight = dt.datetime.combine(last.date() + DAY, dt.time(), tzinfo=UTC)
    end = min(last + dt.timedelta(seconds=past), next_midnight)  # in (last, next midnight]
    cutoff = end - dt.timedelta(days=horizon)
    with pytest.raises(DataInsufficientError, match="ending after the end of the events"):
        training_set(Histories.from_frames(ev), [cutoff], horizon, config=TINY)
    fine = last - dt.timedelta(days=horizon)  # the window ends exactly at the last event: fully observed
    assert training_set(Histories.from_frames(ev), [fine], horizon, config=TINY).y.tolist() == [0]


def test_without_as_of_date_level_data_counts_the_last_day_as_observed() -> None:
    """Dates are midnight: a log whose last date is D is observed through the end of D."""
    log = pl.DataFrame({"customer_id": ["a", "a"], "date": [dt.date(2024, 1, 5), dt.date(2024, 6, 30)]})
    ts = training_set(Histories.from_frames(log.with_columns(amount=pl.lit(5.0))), ["2024-06-01"], 30, config=TINY)
    assert ts.y.tolist() == [1]  # window [06-01, 07-01) holds the purchase of 06-30
