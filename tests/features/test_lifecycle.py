"""Family ``lifecycle``: silence against the customer's own rate, purchase span share, purchase trend."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from omni_ml.data import Histories
from omni_ml.features import FeatureConfig, build_features
from omni_ml.features._registry import FAMILIES


@pytest.fixture(autouse=True, scope="module")
def _lifecycle_registered() -> object:
    """The opt-in family is registered for this module's tests only (the registry is process-wide)."""
    from omni_ml.features.lifecycle import lifecycle

    FAMILIES["lifecycle"] = lifecycle
    yield
    FAMILIES.pop("lifecycle", None)


def _d(month: int, day: int) -> dt.datetime:
    return dt.datetime(2025, month, day, tzinfo=dt.UTC)


def _features(rows: list[tuple[str, dt.datetime, str]], cutoff: dt.datetime) -> dict[str, dict[str, object]]:
    events = pl.DataFrame(
        [(c, t, "web", kind, 10.0 if kind == "purchase" else None, None) for c, t, kind in rows],
        schema={
            "customer_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "channel": pl.String,
            "event_type": pl.String,
            "amount": pl.Float64,
            "category": pl.String,
        },
        orient="row",
    )
    X = build_features(
        Histories.from_frames(events), cutoff, config=FeatureConfig(windows=(30, 90), families=("lifecycle",))
    )
    return {row["customer_id"]: row for row in X.iter_rows(named=True)}


def test_lifecycle_values_by_hand_and_only_before_the_cutoff() -> None:
    rows = [
        ("a", _d(1, 1), "purchase"),
        ("a", _d(1, 11), "purchase"),
        ("a", _d(1, 21), "purchase"),
        ("a", _d(2, 20), "visit"),
        ("a", _d(3, 2), "purchase"),  # at the cutoff: not seen
        ("b", _d(2, 1), "visit"),
    ]
    got = _features(rows, _d(3, 2))
    a, b = got["a"], got["b"]
    # a: 3 purchases over 60 days since the first, last one 40 days ago -> 3 / 60 * 40 = 2 expected
    assert a["purchase_silence_expected"] == pytest.approx(2.0)
    # a: 4 activities over 60 days, last 10 days ago -> 4 / 60 * 10
    assert a["activity_silence_expected"] == pytest.approx(4 / 60 * 10)
    assert a["purchase_days_share"] == pytest.approx(20 / 60)
    # 0 purchases in the last 30 days, 3 in 90: (0 + 1) / (3 * 30 / 90 + 1)
    assert a["purchase_trend_30_90"] == pytest.approx(0.5)
    assert b["purchase_silence_expected"] is None
    assert b["purchase_days_share"] is None
    assert b["activity_silence_expected"] == pytest.approx(1 / 29 * 29)
    assert b["purchase_trend_30_90"] == pytest.approx(1.0)
    assert not any(c.startswith("__") for c in a)


def test_longer_silence_means_more_expected_purchases_missed() -> None:
    rows = [("a", _d(1, 1), "purchase"), ("a", _d(1, 15), "purchase")]
    early = _features(rows, _d(2, 1))["a"]["purchase_silence_expected"]
    late = _features(rows, _d(4, 1))["a"]["purchase_silence_expected"]
    assert early is not None
    assert late is not None
    assert late > early
