"""The response history through the feature engine against a per-key reference written out by hand (issue 21)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from omni_ml.data import Histories
from omni_ml.models.channel import response_history

CHANNELS = ["sms", "email"]
WINDOW = 7
DAY0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
_W = dt.timedelta(days=WINDOW)


def _reference(events: pl.DataFrame, contacts: pl.DataFrame, customer: str, cutoff: dt.datetime) -> dict[str, Any]:
    """The response history of one key, from the definitions (whole-second timestamps)."""
    ev = events.filter(pl.col("customer_id") == customer, pl.col("timestamp") < cutoff)
    purchases = sorted(ev.filter(pl.col("event_type") == "purchase")["timestamp"].to_list())
    mine = contacts.filter(pl.col("customer_id") == customer, pl.col("channel").is_in(CHANNELS))
    sent = sorted(zip(mine["timestamp"].to_list(), mine["channel"].to_list(), strict=True))
    closed = [(t, c) for t, c in sent if t + _W < cutoff]
    out: dict[str, Any] = {}
    for group in [*CHANNELS, "all"]:
        theirs = [t for t, c in closed if group in ("all", c)]
        out[f"resp_contacts_{group}"] = len(theirs)
        out[f"resp_conversions_{group}"] = sum(any(t <= p < t + _W for p in purchases) for t in theirs)
    # days since the first event, minus the union of the closed windows
    union, end = 0.0, None
    for t, _ in closed:
        start = t if end is None else max(t, end)
        union += max((t + _W - start).total_seconds(), 0.0)
        end = t + _W if end is None else max(end, t + _W)
    first = ev["timestamp"].min()
    days = 0.0 if first is None else max((cutoff - first).total_seconds() / 86_400.0, 0.0)  # type: ignore[operator]
    base_days = max(days - union / 86_400.0, 0.0)
    first_of_day: dict[dt.date, dt.datetime] = {}
    for p in purchases:
        first_of_day.setdefault(p.date(), p)
    outside = [p for p in first_of_day.values() if not any(t <= p < t + _W for t, _ in sent if t < cutoff)]
    rate = (len(outside) + 0.5) / (base_days + 60.0)
    p0 = 1.0 - math.exp(-WINDOW * rate)
    out["resp_baseline_days"], out["resp_baseline_rate"] = base_days, 30.0 * rate
    for group in [*CHANNELS, "all"]:
        n, k = out[f"resp_contacts_{group}"], out[f"resp_conversions_{group}"]
        out[f"resp_rate_{group}"] = k / n if n else None
        out[f"resp_expected_{group}"] = n * p0
        out[f"resp_excess_{group}"] = (k - n * p0) / (n + 3.0)
        out[f"resp_lift_{group}"] = (k + 1.0) / (n * p0 + 1.0)
    return out


_hours = st.integers(0, 40 * 24)
_world = st.tuples(
    st.lists(st.tuples(st.sampled_from("ab"), _hours, st.booleans()), min_size=1, max_size=12),
    st.lists(st.tuples(st.sampled_from("ab"), _hours, st.sampled_from([*CHANNELS, "push"])), max_size=8),
    st.lists(st.tuples(st.sampled_from("ab"), _hours), min_size=1, max_size=6),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=_world, pick=st.lists(st.integers(0, 100), min_size=4, max_size=4))
def test_response_history_equals_the_per_key_definition_21(world: Any, pick: list[int]) -> None:
    raw_events, raw_contacts, raw_keys = world
    hour = dt.timedelta(hours=1)
    events = pl.DataFrame(
        {
            "customer_id": [c for c, _, _ in raw_events],
            "timestamp": [DAY0 + h * hour for _, h, _ in raw_events],
            "event_type": ["purchase" if p else "visit" for _, _, p in raw_events],
            "channel": ["web"] * len(raw_events),
            "amount": [10.0 if p else None for _, _, p in raw_events],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    contacts = pl.DataFrame(
        {
            "customer_id": [c for c, _, _ in raw_contacts],
            "timestamp": [DAY0 + h * hour for _, h, _ in raw_contacts],
            "channel": [c for _, _, c in raw_contacts],
        },
        schema={"customer_id": pl.String, "timestamp": pl.Datetime("us", "UTC"), "channel": pl.String},
    )
    # cutoffs at random hours, exactly when a contact's window closes and exactly at a purchase
    cutoffs = [DAY0 + h * hour for _, h in raw_keys]
    closes = [t + _W for t in contacts["timestamp"].to_list()]
    bought = events.filter(pl.col("event_type") == "purchase")["timestamp"].to_list()
    for moments, i in ((closes, pick[0]), (closes, pick[1]), (bought, pick[2]), (bought, pick[3])):
        if moments:
            cutoffs.append(moments[i % len(moments)])
    keys = pl.DataFrame(
        {"customer_id": [c for c in "ab" for _ in cutoffs], "cutoff": cutoffs * 2},
        schema_overrides={"cutoff": pl.Datetime("us", "UTC")},
    ).unique(maintain_order=True)
    hist = Histories.from_frames(events, contacts=contacts)
    got = response_history(hist, keys, CHANNELS, WINDOW, baseline=True)
    assert got.height == keys.height
    loaded_events, loaded_contacts = hist.events.collect(), hist.contacts.collect()  # type: ignore[union-attr]
    for row, key in zip(got.iter_rows(named=True), keys.iter_rows(named=True), strict=True):
        # the histories as loaded (the contract drops exact duplicate rows)
        want = _reference(loaded_events, loaded_contacts, key["customer_id"], key["cutoff"])
        assert list(row) == list(got.columns)
        for name, value in row.items():
            if name.startswith(("resp_contacts_", "resp_conversions_")):
                assert value == want[name], (name, key)
            elif want[name] is None:
                assert value is None, (name, key)
            else:
                assert value == pytest.approx(want[name], rel=1e-12, abs=1e-12), (name, key)


def test_one_cutoff_at_a_time_or_many_give_the_same_response_history_21() -> None:
    """A contact whose window closes exactly at one key's cutoff changes nothing for an earlier key."""
    events = pl.DataFrame(
        {"customer_id": ["a"], "timestamp": [DAY0], "event_type": ["purchase"], "amount": [5.0]},
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    contacts = pl.DataFrame(
        {"customer_id": ["a", "a"], "timestamp": [DAY0 + dt.timedelta(days=10), DAY0 + dt.timedelta(days=12)],
         "channel": ["sms", "sms"]},
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )  # fmt: skip
    hist = Histories.from_frames(events, contacts=contacts)
    cutoffs = [DAY0 + dt.timedelta(days=18), DAY0 + dt.timedelta(days=19), DAY0 + dt.timedelta(days=30)]
    keys = pl.DataFrame({"customer_id": ["a"] * 3, "cutoff": cutoffs}).with_columns(
        pl.col("cutoff").cast(pl.Datetime("us", "UTC"))
    )
    together = response_history(hist, keys, ["sms"], WINDOW, baseline=True)
    alone = pl.concat([response_history(hist, keys[i : i + 1], ["sms"], WINDOW, baseline=True) for i in range(3)])
    assert together.equals(alone)
    # day 18: one window closed (7 days covered); day 19 (the second closes exactly then): still one;
    # day 30: both, their union is days 10..19
    assert together["resp_contacts_sms"].to_list() == [1, 1, 2]
    assert together["resp_baseline_days"].to_list() == [18 - 7, 19 - 7, 30 - 9]
