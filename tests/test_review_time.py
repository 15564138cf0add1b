"""Adversarial review of time semantics: who exists at a cutoff, identity as of a cutoff, window boundaries."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.exceptions import DataInsufficientError
from omni_ml.features import FeatureConfig
from omni_ml.training import training_set

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
AS_OF = dt.datetime(2025, 1, 1, tzinfo=UTC)
TINY = FeatureConfig(windows=(30,))

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
