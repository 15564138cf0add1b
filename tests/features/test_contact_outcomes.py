"""Feature family ``contact_outcomes`` (issue 20): mail-code redemptions and call outcomes."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from omni_ml.data import Histories
from omni_ml.features import FeatureConfig, FeatureSet, build_features

T = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
CONFIG = FeatureConfig(families=("contact_outcomes",))


def _hist() -> Histories:
    day = dt.timedelta(days=1)
    contacts = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "a", "b"],
            "timestamp": [T - 40 * day, T - 20 * day, T - 30 * day, T - 10 * day, T, T - 5 * day],
            "channel": ["direct_mail", "direct_mail", "call_center", "call_center", "call_center", "email"],
        }
    )
    events = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "a", "a", "b"],
            "timestamp": [T - 35 * day, T - 35 * day, T - 30 * day, T - 10 * day, T, T, T - 3 * day],
            "channel": ["web", "direct_mail", "call_center", "call_center", "call_center", "direct_mail", "web"],
            "event_type": ["purchase", "redeem", "interested", "no_answer", "reached", "redeem", "purchase"],
            "amount": [50.0, None, None, None, None, None, 20.0],
        }
    )
    return Histories.from_frames(events, contacts=contacts)


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    hist = _hist()
    keys = pl.DataFrame({"customer_id": ["a", "b"], "cutoff": [T, T]})
    fs = FeatureSet.from_histories(hist, CONFIG, before=T)
    return build_features(hist, keys, feature_set=fs).sort("customer_id")


def test_counts_and_rates_before_the_cutoff(features: pl.DataFrame) -> None:
    a = features.row(0, named=True)
    # the call and the redemption at the cutoff itself are not yet known
    assert a["mail_redemptions"] == 1
    assert a["redeem_rate_direct_mail"] == pytest.approx(0.5)
    assert a["days_since_last_redemption"] == pytest.approx(35.0)
    assert a["calls_answered"] == 1
    assert a["calls_interested"] == 1
    assert a["answer_rate_call_center"] == pytest.approx(0.5)
    assert a["interest_rate_call_center"] == pytest.approx(1.0)


def test_without_mail_or_calls_rates_are_null_and_counts_zero(features: pl.DataFrame) -> None:
    b = features.row(1, named=True)
    assert b["mail_redemptions"] == 0
    assert b["calls_answered"] == 0
    assert b["redeem_rate_direct_mail"] is None
    assert b["answer_rate_call_center"] is None
    assert b["interest_rate_call_center"] is None
    assert b["days_since_last_redemption"] is None


def test_helpers_are_not_output_columns(features: pl.DataFrame) -> None:
    assert not [c for c in features.columns if c.startswith("__")]


def test_no_contacts_table_no_features() -> None:
    hist = Histories.from_frames(_hist().events.collect())
    fs = FeatureSet.from_histories(hist, CONFIG, before=T)
    assert fs.names == []
