"""Adversarial review of time semantics: who exists at a cutoff, identity as of a cutoff, window boundaries."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.exceptions import DataInsufficientError
from omni_ml.features import FeatureConfig, build_features
from omni_ml.identity import consent_state, resolve_identities
from omni_ml.labels import purchase_labels
from omni_ml.training import TrainingSet, training_set

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
AS_OF = dt.datetime(2025, 1, 1, tzinfo=UTC)
TINY = FeatureConfig(windows=(30,))
TS = pl.Datetime("us", "UTC")
DAY = dt.timedelta(days=1)

_seconds = st.integers(0, 300 * 86_400).map(lambda s: T0 + dt.timedelta(seconds=s))
_customer_events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), _seconds, st.sampled_from(["purchase", "visit"])),
    min_size=1,
    max_size=12,
)
_cutoff_days = st.lists(st.integers(20, 300), min_size=1, max_size=3, unique=True)


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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_customer_events, _cutoff_days)
def test_no_training_row_for_a_customer_not_yet_seen_at_its_cutoff(
    rows: list[tuple[str, dt.datetime, str]], days: list[int]
) -> None:
    """A customer whose first record is at or after a cutoff did not exist then: no row, so no free label 1."""
    ev = _events(rows)
    customers = pl.DataFrame({"customer_id": sorted({r[0] for r in rows})})
    cuts = [T0 + dt.timedelta(days=d) for d in days]
    first = {c: min(r[1] for r in rows if r[0] == c) for c in customers["customer_id"]}
    expected = sorted((c, t) for t in cuts for c, f in first.items() if f < t)
    hist = Histories.from_frames(ev, customers=customers)
    if not expected:
        with pytest.raises(DataInsufficientError, match="no customers have history before"):
            training_set(hist, cuts, 30, config=TINY, as_of=AS_OF)
        return
    ts = training_set(hist, cuts, 30, config=TINY, as_of=AS_OF)
    got = sorted(zip(ts.keys["customer_id"].to_list(), ts.keys["cutoff"].to_list(), strict=True))
    assert got == expected


_ident_rows = st.lists(
    st.tuples(
        st.sampled_from([None, "cookie:k1", "cookie:k2", "email:e1"]), _seconds, st.sampled_from(["purchase", "visit"])
    ),
    min_size=1,
    max_size=10,
)
_links = st.lists(
    st.tuples(st.sampled_from(["cookie:k1", "cookie:k2"]), st.sampled_from(["crm:C", "email:e1"]), _seconds),
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ident_rows, _links, _cutoff_days)
def test_training_rows_use_only_identity_links_seen_before_their_cutoff(
    rows: list[tuple[str | None, dt.datetime, str]], links: list[tuple[str, str, dt.datetime]], days: list[int]
) -> None:
    """Unresolved histories: each cutoff's rows (features and labels) equal those of a resolution as of it."""
    ev = pl.DataFrame(
        {
            "customer_id": ["C" if r[0] is None else None for r in rows],
            "identifier": [r[0] for r in rows],
            "timestamp": [r[1] for r in rows],
            "channel": ["web"] * len(rows),
            "event_type": [r[2] for r in rows],
            "amount": [10.0 if r[2] == "purchase" else None for r in rows],
        },
        schema_overrides={
            "customer_id": pl.String,
            "identifier": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "amount": pl.Float64,
        },
    )
    link_frame = pl.DataFrame(
        {
            "identifier_a": [x[0] for x in links],
            "identifier_b": [x[1] for x in links],
            "timestamp": [x[2] for x in links],
        },
        schema={"identifier_a": pl.String, "identifier_b": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )
    hist = Histories.from_frames(ev, identity_links=link_frame)
    cuts = [T0 + dt.timedelta(days=d) for d in sorted(days)]
    expected = []
    for t in cuts:
        at_t = resolve_identities(hist, as_of=t)
        first = at_t.events.group_by("customer_id").agg(pl.col("timestamp").min()).collect()
        known = first.filter(pl.col("timestamp") < t)["customer_id"].sort().to_list()
        keys = pl.DataFrame(
            {"customer_id": known, "cutoff": [t] * len(known)},
            schema={"customer_id": pl.String, "cutoff": pl.Datetime("us", "UTC")},
        )
        labels = purchase_labels(at_t, keys, 30, as_of=AS_OF)
        expected += list(labels.select("customer_id", "cutoff", "label").iter_rows())
    if not expected:
        with pytest.raises(DataInsufficientError, match="no customers have history before"):
            training_set(hist, cuts, 30, config=TINY, as_of=AS_OF)
        return
    ts = training_set(hist, cuts, 30, config=TINY, as_of=AS_OF)
    got = list(zip(ts.keys["customer_id"].to_list(), ts.keys["cutoff"].to_list(), ts.y.tolist(), strict=True))
    assert sorted(got) == sorted(expected)
    for t in cuts:
        at_t = resolve_identities(hist, as_of=t)
        mine = ts.to_frame().filter(pl.col("cutoff") == t).drop("label").sort("customer_id")
        if mine.height:
            want = build_features(at_t, mine.select("customer_id", "cutoff"), feature_set=ts.feature_set)
            assert mine.equals(want.sort("customer_id"))


_consent_records = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["email", "sms"]),
        st.booleans(),
        st.integers(0, 20).map(lambda h: T0 + dt.timedelta(hours=h)),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(_consent_records, st.lists(st.integers(-1, 22), min_size=1, max_size=4), st.booleans())
