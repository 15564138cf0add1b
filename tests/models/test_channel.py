from __future__ import annotations

import dataclasses
import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError
from omni_ml.models._channel_learner import _aligned_templates
from omni_ml.models.channel import (
    NO_CONTACT,
    ChannelConfig,
    ChannelModel,
    ChannelTrainingData,
    channel_training_data,
    fit_channel_model,
    predict_channel_effects,
)
from omni_ml.policy import PolicyConfig, baseline_decisions, check_consent, decide

ARMS = np.array(["no_contact", "email", "sms"])


def _synthetic(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x0 drives the base rate, x1 decides who responds to sms (and a little to email)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    base = 1 / (1 + np.exp(-(-2.0 + 0.7 * x[:, 0])))
    p = np.column_stack([base, base + 0.06 * (x[:, 1] < 0), base + 0.2 * (x[:, 1] > 0.5)])
    a = rng.integers(0, 3, n)
    y = (rng.random(n) < p[np.arange(n), a]).astype(np.int8)
    return x, ARMS[a], y, p


@pytest.mark.parametrize("learner", ["s", "t"])
def test_learners_recover_heterogeneous_effects(learner: str) -> None:
    x, arm, y, _ = _synthetic(0, 9000)
    model = ChannelModel(learner=learner, n_estimators=120, random_state=0).fit(x, arm, y)  # type: ignore[arg-type]
    assert model.arms_ == ["no_contact", "email", "sms"]
    x_new, _, _, p_new = _synthetic(1, 3000)
    proba = model.predict_arm_proba(x_new)
    true_uplift = p_new[:, 1:] - p_new[:, :1]
    est_uplift = proba[:, 1:] - proba[:, :1]
    assert np.corrcoef(est_uplift[:, 1], true_uplift[:, 1])[0, 1] > 0.6
    # where one channel is clearly better, the estimate picks it for most customers
    clear = np.abs(true_uplift[:, 1] - true_uplift[:, 0]) > 0.05
    agree = (est_uplift.argmax(axis=1) == true_uplift.argmax(axis=1))[clear].mean()
    assert agree > 0.7  # chance is 0.5; measured S 0.9+, T ~0.78


def test_predict_effects_is_long_and_consistent() -> None:
    x, arm, y, _ = _synthetic(2, 3000)
    model = ChannelModel(n_estimators=40).fit(x, arm, y)
    eff = model.predict_effects(x[:4], customer_id=["a", "b", "c", "d"])
    assert eff.columns == ["customer_id", "channel", "p_if_contacted", "p_if_not", "uplift"]
    assert eff.height == 8
    assert eff.group_by("customer_id").agg(pl.col("p_if_not").n_unique())["p_if_not"].to_list() == [1] * 4
    assert np.allclose(eff["uplift"], eff["p_if_contacted"] - eff["p_if_not"])
    proba = model.predict_arm_proba(x[:4])
    assert np.allclose(eff.filter(pl.col("channel") == "sms")["p_if_contacted"], proba[:, 2])


def test_same_seed_same_model() -> None:
    x, arm, y, _ = _synthetic(3, 2000)
    a = ChannelModel(n_estimators=30, random_state=5).fit(x, arm, y).predict_arm_proba(x[:50])
    b = ChannelModel(n_estimators=30, random_state=5).fit(x, arm, y).predict_arm_proba(x[:50])
    assert np.array_equal(a, b)


def test_ipw_weights_change_the_fit_only_through_assignment_probability() -> None:
    x, arm, y, _ = _synthetic(4, 3000)
    p = np.where(arm == NO_CONTACT, np.nan, np.where(x[:, 0] > 0, 0.9, 0.1))
    plain = ChannelModel(n_estimators=30, weighting="ipw").fit(x, arm, y).predict_arm_proba(x[:100])
    weighted = (
        ChannelModel(n_estimators=30, weighting="ipw")
        .fit(x, arm, y, assignment_probability=p)
        .predict_arm_proba(x[:100])
    )
    ignored = (
        ChannelModel(n_estimators=30)  # default: unweighted
        .fit(x, arm, y, assignment_probability=p)
        .predict_arm_proba(x[:100])
    )
    assert not np.allclose(plain, weighted)
    assert np.array_equal(plain, ignored)


def test_arm_aligned_templates_find_per_channel_features() -> None:
    names = [
        "open_rate_email_90d",
        "open_rate_sms_90d",
        "consent_email",
        "consent_sms",
        "visits_7d",
        "clicks_email_90d",
    ]
    t = _aligned_templates(names, ["email", "sms"])
    assert t == {"arm:open_rate_{arm}_90d": [0, 1], "arm:consent_{arm}": [2, 3]}  # clicks_sms_90d is missing


def test_fit_rejects_bad_input() -> None:
    x, arm, y, _ = _synthetic(5, 500)
    with pytest.raises(DataInsufficientError, match="none of the 500 units is a 'no_contact' unit"):
        ChannelModel().fit(x, np.where(arm == NO_CONTACT, "email", arm), y)
    with pytest.raises(SchemaError, match=r"non-numeric column\(s\) 'customer_id \(String\)'"):
        ChannelModel().fit(pl.DataFrame({"customer_id": ["a"] * 500, "x": x[:, 0]}), arm, y)
    with pytest.raises(ConfigError, match="learner='x' is not one of"):
        ChannelModel(learner="x").fit(x, arm, y)  # type: ignore[arg-type]
    with pytest.raises(DataInsufficientError, match="no channel has at least 30 contacts"):
        ChannelModel().fit(x[:40], np.where(np.arange(40) < 35, NO_CONTACT, "sms"), y[:40])


# ----------------------------------------------------------------------------- on the simulated world

SMALL = ChannelConfig(n_estimators=80, lookback_days=120, pause_ratio=1.0)


@pytest.fixture(scope="module")
def world_end(small_world: Path) -> dt.datetime:
    end = json.loads((small_world / "truth" / "world.json").read_text())["config"]["end"]
    return dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def small_fit(small_histories: Histories, world_end: dt.datetime) -> ChannelModel:
    return fit_channel_model(small_histories, world_end, SMALL)


def test_training_units_respect_time_and_sampling(small_histories: Histories, world_end: dt.datetime) -> None:
    data = channel_training_data(small_histories, world_end, SMALL)
    keys = data.keys
    assert keys["cutoff"].min() >= world_end - dt.timedelta(days=120)
    assert keys["cutoff"].max() < world_end - dt.timedelta(days=7)  # every outcome window closes before as_of
    pause = keys.filter(pl.col("arm") == NO_CONTACT)
    assert pause.height == keys.filter(pl.col("arm") != NO_CONTACT).height  # pause_ratio 1
    assert pause["assignment_probability"].null_count() == pause.height
    assert 0 < data.sampling_fraction < 1
    assert pause["sample_weight_population"].unique().to_list() == [pytest.approx(1 / data.sampling_fraction)]
    # no sampled no-contact unit had a contact in its response window
    contacts = small_histories.contacts.collect().select("customer_id", pl.col("timestamp").alias("ts"))  # type: ignore[union-attr]
    clash = pause.join(contacts, on="customer_id").filter(
        (pl.col("ts") >= pl.col("cutoff").dt.truncate("1d")) & (pl.col("ts") < pl.col("cutoff") + dt.timedelta(days=7))
    )
    assert clash.height == 0
    assert data.X.height == keys.height
    assert all(dtype.is_numeric() for dtype in data.X.dtypes)


def test_no_contact_draws_reach_the_pause_ratio_and_estimate_the_same_eligible_pairs(
    small_histories: Histories, world_end: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import omni_ml.models._channel_data as channel_module

    def units(ratio: float, seed: int = 0) -> ChannelTrainingData:
        cfg = ChannelConfig(lookback_days=60, pause_ratio=ratio, seed=seed)
        return channel_training_data(small_histories, world_end, cfg)

    def pause_units(data: ChannelTrainingData) -> pl.DataFrame:
        return data.keys.filter(pl.col("arm") == NO_CONTACT).drop("sample_weight_population")

    n_contacts = units(1.0).keys.filter(pl.col("arm") != NO_CONTACT).height
    with monkeypatch.context() as patch:  # on this world one round of 3 x target draws falls short at ratio 6
        patch.setattr(channel_module, "_MAX_DRAW_ROUNDS", 1)
        with pytest.warns(UserWarning, match="pause_ratio=6 asks for"):
            one_round = units(6.0)
    short = pause_units(one_round).height
    assert short < 6 * n_contacts
    eligible_pairs = {}
    for ratio in (1.0, 3.0, 6.0):
        data = units(ratio)
        pause = pause_units(data)
        assert pause.height == int(np.ceil(ratio * n_contacts))  # further rounds reach the target
        assert pause.select("customer_id", "cutoff").n_unique() == pause.height  # no pair twice
        eligible_pairs[ratio] = pause.height / data.sampling_fraction
        if ratio == 6.0:
            assert pause.head(short).equals(pause_units(one_round))  # later rounds only add units
    # distinct pairs drawn are a uniform sample of all pairs: every ratio estimates the same eligible pairs
    # (counting repeated draws as misses made the estimate shrink as more pairs were drawn)
    assert eligible_pairs[3.0] == pytest.approx(eligible_pairs[1.0], rel=0.03)
    assert eligible_pairs[6.0] == pytest.approx(eligible_pairs[1.0], rel=0.03)
    # more than there are: every eligible pair once, a sampling fraction of 1, and a warning that says so
    with pytest.warns(UserWarning, match="all of them are used. Hint: lower pause_ratio"):
        everything = units(10.0)
    assert everything.sampling_fraction == pytest.approx(1.0)
    assert pause_units(everything).height == pytest.approx(eligible_pairs[1.0], rel=0.03)
    # same seed, same units; another seed, other no-contact units
    assert units(3.0).keys.equals(units(3.0).keys)
    assert not pause_units(units(3.0, seed=1)).equals(pause_units(units(3.0)))


def test_learned_policy_beats_random_by_truth_and_respects_consent(
    small_fit: ChannelModel, small_histories: Histories, small_world: Path, world_end: dt.datetime
) -> None:
    from omni_ml.identity import consent_state
    from omni_ml.policy import history_facts

    truth = pl.read_parquet(small_world / "truth" / "channel_response.parquet")
    ids = truth["customer_id"].unique().sort()
    effects = predict_channel_effects(small_fit, small_histories, world_end, customers=ids)
    assert effects.height == ids.len() * len(small_fit.channels_)
    consent = consent_state(small_histories, world_end)
    facts = history_facts(small_histories, world_end, customers=ids)
    cfg = PolicyConfig()
    learned = decide(effects, consent, facts, cfg)
    # the truth's own consent flags agree: never a channel without consent
    truth_consent = truth.pivot(on="channel", index="customer_id", values="consented")
    check_consent(learned, truth_consent.rename({c: f"consent_{c}" for c in truth_consent.columns[1:]}))

    def value(decisions: pl.DataFrame) -> float:
        j = decisions.join(truth, left_on=["customer_id", "best_channel"], right_on=["customer_id", "channel"])
        return float(j.select(((pl.col("p_if_contacted") - pl.col("p_if_not")) * 40.0 - pl.col("cost")).sum()).item())

    random = value(baseline_decisions("random", ids, consent, facts=facts, config=cfg, seed=0))
    oracle = value(decide(truth, consent, facts, cfg))
    assert value(learned) > random + 0.3 * (oracle - random)


def test_transaction_only_history_says_channel_choice_needs_contacts(small_world: Path) -> None:
    from omni_ml.models import PropensityModel
    from omni_ml.training import training_set

    events = pl.read_parquet(small_world / "events.parquet").filter(
        (pl.col("event_type") == "purchase") & pl.col("customer_id").is_not_null()
    )
    plain = Histories.from_frames(events.select("customer_id", pl.col("timestamp").alias("date"), "amount"))
    with pytest.raises(DataInsufficientError, match="channel choice needs contacts: the histories have no contacts"):
        fit_channel_model(plain, dt.datetime(2024, 12, 1), SMALL)
    # propensity still works on the same data
    ts = training_set(plain, [dt.datetime(2024, 9, 1), dt.datetime(2024, 10, 1)], 28)
    model = PropensityModel(n_estimators=30).fit(ts.X, ts.y)
    assert model.predict_proba(ts.X).shape == (ts.X.height, 2)
    # contacts on non-contactable channels only: the same clear message
    contacts = pl.DataFrame({"customer_id": ["C0000001"], "timestamp": [dt.datetime(2024, 6, 1)], "channel": ["web"]})
    with_web = Histories.from_frames(events.select("customer_id", "timestamp", "amount"), contacts=contacts)
    with pytest.raises(DataInsufficientError, match="no rows on a contactable channel"):
        fit_channel_model(with_web, dt.datetime(2024, 12, 1), SMALL)


def test_response_history_counts_only_closed_windows(small_histories: Histories, world_end: dt.datetime) -> None:
    from omni_ml.labels import contact_outcomes
    from omni_ml.models.channel import response_history

    cutoff = world_end - dt.timedelta(days=30)
    ids = small_histories.contacts.select("customer_id").unique().sort("customer_id").head(200).collect()  # type: ignore[union-attr]
    keys = ids.with_columns(pl.lit(cutoff).cast(pl.Datetime("us", "UTC")).alias("cutoff"))
    rh = response_history(small_histories, keys, ["email", "sms"], 7)
    assert rh.height == keys.height
    expected = (
        contact_outcomes(small_histories, 7, as_of=cutoff, incomplete="drop")
        .filter(pl.col("channel") == "email", pl.col("timestamp") + dt.timedelta(days=7) < cutoff)
        .group_by("customer_id")
        .agg(pl.len().alias("n"), pl.col("converted").sum().alias("k"))
    )
    got = keys.select("customer_id").with_columns(rh["resp_contacts_email"], rh["resp_conversions_email"])
    both = got.join(expected, on="customer_id", how="left").fill_null(0)
    assert (both["resp_contacts_email"] == both["n"]).all()
    assert (both["resp_conversions_email"] == both["k"]).all()
    assert (rh["resp_contacts_all"] >= rh["resp_contacts_email"] + rh["resp_contacts_sms"]).all()


def test_response_baseline_compares_conversions_with_the_persons_own_baseline() -> None:
    from omni_ml.models.channel import response_history

    day = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    # purchases on days 0 and 30 (outside any response window), day 42 (2 days after the day-40 contact)
    # and day 200 (after the cutoff: never counted); contacts on days 40 and 100 (no purchase follows)
    events = pl.DataFrame(
        {
            "customer_id": ["a"] * 4 + ["b"],
            "timestamp": [day, day + dt.timedelta(days=30), day + dt.timedelta(days=42), day + dt.timedelta(days=200),
                          day],
            "amount": [10.0] * 5,
        }
    )  # fmt: skip
    contacts = pl.DataFrame(
        {
            "customer_id": ["a", "a"],
            "timestamp": [day + dt.timedelta(days=d) for d in (40, 100)],
            "channel": ["sms"] * 2,
        }
    )
    hist = Histories.from_frames(events, contacts=contacts)
    keys = pl.DataFrame({"customer_id": ["a", "b"], "cutoff": [day + dt.timedelta(days=150)] * 2})
    plain = response_history(hist, keys, ["sms"], 7)
    assert "resp_excess_sms" not in plain.columns  # opt-in: the historic columns only
    rh = response_history(hist, keys, ["sms"], 7, baseline=True)
    a, b = rh.row(0, named=True), rh.row(1, named=True)
    assert (a["resp_contacts_sms"], a["resp_conversions_sms"]) == (2, 1)
    # 150 days observed, 14 inside response windows; 2 baseline purchases (the day-42 one is a conversion)
    assert a["resp_baseline_days"] == pytest.approx(136.0)
    rate = (2 + 0.5) / (136.0 + 60.0)
    assert a["resp_baseline_rate"] == pytest.approx(30 * rate)
    expected = 2 * (1 - np.exp(-7 * rate))
    assert a["resp_expected_sms"] == pytest.approx(expected)
    assert a["resp_excess_sms"] == pytest.approx((1 - expected) / (2 + 3))
    assert a["resp_lift_sms"] == pytest.approx((1 + 1) / (expected + 1))
    assert a["resp_lift_all"] == pytest.approx(a["resp_lift_sms"])
    # b: never contacted: nothing expected, no excess, lift 1, rate null
    assert (b["resp_contacts_all"], b["resp_expected_all"], b["resp_excess_all"], b["resp_lift_all"]) == (0, 0, 0, 1)
    assert b["resp_rate_all"] is None


def test_response_baseline_uses_only_the_past(small_histories: Histories, world_end: dt.datetime) -> None:
    from omni_ml.models.channel import response_history

    cutoff = world_end - dt.timedelta(days=60)
    ids = small_histories.contacts.select("customer_id").unique().sort("customer_id").head(300).collect()  # type: ignore[union-attr]
    keys = ids.with_columns(pl.lit(cutoff).cast(pl.Datetime("us", "UTC")).alias("cutoff"))
    full = response_history(small_histories, keys, ["email", "sms"], 7, baseline=True)
    past = Histories.from_frames(
        small_histories.events.filter(pl.col("timestamp") < cutoff).collect(),
        contacts=small_histories.contacts.filter(pl.col("timestamp") < cutoff).collect(),  # type: ignore[union-attr]
    )
    cut = response_history(past, keys, ["email", "sms"], 7, baseline=True)
    assert full.columns == cut.columns
    for name in full.columns:
        assert full[name].equals(cut[name]), name  # nothing at or after the cutoff changes a feature
    assert (full["resp_baseline_days"] >= 0).all()
    assert full["resp_expected_all"].sum() > 0


def test_response_baseline_config_reaches_training_and_scoring(
    small_histories: Histories, world_end: dt.datetime
) -> None:
    from omni_ml.models.channel import channel_features

    cfg = ChannelConfig(n_estimators=30, lookback_days=60, pause_ratio=0.5, response_baseline=True)
    model = fit_channel_model(small_histories, world_end, cfg)
    assert "resp_excess_all" in model.feature_names_
    assert "arm:resp_excess_{arm}" in model.aligned_  # the arm's own excess is shared across channels
    assert model.training_summary_["response_baseline"] is True
    _, X = channel_features(model, small_histories, world_end, customers=["C0000001", "C0000002"])
    assert X.columns == model.feature_names_


def test_defaults_are_a_year_of_decisions_with_the_baseline_adjusted_response_history() -> None:
    cfg = ChannelConfig()
    assert (cfg.lookback_days, cfg.response_history, cfg.response_baseline) == (365, True, True)
    assert cfg.response_columns == (True, True)
    assert ChannelConfig(response_baseline=False).response_columns == (True, False)  # counts and rates only
    assert ChannelConfig(response_history=False).response_columns == (False, False)  # off means off
    assert ChannelConfig(lookback_days=182).lookback_days == 182


def test_explicit_response_settings_choose_the_columns(small_histories: Histories, world_end: dt.datetime) -> None:
    configs = {
        "default": ChannelConfig(lookback_days=21),
        "counts": ChannelConfig(lookback_days=21, response_baseline=False),
        "none": ChannelConfig(lookback_days=21, response_history=False),
    }
    found = {
        name: {c for c in channel_training_data(small_histories, world_end, cfg).X.columns if c.startswith("resp_")}
        for name, cfg in configs.items()
    }
    adjusted = ("resp_expected_", "resp_excess_", "resp_lift_", "resp_baseline_")
    assert {"resp_rate_sms", "resp_lift_sms", "resp_excess_all", "resp_baseline_rate"} <= found["default"]
    assert "resp_rate_sms" in found["counts"]
    assert not [c for c in found["counts"] if c.startswith(adjusted)]
    assert found["none"] == set()


def test_lookback_longer_than_the_history_adapts_and_a_too_early_as_of_says_so(small_histories: Histories) -> None:
    contacts = small_histories.contacts.filter(pl.col("channel").is_in(ChannelConfig.channels))  # type: ignore[union-attr]
    first = contacts.select(pl.col("timestamp").min()).collect().item()
    as_of = first + dt.timedelta(days=60)
    data = channel_training_data(small_histories, as_of, ChannelConfig())  # 365 days asked, 60 exist
    assert data.keys["cutoff"].min() >= first
    assert data.lookback_days_used == pytest.approx(60.0)
    model = fit_channel_model(small_histories, as_of, ChannelConfig(n_estimators=20), data=data)
    assert model.training_summary_["lookback_days_used"] == pytest.approx(60.0)
    assert model.training_summary_["lookback_days"] == 365
    with pytest.raises(
        DataInsufficientError,
        match=rf"the contacts start on {first:%Y-%m-%d}; choose an as_of at least 7 days later",
    ):
        channel_training_data(small_histories, first + dt.timedelta(days=3), ChannelConfig())


def test_a_model_fitted_directly_on_the_training_units_scores_with_their_response_columns(
    small_histories: Histories, world_end: dt.datetime
) -> None:
    cfg = ChannelConfig(n_estimators=20, lookback_days=30, pause_ratio=0.5)
    data = channel_training_data(small_histories, world_end, cfg)
    direct = cfg.model().fit(data.X, data.arm, data.y)  # no training_summary_, as in notebook 04
    direct.feature_set_ = data.feature_set
    assert "resp_lift_sms" in direct.feature_names_
    ids = ["C0000001", "C0000002", "C0000003"]
    helper = fit_channel_model(small_histories, world_end, cfg, data=data)
    expected = predict_channel_effects(helper, small_histories, world_end, customers=ids)
    with pytest.warns(UserWarning, match=r"no training_summary_.*default 7-day response window.*fit_channel_model"):
        assert predict_channel_effects(direct, small_histories, world_end, customers=ids).equals(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the settings recorded by fit_channel_model: no guess, no warning
        predict_channel_effects(helper, small_histories, world_end, customers=ids)


# ------------------------------------------------------------------ randomised pauses calibrate the pause arm


def test_calibrate_arm_matches_the_randomised_rate_and_moves_only_that_arm() -> None:
    x, arm, y, p = _synthetic(6, 6000)
    # no-contact units that converted are kept less often: a selection on the outcome, as the sampled
    # no-contact units' "no contact in the window" rule does; the fitted pause arm is biased low
    rng = np.random.default_rng(7)
    keep = (arm != NO_CONTACT) | (y == 0) | (rng.random(arm.size) < 0.6)
    model = ChannelModel(n_estimators=40, random_state=0).fit(x[keep], arm[keep], y[keep])
    x_new = np.random.default_rng(8).normal(size=(4000, 3))
    base_new = 1 / (1 + np.exp(-(-2.0 + 0.7 * x_new[:, 0])))
    before_cal = model.predict_arm_proba(x_new)
    assert before_cal[:, 0].mean() < base_new.mean() - 0.01  # the bias the calibration is for
    # a randomised control group: unbiased pause outcomes, weighted by 1 / assignment probability
    x_rand = np.random.default_rng(9).normal(size=(3000, 3))
    base_rand = 1 / (1 + np.exp(-(-2.0 + 0.7 * x_rand[:, 0])))
    y_rand = (np.random.default_rng(10).random(3000) < base_rand).astype(np.int8)
    weight = np.full(3000, 1 / 0.1)
    offset = model.calibrate_arm(x_rand, NO_CONTACT, y_rand, sample_weight=weight)
    assert offset > 0
    assert model.arm_offsets_ == {NO_CONTACT: offset}
    assert model.predict_arm_proba(x_rand)[:, 0].mean() == pytest.approx(y_rand.mean(), rel=1e-9)
    after_cal = model.predict_arm_proba(x_new)
    assert abs(after_cal[:, 0].mean() - base_new.mean()) < abs(before_cal[:, 0].mean() - base_new.mean()) / 2
    assert np.array_equal(after_cal[:, 1:], before_cal[:, 1:])  # the channels' arms are untouched
    true_uplift = (p[:, 1:] - p[:, :1]).mean()
    assert after_cal[:, 1:].mean() - after_cal[:, 0].mean() < before_cal[:, 1:].mean() - before_cal[:, 0].mean()
    assert true_uplift > 0
    with pytest.raises(ConfigError, match="push"):
        model.calibrate_arm(x_rand, "push", y_rand)
    with pytest.raises(SchemaError, match="sample_weight"):
        model.calibrate_arm(x_rand, NO_CONTACT, y_rand, sample_weight=weight[:10])
    with pytest.raises(DataInsufficientError, match="rate of 0 or 1"):
        model.calibrate_arm(x_rand, NO_CONTACT, np.zeros(3000, dtype=np.int8))


def test_logged_pauses_in_the_training_period_calibrate_the_pause_arm(
    small_histories: Histories, world_end: dt.datetime
) -> None:
    contacts = small_histories.contacts.collect()  # type: ignore[union-attr]
    days = (
        contacts.filter(
            pl.col("timestamp").is_between(world_end - dt.timedelta(days=100), world_end - dt.timedelta(days=10))
        )["timestamp"]
        .dt.truncate("1d")
        .unique()
        .sort()
    )
    ids = small_histories.events.select("customer_id").unique().sort("customer_id").collect()["customer_id"]
    rng = np.random.default_rng(3)
    n = 400
    pauses = pl.DataFrame(
        {
            "customer_id": ids.gather(rng.integers(0, ids.len(), n)),
            "timestamp": days.gather(rng.integers(0, days.len(), n)) + dt.timedelta(hours=9),
            "channel": [NO_CONTACT] * n,
            "assignment_probability": rng.choice([0.1, 0.05], n),
        }
    )
    both = pl.concat([contacts, pauses.cast({"timestamp": contacts.schema["timestamp"]})], how="diagonal_relaxed")
    hist = dataclasses.replace(small_histories, contacts=both.lazy())
    cfg = dataclasses.replace(SMALL, calibrate_pause=True, min_logged_pauses=300)
    model = fit_channel_model(hist, world_end, cfg)
    summary = model.training_summary_
    assert summary["logged_pauses"] == n
    assert summary["pause_offset"] == model.arm_offsets_[NO_CONTACT]
    data = channel_training_data(hist, world_end, cfg)
    logged = data.keys.filter((pl.col("arm") == NO_CONTACT) & pl.col("assignment_probability").is_not_null())
    w = 1 / logged["assignment_probability"].to_numpy()
    x_logged = data.X.filter((data.keys["arm"] == NO_CONTACT) & data.keys["assignment_probability"].is_not_null())
    predicted = model.predict_arm_proba(x_logged)[:, 0]
    assert np.sum(w * predicted) == pytest.approx(np.sum(w * logged["converted"].to_numpy()), rel=1e-6)
    # below the minimum, or switched off, the pause arm is left as fitted
    for off in (dataclasses.replace(cfg, min_logged_pauses=n + 1), dataclasses.replace(cfg, calibrate_pause=False)):
        plain = fit_channel_model(hist, world_end, off, data=data)
        assert plain.arm_offsets_ == {}
        assert plain.training_summary_["pause_offset"] is None
