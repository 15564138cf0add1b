"""No-contact units of the channel model: ``ChannelConfig.pause_units`` (issue 20)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from omni_ml.data import Histories
from omni_ml.models.channel import ChannelConfig, _sample_pause_pairs

D1 = dt.datetime(2025, 3, 3, 9, tzinfo=dt.UTC)
D2 = D1 + dt.timedelta(days=3)
IDS = [f"c{i}" for i in range(10)]


def _pairs(pause_units: str, target: int) -> set[tuple[str, dt.date]]:
    # campaign day 1 contacts c0..c4, campaign day 2 (three days later) contacts c5..c9
    contacts = pl.DataFrame(
        {
            "customer_id": IDS,
            "timestamp": [D1] * 5 + [D2] * 5,
            "channel": ["email"] * 10,
        }
    )
    consents = pl.DataFrame(
        {
            "customer_id": IDS,
            "channel": ["email"] * 10,
            "granted": [True] * 10,
            "timestamp": [D1 - dt.timedelta(days=9)] * 10,
        }
    )
    events = pl.DataFrame({"customer_id": IDS, "timestamp": [D1 - dt.timedelta(days=20)] * 10, "amount": [5.0] * 10})
    hist = Histories.from_frames(events, contacts=contacts, consents=consents)
    cfg = ChannelConfig(pause_units=pause_units)  # type: ignore[arg-type]
    pairs, _share = _sample_pause_pairs(
        hist, pl.Series("customer_id", IDS), pl.Series("cutoff", [D1, D2]), hist.contacts.collect(), cfg, target
    )
    return {(c, t.date()) for c, t in pairs.iter_rows()}


def test_window_units_exclude_anyone_contacted_later_in_the_window() -> None:
    # on day 1 everyone is contacted within 7 days (c5..c9 three days later): no pause on day 1
    assert _pairs("window", 5) == {(c, D2.date()) for c in IDS[:5]}


def test_day_units_are_the_customers_not_contacted_that_day() -> None:
    expected = {(c, D1.date()) for c in IDS[5:]} | {(c, D2.date()) for c in IDS[:5]}
    assert _pairs("day", 10) == expected


def test_default_is_window_and_a_shortfall_is_reported() -> None:
    assert ChannelConfig().pause_units == "window"
    with pytest.warns(UserWarning, match="pause_ratio"):
        _pairs("window", 6)  # only 5 eligible pairs exist: the shortfall is reported, all are used
