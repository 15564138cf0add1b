"""Anything ``validate`` accepts, the later commands can process (issue 22), on generated inputs."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omni_ml.data import load_histories
from omni_ml.exceptions import SchemaError
from omni_ml.features import FeatureConfig, FeatureSet, build_features
from omni_ml.identity import resolve_identities

_IDS = st.sampled_from(["C1", "C2", " C3", "C4 ", "", "   ", "\t", "anon", "1001"])
_IDENTIFIERS = st.sampled_from(["", "email:a@x.dk", "cookie:1", "phone: ", "ann@x.dk", "crm:C9"])
_AMOUNTS = st.one_of(
    st.sampled_from(["", "NaN", "inf", "-inf", "1e300", "-5", "12,50", "0"]),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
)
_TIMES = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(dt.datetime.isoformat),
    st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2025, 1, 1)).map(dt.datetime.isoformat),
    st.sampled_from(["", "yesterday", "2024-06-01", "2024-06-01T10:00:00+05:30"]),
)
_TYPES = st.sampled_from(["purchase", "Purchase", "purchased", "view", "visit", "wishlist", "", "service call"])
_CHANNELS = st.sampled_from(["web", "WEB ", "email", "emial", "kiosk", "", "call center", "app"])
_ROW = st.fixed_dictionaries(
    {
        "customer_id": _IDS,
        "identifier": _IDENTIFIERS,
        "timestamp": _TIMES,
        "channel": _CHANNELS,
        "event_type": _TYPES,
        "amount": _AMOUNTS,
    }
)


_CLEAN_ROW = st.fixed_dictionaries(
    {
        "customer_id": st.sampled_from(["C1", "C2", "C3"]),
        "identifier": st.sampled_from(["", "email:a@x.dk", "cookie:1"]),
        "timestamp": st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2025, 1, 1)).map(
            dt.datetime.isoformat
        ),
        "channel": st.sampled_from(["web", "WEB ", "email", "kiosk", "app", ""]),
        "event_type": st.sampled_from(["purchase", "Purchase", "view", "visit", "wishlist"]),
        "amount": st.one_of(st.just(""), st.floats(0, 1e6).map(repr)),
    }
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(st.one_of(_CLEAN_ROW, _CLEAN_ROW, _CLEAN_ROW, _ROW), min_size=1, max_size=12))
def test_what_validate_accepts_the_feature_pipeline_processes_22(rows: list[dict[str, str]], tmp_path: Path) -> None:
    root = tmp_path / "hist"
    root.mkdir(exist_ok=True)
    pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String)).write_csv(root / "events.csv")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hist = load_histories(root)
    except SchemaError:
        event("refused")
        return  # refused with a message: nothing reaches the later commands
    event("accepted")
    events = hist.events.collect()
    assert events["amount"].is_finite().fill_null(True).all()
    assert events["customer_id"].str.strip_chars().str.len_bytes().fill_null(1).min() > 0
    cutoff = events["timestamp"].max() + dt.timedelta(days=1)
    resolved = resolve_identities(hist, as_of=cutoff)
    feature_set = FeatureSet.from_histories(resolved, FeatureConfig(), before=cutoff)
    table = build_features(resolved, cutoff, feature_set=feature_set)
    assert table.height >= 1
    numeric = table.select(pl.col(pl.Float64, pl.Float32))
    assert all(numeric[c].is_infinite().sum() == 0 for c in numeric.columns)
