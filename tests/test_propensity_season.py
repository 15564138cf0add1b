"""Issue 6: the time-of-year features, and a propensity model scored in a season its calibration did not see."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from omni_ml.data import Histories
from omni_ml.evaluation import brier
from omni_ml.features import FeatureSet, build_features
from omni_ml.models import PropensityModel

UTC = dt.UTC
SEASON = ("cutoff_day_of_year", "cutoff_season_sin", "cutoff_season_cos")
FAST = {"n_estimators": 300, "learning_rate": 0.1, "early_stopping_rounds": 20, "min_child_samples": 20}


def _hist() -> Histories:
    events = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "timestamp": [dt.datetime(2024, 11, 2), dt.datetime(2024, 12, 20), dt.datetime(2024, 12, 30, 23)],
            "channel": ["web", "store", "web"],
            "event_type": ["visit", "purchase", "visit"],
            "amount": [None, 25.0, None],
        }
    )
    return Histories.from_frames(events)


def test_time_of_year_is_the_cutoffs_day_of_year_for_every_customer_6() -> None:
    hist = _hist()
    cutoffs = [dt.datetime(2024, 12, 31, tzinfo=UTC), dt.datetime(2025, 1, 1, tzinfo=UTC)]
    out = build_features(hist, cutoffs)
    fs = FeatureSet.from_histories(hist, before=cutoffs[-1])
    assert set(SEASON) <= set(fs.names)
    assert all(fs.family_of(name) == "time_of_year" for name in SEASON)
    per_cutoff = out.group_by("cutoff").agg(pl.col(SEASON).n_unique()).drop("cutoff")
    assert (per_cutoff.to_numpy() == 1).all()  # the same value for every customer at a cutoff
    first = out.filter(pl.col("cutoff") == cutoffs[0]).row(0, named=True)
    new_year = out.filter(pl.col("cutoff") == cutoffs[1]).row(0, named=True)
    assert (first["cutoff_day_of_year"], new_year["cutoff_day_of_year"]) == (366, 1)  # 2024 is a leap year
    angle = 2 * math.pi * 1 / 365.25
    assert new_year["cutoff_season_sin"] == pytest.approx(math.sin(angle))
    assert new_year["cutoff_season_cos"] == pytest.approx(math.cos(angle))
    # Across the turn of the year the Fourier pair moves a little; the day of the year jumps.
    assert abs(first["cutoff_season_sin"] - new_year["cutoff_season_sin"]) < 0.01


def test_time_of_year_follows_each_rows_own_cutoff_6() -> None:
    hist = _hist()
    fs = FeatureSet.from_histories(hist)
    keys = pl.DataFrame(
        {
            "customer_id": ["a", "b", "a"],
            "cutoff": [
                dt.datetime(2024, 7, 1, 15, 30, tzinfo=UTC),
                dt.datetime(2024, 12, 24, tzinfo=UTC),
                dt.datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            ],
        }
    )
    out = build_features(hist, keys, feature_set=fs)
    assert out["cutoff_day_of_year"].to_list() == [183, 359, 1]
    at_scoring = build_features(hist, dt.datetime(2025, 1, 1, tzinfo=UTC), feature_set=fs)
    assert at_scoring["cutoff_day_of_year"].unique().to_list() == [1]


def _season_matrix(cutoffs: np.ndarray) -> pl.DataFrame:
    """The family's own expressions evaluated on a frame of cutoffs."""
    fs_features = [f for f in FeatureSet.from_histories(_hist()).features if f.family == "time_of_year"]
    frame = pl.DataFrame({"cutoff": pl.Series(cutoffs).cast(pl.Datetime("us", "UTC"))})
    return frame.select([f.spec.cast(f.output_dtype).alias(f.name) for f in fs_features])


def _seasonal_world(
    rng: np.random.Generator, cutoffs: np.ndarray, n: int
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """A holiday peak (15 November to 24 December) in everyone's purchase log-odds, plus a per-customer signal."""
    cut = np.repeat(cutoffs, n)
    doy = pl.Series(cut).cast(pl.Datetime("us", "UTC")).dt.ordinal_day().to_numpy()
    signal = rng.normal(size=cut.size)
    holiday = (doy >= 320) & (doy <= 359)
    logit = -2.2 + 1.2 * signal + 1.2 * holiday
    y = (rng.random(cut.size) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    X = pl.concat([pl.DataFrame({"signal": signal}), _season_matrix(cut)], how="horizontal")
    return X, y, cut


def test_time_of_year_lets_a_model_calibrated_in_december_score_january_6() -> None:
    # Two years of cutoffs every 28 days; the latest (calibration) label window is December's peak.
    rng = np.random.default_rng(6)
    last = np.datetime64("2024-12-02T00:00:00", "us")
    train_cutoffs = last - np.arange(25, -1, -1) * np.timedelta64(28, "D")
    X, y, cut = _seasonal_world(rng, train_cutoffs, 800)
    X_jan, y_jan, _ = _seasonal_world(rng, np.array([np.datetime64("2025-01-01T00:00:00", "us")]), 20_000)
    with_season = PropensityModel(**FAST).fit(X, y, cutoff=cut)
    without = PropensityModel(**FAST).fit(X.select("signal"), y, cutoff=cut)
    p_with = with_season.predict_proba(X_jan)[:, 1]
    p_without = without.predict_proba(X_jan.select("signal"))[:, 1]
    assert with_season.split_["calibration"][0].startswith("2024-12-02")
    # Without the season the model carries December's level into January; with it, it does not.
    bias_without = p_without.mean() - y_jan.mean()
    assert bias_without > 0.1
    assert abs(p_with.mean() - y_jan.mean()) < bias_without / 3
    assert brier(y_jan, p_with) < brier(y_jan, p_without) - 0.003
