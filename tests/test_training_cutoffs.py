"""n_cutoffs=None: as many training cutoffs as the history holds (capped, with a warm-up), or a clear error."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from omni_ml.data import Histories
from omni_ml.evaluation import fit_propensity
from omni_ml.exceptions import DataInsufficientError
from omni_ml.training import (
    AUTO_MAX_CUTOFFS,
    AUTO_MIN_CUTOFFS,
    AUTO_WARMUP_DAYS,
    AdaptiveCutoffs,
    TrainConfig,
    training_cutoffs,
    training_set,
)

AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _log(first: dt.date, n_customers: int = 300, seed: int = 0) -> pl.DataFrame:
    """A plain purchase log from ``first`` to AS_OF (the first row exactly on ``first`` at 09:30)."""
    rng = np.random.default_rng(seed)
    days = (AS_OF.date() - first).days
    ids = rng.integers(0, n_customers, size=n_customers * 12)
    offsets = rng.integers(0, days, size=ids.size)
    rows = pl.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in ids],
            "timestamp": [dt.datetime.combine(first, dt.time(9, 30)) + dt.timedelta(days=int(d)) for d in offsets],
            "amount": rng.gamma(2, 20, size=ids.size).round(2),
        }
    )
    first_row = pl.DataFrame(
        {"customer_id": ["C0000"], "timestamp": [dt.datetime.combine(first, dt.time(9, 30))], "amount": [10.0]}
    )
    return pl.concat([first_row, rows])


def test_the_default_adapts_and_explicit_numbers_are_kept() -> None:
    assert TrainConfig().n_cutoffs is None
    one_year = training_cutoffs(AS_OF, 30, n=None, first_event="2024-01-01")
    assert len(one_year) == 12  # the former fixed default on one-year histories
    assert one_year[0] - dt.datetime(2024, 1, 1, tzinfo=dt.UTC) >= dt.timedelta(days=AUTO_WARMUP_DAYS)
    two_years = training_cutoffs(AS_OF, 30, n=None, first_event=dt.datetime(2023, 1, 1, 23, 59))
    assert len(two_years) == AUTO_MAX_CUTOFFS == 18
    assert two_years == training_cutoffs(AS_OF, 30, n=18)  # the same dates as asking for 18
    assert two_years[-1] == AS_OF - dt.timedelta(days=30)
    # one day later history start: one cutoff fewer (the warm-up is counted from the first event's day)
    assert len(training_cutoffs(AS_OF, 30, n=None, first_event="2024-01-02")) == 11
    # explicit values are used exactly, even when they reach before the history
    assert len(training_cutoffs(AS_OF, 30, n=24, first_event="2024-06-01")) == 24
    assert training_cutoffs(AS_OF, 30, n=12) == training_cutoffs(AS_OF, 30)


def test_too_short_a_history_is_a_clear_error() -> None:
    # last fully observed cutoff 2024-12-02; warm-up ends 2024-10-29: 2024-11-04 and 2024-12-02 fit, 2 < 4
    with pytest.raises(DataInsufficientError, match=r"starts 2024-10-01 .* 28 days later \(2024-10-29 or after\)") as e:
        training_cutoffs(AS_OF, 30, n=None, first_event="2024-10-01")
    assert "only 2 of the cutoffs 28 days apart up to the last fully observed one (2024-12-02) are" in str(e.value)
    assert f"at least {AUTO_MIN_CUTOFFS} are needed" in str(e.value)
    assert "Hint: pass an explicit n_cutoffs" in str(e.value)
    # the shortest history that still fits the minimum
    enough = training_cutoffs(AS_OF, 30, n=None, first_event="2024-08-11")
    assert len(enough) == AUTO_MIN_CUTOFFS


def test_training_set_fits_a_plan_to_the_histories_first_event() -> None:
    hist = Histories.from_frames(_log(dt.date(2024, 3, 1)))
    plan = training_cutoffs(AS_OF, 28, n=None)
    assert isinstance(plan, AdaptiveCutoffs)
    assert len(plan) == AUTO_MAX_CUTOFFS  # history unknown yet
    ts = training_set(hist, plan, 28, as_of=AS_OF)
    expected = plan.fit_history("2024-03-01")
    assert ts.cutoffs == expected
    # 2024-12-04 back in 28-day steps while on or after 2024-03-29 (28 days after 2024-03-01): 2024-04-24 first
    assert len(expected) == 9
    assert expected[0] == dt.datetime(2024, 4, 24, tzinfo=dt.UTC)
    assert min(ts.cutoffs) >= dt.datetime(2024, 3, 29, tzinfo=dt.UTC)
    # a plain list of the same candidates is used as given (nothing dropped)
    everything = training_set(hist, list(plan), 28, as_of=AS_OF, feature_set=ts.feature_set)
    assert len(everything.cutoffs) > len(ts.cutoffs)


def test_fit_propensity_default_config_uses_the_fitted_plan_or_explains_why_not() -> None:
    fast = {"n_estimators": 60, "learning_rate": 0.1, "early_stopping_rounds": 10, "min_child_samples": 10}
    hist = Histories.from_frames(_log(dt.date(2024, 1, 1), n_customers=400))
    _, report = fit_propensity(hist, AS_OF, 30, {"model": fast})
    assert report.metrics["train_cutoffs"] == 12
    short = Histories.from_frames(_log(dt.date(2024, 10, 15)))
    with pytest.raises(DataInsufficientError, match=r"the history starts 2024-10-15 .* at least 4 are needed"):
        fit_propensity(short, AS_OF, 30, {"model": fast})
