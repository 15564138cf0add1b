"""Short histories: under a year of training cutoffs, no calendar features and no calibration map unless configured."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.evaluation import fit_propensity
from omni_ml.exceptions import ConfigError
from omni_ml.features import FeatureConfig
from omni_ml.training import SHORT_HISTORY_DAYS, TrainConfig, adapt_to_history, training_cutoffs

AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
FAST = {"n_estimators": 60, "learning_rate": 0.1, "early_stopping_rounds": 10, "min_child_samples": 10}
ONE_YEAR = training_cutoffs(AS_OF, 30, n=None, first_event="2024-01-01")  # 12 cutoffs 2024-01-29..2024-12-02
TWO_YEARS = training_cutoffs(AS_OF, 30, n=None, first_event="2023-01-01")  # 18 cutoffs 2023-08-14..2024-12-02


def _log(first: dt.date, n_customers: int = 300, seed: int = 0) -> pl.DataFrame:
    """A plain purchase log from ``first`` to AS_OF."""
    rng = np.random.default_rng(seed)
    days = (AS_OF.date() - first).days
    ids = rng.integers(0, n_customers, size=n_customers * 12)
    offsets = rng.integers(0, days, size=ids.size)
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in ids],
            "timestamp": [dt.datetime.combine(first, dt.time(9, 30)) + dt.timedelta(days=int(d)) for d in offsets],
            "amount": rng.gamma(2, 20, size=ids.size).round(2),
        }
    )


def test_one_year_of_cutoffs_leaves_out_the_calendar_family_and_the_map() -> None:
    cfg, choice = adapt_to_history(TrainConfig(model=FAST), ONE_YEAR)
    assert choice.short
    assert choice.span_days == 308 < SHORT_HISTORY_DAYS
    assert cfg.features is not None
    assert cfg.features.exclude == ("time_of_year",)
    assert "time_of_year" not in cfg.features.resolved_families()
    assert cfg.model == {**FAST, "calibration": None}
    assert (choice.calendar, choice.calibration) == ("left out", "left out")
    assert "cutoffs span 308 days" in choice.reason
    assert "left out the time_of_year features and the calibration map" in choice.reason
    assert choice.params() == {
        "short_history": True,
        "short_history_span_days": 308,
        "short_history_calendar": "left out",
        "short_history_calibration": "left out",
    }
    # the other feature settings are kept
    mine = FeatureConfig(windows=(7, 30), exclude=("browsing",))
    cfg, _ = adapt_to_history(TrainConfig(features=mine), ONE_YEAR)
    assert cfg.features == dataclasses.replace(mine, exclude=("browsing", "time_of_year"))


def test_two_years_of_cutoffs_keep_the_config_as_it_is() -> None:
    given_cfg = TrainConfig(model=FAST)
    cfg, choice = adapt_to_history(given_cfg, TWO_YEARS)
    assert cfg is given_cfg
    assert not choice.short
    assert choice.span_days == 476
    assert (choice.calendar, choice.calibration) == ("kept", "kept")
    assert "history treated as long (cutoffs span 476 days)" in choice.reason


def test_an_explicit_setting_wins() -> None:
    # calibration set: kept on a short history; the calendar family is still left out automatically
    cfg, choice = adapt_to_history(TrainConfig(model={"calibration": "sigmoid"}), ONE_YEAR)
    assert cfg.model == {"calibration": "sigmoid"}
    assert cfg.features is not None
    assert "time_of_year" in cfg.features.exclude
    assert (choice.calendar, choice.calibration) == ("left out", "as configured")
    assert "calibration as configured" in choice.reason
    # families named: the user's list is used as it is
    families = FeatureConfig(families=("rfm", "monetary", "time_of_year"))
    cfg, choice = adapt_to_history(TrainConfig(features=families), ONE_YEAR)
    assert cfg.features == families
    assert choice.calendar == "as configured"
    # already excluded: not listed twice
    cfg, _ = adapt_to_history(TrainConfig(features={"exclude": ["time_of_year"]}), ONE_YEAR)
    assert cfg.features is not None
    assert cfg.features.exclude == ("time_of_year",)
    # short_history forces the decision either way
    assert adapt_to_history(TrainConfig(short_history=False), ONE_YEAR)[0] == TrainConfig(short_history=False)
    cfg, choice = adapt_to_history(TrainConfig(short_history=True), TWO_YEARS)
    assert choice.short
    assert cfg.model == {"calibration": None}
    assert "set by train.short_history" in choice.reason


def test_short_history_must_be_a_boolean_or_null() -> None:
    with pytest.raises(ConfigError, match=r"train.short_history: expected true, false or null .*'yes'"):
        TrainConfig(short_history="yes")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.integers(0, 900), min_size=1, max_size=20, unique=True),
    calibration=st.sampled_from([None, "sigmoid", "absent"]),
    exclude=st.sampled_from([(), ("time_of_year",), ("browsing",)]),
)
def test_short_exactly_when_the_cutoffs_span_under_a_year_and_explicit_settings_never_change(
    days: list[int], calibration: str | None, exclude: tuple[str, ...]
) -> None:
    cuts = [AS_OF - dt.timedelta(days=d) for d in days]
    model = {} if calibration == "absent" else {"calibration": calibration}
    cfg, choice = adapt_to_history(TrainConfig(model=model, features=FeatureConfig(exclude=exclude)), cuts)
    span = max(days) - min(days)
    assert choice.span_days == span
    assert choice.short == (span < SHORT_HISTORY_DAYS)
    assert cfg.features is not None
    if calibration != "absent":
        assert cfg.model == model
    else:
        assert cfg.model == ({"calibration": None} if choice.short else {})
    built = "time_of_year" in cfg.features.resolved_families()
    assert built == (not choice.short and "time_of_year" not in exclude)
    assert set(exclude) <= set(cfg.features.exclude)


def test_training_on_one_year_and_on_two_years_of_a_transaction_log() -> None:
    one_year = Histories.from_frames(_log(dt.date(2024, 1, 1), n_customers=400))
    model, report = fit_propensity(one_year, AS_OF, 30, {"model": FAST})
    assert report.metrics["train_cutoffs"] == 12
    assert model.calibration is None
    assert model.calibrator_ is None
    assert "time_of_year" not in model.feature_set_.families()
    # explicit settings win in the same training path
    explicit = {"model": {**FAST, "calibration": "sigmoid"}, "features": {"families": ["rfm", "time_of_year"]}}
    model, _ = fit_propensity(one_year, AS_OF, 30, explicit)
    assert model.calibration == "sigmoid"
    assert model.calibrator_ is not None
    assert set(model.feature_set_.families()) == {"rfm", "time_of_year"}
    two_years = Histories.from_frames(_log(dt.date(2023, 1, 1), n_customers=300))
    model, report = fit_propensity(two_years, AS_OF, 30, {"model": FAST})
    assert report.metrics["train_cutoffs"] == 18
    assert model.calibration == "sigmoid"
    assert model.calibrator_ is not None
    assert "time_of_year" in model.feature_set_.families()


def test_the_campaign_model_chooses_on_the_small_one_year_world_and_an_explicit_setting_wins(
    small_world: Path, campaign_model_path: Path
) -> None:
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.config import from_mapping
    from omni_ml.data import load_histories

    recipe = {"train": {"n_cutoffs": 5, "model": FAST}, "channel": None, "timing": None}
    model = CampaignModel(from_mapping(CampaignConfig, recipe)).fit(
        load_histories(small_world), "2024-12-01", horizon_days=28
    )
    choice = model.history_choice_
    assert choice.short
    assert choice.span_days == 4 * 28  # 5 cutoffs 28 days apart
    assert model.propensity_.calibrator_ is None
    assert "time_of_year" not in model.feature_set_.families()
    assert model.config_.train.short_history is None  # the config as given; what was chosen is history_choice_
    # the shared test model sets train.short_history: false, and keeps both
    shared = CampaignModel.load(campaign_model_path)
    assert not shared.history_choice_.short
    assert "set by train.short_history" in shared.history_choice_.reason
    assert shared.propensity_.calibrator_ is not None
    assert "time_of_year" in shared.feature_set_.families()
