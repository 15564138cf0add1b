"""channel_backtest: the channel policy's out-of-time, off-policy value, logged by every training run (issue 9)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories, load_histories
from omni_ml.evaluation import channel_backtest
from omni_ml.exceptions import DataInsufficientError
from omni_ml.identity import resolve_identities
from omni_ml.models.channel import ChannelConfig, ChannelTrainingData, channel_training_data
from omni_ml.policy import PolicyConfig

AS_OF = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
CFG = ChannelConfig(n_estimators=40, lookback_days=63, pause_ratio=0.5)


@pytest.fixture(scope="module")
def hist(small_world: Path) -> Histories:
    return resolve_identities(load_histories(small_world), as_of=AS_OF).collect()


@pytest.fixture(scope="module")
def units(hist: Histories) -> ChannelTrainingData:
    return channel_training_data(hist, AS_OF, CFG)


@settings(max_examples=3, deadline=None)
@given(holdout=st.integers(14, 35))
def test_backtest_model_never_learns_an_outcome_after_a_held_out_decision(
    hist: Histories, units: ChannelTrainingData, holdout: int
) -> None:
    bt = channel_backtest(hist, AS_OF, CFG, holdout_days=holdout, data=units, n_bootstrap=20)
    window = dt.timedelta(days=CFG.window_days)
    assert bt.split == AS_OF - window - dt.timedelta(days=holdout)
    cutoff = units.keys["cutoff"]
    # Trained only on units whose outcome window closed by the split; evaluated only on units after it.
    assert bt.n_train == int((cutoff + window < bt.split).sum())
    assert sum(bt.model.n_rows_per_arm_.values()) <= bt.n_train
    assert bt.n_holdout + bt.n_dropped == int((cutoff >= bt.split).sum())
    assert bt.n_holdout > 0


def test_values_have_ordered_intervals_and_respect_consent(hist: Histories, units: ChannelTrainingData) -> None:
    bt = channel_backtest(hist, AS_OF, CFG, holdout_days=21, data=units, n_bootstrap=50)
    assert bt.table["policy"].to_list() == ["learned", "random", "always_email"]
    for row in bt.table.iter_rows(named=True):
        for est in ("ips", "snips", "dr"):
            assert row[f"{est}_lo"] <= row[est] <= row[f"{est}_hi"], (row["policy"], est)
        assert 0.0 <= row["contact_share"] <= 1.0
        assert row["ess"] > 0
    # Always-email contacts exactly the held-out units with email consent as of their own moment.
    held = units.keys["cutoff"] >= bt.split
    email_ok = units.X.filter(held)["consent_email"].fill_null(0).to_numpy().astype(bool)
    design = units.keys.filter(held)["sample_weight_population"].to_numpy()
    share = bt.table.filter(policy="always_email")["contact_share"].item()
    assert share == pytest.approx(np.average(email_ok, weights=design))
    metrics = bt.metrics
    assert metrics["offpolicy_learned_dr"] == bt.table.filter(policy="learned")["dr"].item()
    assert metrics["offpolicy_n_holdout_units"] == bt.n_holdout


def test_pausing_costs_nothing_and_a_costlier_channel_lowers_the_value(
    hist: Histories, units: ChannelTrainingData
) -> None:
    cheap = channel_backtest(hist, AS_OF, CFG, PolicyConfig(), holdout_days=21, data=units, n_bootstrap=20)
    dear = channel_backtest(
        hist,
        AS_OF,
        CFG,
        PolicyConfig(channel_costs={"email": 5.0}),
        holdout_days=21,
        data=units,
        n_bootstrap=20,
        policies=("always_email",),
    )
    before = cheap.table.filter(policy="always_email")["ips"].item()
    after = dear.table.filter(policy="always_email")["ips"].item()
    assert after < before


def test_too_short_a_history_says_what_to_change(hist: Histories, units: ChannelTrainingData) -> None:
    with pytest.raises(DataInsufficientError, match=r"lower holdout_days \(now 60\)"):
        channel_backtest(hist, AS_OF, CFG, holdout_days=60, data=units)
    with pytest.raises(ValueError, match="unknown policies"):
        channel_backtest(hist, AS_OF, CFG, data=units, policies=("oracle",))


def test_the_result_says_which_logging_probabilities_were_estimated(
    hist: Histories, units: ChannelTrainingData
) -> None:
    """No-contact units have no logged probability: the back-test estimates it, and each result must say so.

    It used to report "logged assignment_probability" although every no-contact unit's was estimated.
    """
    bt = channel_backtest(hist, AS_OF, CFG, holdout_days=21, data=units, n_bootstrap=10, policies=("always_email",))
    source = bt.results["always_email"].propensity_source
    held = units.keys.filter(units.keys["cutoff"] >= bt.split)
    n_pause = int((held["arm"] == "no_contact").sum())
    assert f"estimated (cross-fitted logistic regression on the unit features) for {n_pause:,} no-contact" in source
    assert source.startswith(f"logged for {bt.n_holdout - n_pause:,} contacted units")


def test_contacts_without_assignment_probability_are_estimated_not_an_error(
    hist: Histories, units: ChannelTrainingData
) -> None:
    """assignment_probability is optional in the data contract: the back-test estimates a missing one."""
    keys = units.keys.with_row_index("__i").with_columns(
        pl.when((pl.col("arm") != "no_contact") & (pl.col("__i") % 2 == 0))
        .then(None)
        .otherwise(pl.col("assignment_probability"))
        .alias("assignment_probability")
    )
    unlogged = dataclasses.replace(units, keys=keys.drop("__i"))
    bt = channel_backtest(hist, AS_OF, CFG, holdout_days=21, data=unlogged, n_bootstrap=10, policies=("always_email",))
    res = bt.results["always_email"]
    held = keys.filter((pl.col("cutoff") >= bt.split) & pl.col("arm").is_in(list(bt.model.arms_)))
    n_missing = int(held["assignment_probability"].is_null().sum()) - int((held["arm"] == "no_contact").sum())
    assert n_missing > 0
    assert f"and {n_missing:,} contacted units without one" in res.propensity_source
    assert np.isfinite(res.ips)
    assert np.isfinite(res.dr)


def test_unit_consent_is_granted_only_by_a_one_never_by_a_missing_value() -> None:
    from omni_ml.evaluation._channel_backtest import _unit_consent

    X = pl.DataFrame(
        {"consent_email": [1.0, float("nan"), None, 0.0], "consent_sms": pl.Series([1, 0, None, 1], dtype=pl.Int8)}
    )
    ids = pl.Series("customer_id", ["u0", "u1", "u2", "u3"])
    got = _unit_consent(X, ids, ("email", "sms", "push"), False)
    assert got["consent_email"].to_list() == [True, False, False, False]
    assert got["consent_sms"].to_list() == [True, False, False, True]
    assert got["consent_push"].to_list() == [False] * 4