def test_consent_state_is_the_latest_record_strictly_before_t_withdrawn_on_ties(
    records: list[tuple[str, str, bool, dt.datetime]], hours: list[int], default: bool
) -> None:
    """Reference: records with timestamp < t, the latest instant wins, a same-instant tie reads withdrawn."""
    ev = _events([("a", T0, "visit"), ("b", T0, "visit")])
    cs = pl.DataFrame(
        {
            "customer_id": [r[0] for r in records],
            "channel": [r[1] for r in records],
            "granted": [r[2] for r in records],
            "timestamp": [r[3] for r in records],
        },
        schema={"customer_id": pl.String, "channel": pl.String, "granted": pl.Boolean, "timestamp": TS},
    )
    hist = Histories.from_frames(ev, consents=cs)
    cph = ZoneInfo("Europe/Copenhagen")
    at = pl.DataFrame(
        {
            "customer_id": ["a", "b"] * len(hours),
            "cutoff": [(T0 + dt.timedelta(hours=h)).astimezone(cph) for h in hours for _ in "ab"],
        }
    )
    out = consent_state(hist, at, channels=["email", "sms"], default=default)
    assert out.height == at.height
    for row in out.iter_rows(named=True):
        t = row["cutoff"]
        for channel in ("email", "sms"):
            known = [r for r in records if r[0] == row["customer_id"] and r[1] == channel and r[3] < t]
            if not known:
                want = default
            else:
                last = max(r[3] for r in known)
                want = all(r[2] for r in known if r[3] == last)
            assert row[f"consent_{channel}"] == want


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


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 400), min_size=2, max_size=8, unique=True),
    st.integers(1, 3),
    st.integers(1, 60),
)
def test_out_of_time_split_never_lets_a_training_label_window_reach_the_validation_period(
    days: list[int], n_valid: int, horizon: int
) -> None:
    """Validation = the latest cutoffs; every kept training window [c, c + h) ends by the first of them."""
    cuts = [T0 + dt.timedelta(days=d) for d in days for _ in range(2)]  # duplicate cutoffs: two customers each
    keys = pl.DataFrame(
        {"customer_id": ["x", "y"] * len(days), "cutoff": cuts}, schema={"customer_id": pl.String, "cutoff": TS}
    )
    ts = TrainingSet(
        pl.DataFrame({"f": range(len(cuts))}), np.zeros(len(cuts), dtype=np.int8), keys, horizon_days=horizon
    )
    ordered = sorted(set(cuts))
    first_valid = ordered[-n_valid] if len(ordered) > n_valid else None
    kept = [c for c in ordered[:-n_valid] if c + dt.timedelta(days=horizon) <= first_valid] if first_valid else []
    if not kept:
        with pytest.raises(DataInsufficientError):
            ts.split_out_of_time(n_valid)
        return
    train, valid = ts.split_out_of_time(n_valid)
    assert sorted(set(valid.keys["cutoff"].to_list())) == ordered[-n_valid:]
    assert sorted(set(train.keys["cutoff"].to_list())) == kept
    assert max(train.keys["cutoff"]) + dt.timedelta(days=horizon) <= min(valid.keys["cutoff"])
    assert set(train.X["f"].to_list()).isdisjoint(valid.X["f"].to_list())
