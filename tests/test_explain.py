"""Tests for omni_ml.explanation: exact fast TreeSHAP, reason codes in words, differences, global views."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_ml.exceptions import SchemaError
from omni_ml.explanation import (
    TreeShap,
    explain,
    explain_difference,
    family_label,
    global_importance,
    plot_beeswarm,
    plot_importance,
    plot_waterfall,
)
from omni_ml.explanation._reasons import _render_one

ATOL = 1e-6


# ----------------------------------------------------------------------------------------------- helpers
def _data(seed: int, n: int = 600, n_features: int = 5, nan_share: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    X[rng.random((n, n_features)) < nan_share] = np.nan
    X[rng.random(n) < 0.1, 1] = 0.0  # exact zeros matter for missing_type Zero
    X[:, 2] = np.round(X[:, 2] * 2)  # a few repeated values
    signal = np.nan_to_num(X[:, 0]) + 0.7 * np.nan_to_num(X[:, 1]) * np.isnan(X[:, 3]) + 0.3 * np.nan_to_num(X[:, 2])
    y = (signal + rng.normal(size=n) > 0).astype(int)
    return X, y


def _train(X: np.ndarray, y: np.ndarray, rounds: int = 20, **params: Any) -> lgb.Booster:
    base = {"objective": "binary", "verbose": -1, "num_leaves": 15, "min_data_in_leaf": 5, "seed": 0}
    base.update(params)
    categorical = base.pop("categorical_feature", "auto")
    return lgb.train(base, lgb.Dataset(X, y, categorical_feature=categorical), rounds)


def _contrib(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(X, pred_contrib=True))


class _StubFeatureSet:
    """Stands in for omni_ml.features.FeatureSet: render/family_of/describe."""

    families = {"visits_web_7d": "browsing", "opens_email_30d": "engagement", "age": "customer"}

    def render(self, name: str, value: Any) -> str:
        if name not in self.families:
            raise KeyError(name)
        if value != value:
            return f"no {name.replace('_', ' ')}"
        if name == "visits_web_7d":
            return f"{value:,.0f} web visits in the last 7 days"
        if name == "opens_email_30d":
            return f"{value:,.0f} email opens in the last 30 days"
        return f"aged {value:.0f}"

    def family_of(self, name: str) -> str:
        return self.families[name]

    def describe(self, name: str) -> str:
        return name.replace("_", " ")


class _CalibratedStub:
    """A PropensityModel look-alike: booster_, feature_names_, proba_from_raw (a step function)."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster_ = booster
        self.feature_names_ = booster.feature_name()

    def proba_from_raw(self, raw: np.ndarray) -> np.ndarray:
        stepped = np.floor(np.asarray(raw, dtype=np.float64) * 4) / 4  # isotonic-like plateaus
        return 1.0 / (1.0 + np.exp(-stepped))


@pytest.fixture(scope="module")
def named_model() -> tuple[lgb.Booster, pl.DataFrame]:
    rng = np.random.default_rng(3)
    n = 800
    X = pl.DataFrame(
        {
            "visits_web_7d": rng.poisson(2, n).astype(float),
            "opens_email_30d": np.where(rng.random(n) < 0.2, np.nan, rng.poisson(1, n)),
            "age": rng.normal(45, 12, n),
            "unused": rng.normal(size=n),
        }
    )
    logit = 0.6 * X["visits_web_7d"].to_numpy() + 0.8 * np.nan_to_num(X["opens_email_30d"].to_numpy()) - 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 10, "seed": 0},
        lgb.Dataset(X.to_numpy(), y, feature_name=X.columns),
        40,
    )
    return booster, X


# ------------------------------------------------------------------------------------- TreeShap exactness
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"zero_as_missing": True},
        {"use_missing": False},
        {"max_depth": 3, "num_leaves": 8},
        {"num_leaves": 31, "min_data_in_leaf": 2},
    ],
    ids=["nan-missing", "zero-as-missing", "no-missing", "depth-3", "deep"],
)
def test_treeshap_matches_lightgbm_pred_contrib(params: dict[str, Any]) -> None:
    X, y = _data(0)
    booster = _train(X, y, **params)
    ts = TreeShap(booster)
    phi = ts.shap_values(X)
    ref = _contrib(booster, X)
    np.testing.assert_allclose(phi, ref[:, :-1], rtol=0, atol=ATOL)
    assert ts.expected_value == pytest.approx(ref[0, -1], abs=ATOL)


# shap 0.51 warns that binary LightGBM output "changed to a list"; it is stale (ECOSYSTEM.md): it returns (n, f).
@pytest.mark.filterwarnings("ignore:LightGBM binary classifier with TreeExplainer shap values output:UserWarning")
def test_treeshap_matches_shap_treeexplainer() -> None:
    import shap

    X, y = _data(1)
    booster = _train(X, y, rounds=30)
    expected = shap.TreeExplainer(booster).shap_values(X)
    ts = TreeShap(booster)
    np.testing.assert_allclose(ts.shap_values(X), expected, rtol=0, atol=ATOL)


def test_treeshap_categorical_splits_match_including_odd_codes() -> None:
    X, y = _data(2)
    rng = np.random.default_rng(2)
    X[:, 3] = rng.integers(0, 12, X.shape[0])
    y = ((X[:, 3] % 3 == 0) ^ (rng.random(X.shape[0]) < 0.2)).astype(int)
    booster = _train(X, y, categorical_feature=[3], max_cat_to_onehot=2, min_data_per_group=5, cat_smooth=1)
    assert "==" in str(booster.dump_model())  # the model really has categorical splits
    probe = X[:12].copy()
    probe[:, 3] = [np.nan, -1, -0.5, 0.5, 2.7, 3, 11, 12, 40, 1e12, 6, 9]  # NaN, negative, fractional, unseen, huge
    ts = TreeShap(booster)
    np.testing.assert_allclose(ts.shap_values(probe), _contrib(booster, probe)[:, :-1], rtol=0, atol=ATOL)


def test_paths_longer_than_the_table_depth_are_computed_directly() -> None:
    X, y = _data(4)
    booster = _train(X, y, num_leaves=31, min_data_in_leaf=2)
    direct = TreeShap(booster, max_table_depth=2)
    np.testing.assert_allclose(direct.shap_values(X), _contrib(booster, X)[:, :-1], rtol=0, atol=ATOL)
    assert direct.table_depth == 2
    assert int(direct._flat.path_d.max()) > 2


def test_tables_grow_with_the_batch_and_stay_exact() -> None:
    X, y = _data(13)
    booster = _train(X, y, num_leaves=31, min_data_in_leaf=2)
    ts = TreeShap(booster)
    assert ts.table_depth == -1
    np.testing.assert_allclose(ts.shap_values(X[:3]), _contrib(booster, X[:3])[:, :-1], rtol=0, atol=ATOL)
    small = ts.table_depth
    np.testing.assert_allclose(ts.shap_values(X), _contrib(booster, X)[:, :-1], rtol=0, atol=ATOL)
    assert 4 <= small < ts.table_depth


def test_table_budget_lowers_the_table_depth() -> None:
    X, y = _data(5)
    booster = _train(X, y, num_leaves=31, min_data_in_leaf=2)
    small = TreeShap(booster, max_table_bytes=20_000)
    np.testing.assert_allclose(small.shap_values(X), _contrib(booster, X)[:, :-1], rtol=0, atol=ATOL)
    assert 0 < small._table.nbytes <= 20_000


def test_single_leaf_trees_only_move_the_base_value() -> None:
    X, y = _data(6)
    booster = _train(X, y, rounds=3, min_gain_to_split=1e9)
    ts = TreeShap(booster)
    assert np.all(ts.shap_values(X[:10]) == 0.0)
    np.testing.assert_allclose(ts.expected_value, booster.predict(X[:10], raw_score=True), atol=1e-12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    num_leaves=st.integers(2, 24),
    rounds=st.integers(1, 25),
    nan_share=st.sampled_from([0.0, 0.1, 0.4]),
    missing=st.sampled_from([{}, {"zero_as_missing": True}, {"use_missing": False}]),
    max_depth=st.sampled_from([-1, 2, 5]),
)
def test_additivity_and_agreement_on_random_models(
    seed: int, num_leaves: int, rounds: int, nan_share: float, missing: dict[str, Any], max_depth: int
) -> None:
    X, y = _data(seed, n=300, n_features=4, nan_share=nan_share)
    booster = _train(X, y, rounds=rounds, num_leaves=num_leaves, max_depth=max_depth, min_data_in_leaf=3, **missing)
    rows = np.vstack([X[:40], np.full((1, 4), np.nan), np.zeros((1, 4))])
    ts = TreeShap(booster)
    phi = ts.shap_values(rows)
    raw = booster.predict(rows, raw_score=True)
    np.testing.assert_allclose(phi.sum(axis=1) + ts.expected_value, raw, rtol=0, atol=ATOL)
    np.testing.assert_allclose(phi, _contrib(booster, rows)[:, :-1], rtol=0, atol=ATOL)


def test_dedupe_is_exact_and_rows_in_one_decision_bin_share_values() -> None:
    X, y = _data(7)
    booster = _train(X, y)
    ts = TreeShap(booster)
    many = np.vstack([X[:30]] * 5)
    np.testing.assert_array_equal(ts.shap_values(many, dedupe=True), ts.shap_values(many, dedupe=False))
    # Nudging a value without crossing any threshold of the model keeps every decision, hence the values.
    bins = ts.decision_bins(X[:30])
    nudged = X[:30].copy()
    cuts = np.unique(ts._cuts[ts._cuts_start[0] : ts._cuts_start[1]])
    for i, v in enumerate(nudged[:, 0]):
        if not np.isnan(v) and v != 0:
            above = cuts[cuts >= v]
            upper = above[0] if above.size else v + 1.0
            nudged[i, 0] = v + (upper - v) / 2 if upper > v else v
    np.testing.assert_array_equal(ts.decision_bins(nudged), bins)
    np.testing.assert_allclose(ts.shap_values(nudged), ts.shap_values(X[:30]), rtol=0, atol=1e-12)


def test_same_inputs_give_the_same_bytes() -> None:
    X, y = _data(8)
    booster = _train(X, y)
    a = TreeShap(booster).shap_values(X)
    b = TreeShap(booster).shap_values(X)
    assert a.tobytes() == b.tobytes()


def test_treeshap_accepts_frames_matched_by_name(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    ts = TreeShap(booster)
    shuffled = X.select(["age", "unused", "opens_email_30d", "visits_web_7d"]).with_columns(
        customer_id=pl.lit("x"), visits_web_7d=pl.col("visits_web_7d").cast(pl.Int64)
    )
    expected = ts.shap_values(X.to_numpy())
    np.testing.assert_allclose(ts.shap_values(shuffled), expected, atol=1e-12)
    np.testing.assert_allclose(ts.shap_values(shuffled.to_pandas()), expected, atol=1e-12)
    assert isinstance(X.to_pandas(), pd.DataFrame)


def test_treeshap_rejects_bad_inputs_with_hints(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    ts = TreeShap(booster)
    with pytest.raises(SchemaError, match=r"lacks 1 of the model's 4 feature columns: 'age'.*'age' -> 'agee'"):
        ts.shap_values(X.rename({"age": "agee"}))
    with pytest.raises(SchemaError, match=r"non-numeric feature column.*'age' of type String.*Hint: encode"):
        ts.shap_values(X.with_columns(pl.col("age").cast(pl.String)))
    with pytest.raises(SchemaError, match=r"LazyFrame.*collect"):
        ts.shap_values(X.lazy())
    with pytest.raises(SchemaError, match=r"shape \(3, 2\) but the model has 4 features"):
        ts.shap_values(np.zeros((3, 2)))
    with pytest.raises(TypeError, match=r"Cannot explain a str"):
        TreeShap("model.txt")


def test_multiclass_models_are_refused() -> None:
    X, _ = _data(9, n=300)
    y = np.arange(300) % 3
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, lgb.Dataset(X, y), 2)
    with pytest.raises(ValueError, match=r"3 trees per iteration \(multiclass\)"):
        TreeShap(booster)


# ----------------------------------------------------------------------------------------- reason codes
def test_explain_contributions_add_up_in_both_units(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    model = _CalibratedStub(booster)
    out = explain(model, X.head(200), top_k=4)
    raw = booster.predict(X.head(200).to_numpy(), raw_score=True)
    np.testing.assert_allclose(out["score_log_odds"].to_numpy(), raw, atol=ATOL)
    lo = out.select(pl.sum_horizontal(pl.col("^log_odds_\\d$").fill_null(0.0))).to_series().to_numpy()
    np.testing.assert_allclose(lo, raw - out["base_log_odds"].to_numpy(), atol=ATOL)
    prob = out.select(pl.sum_horizontal(pl.col("^probability_\\d$").fill_null(0.0))).to_series().to_numpy()
    p, p0 = model.proba_from_raw(raw), model.proba_from_raw(out["base_log_odds"].to_numpy())
    np.testing.assert_allclose(out["probability"].to_numpy(), p, atol=1e-12)
    np.testing.assert_allclose(prob, p - p0, atol=1e-9)
    # the secant slope keeps the signs of the log-odds contributions (proba_from_raw is non-decreasing)
    for slot in range(1, 5):
        both = out.select(f"log_odds_{slot}", f"probability_{slot}").drop_nulls().to_numpy()
        assert np.all(both[:, 0] * both[:, 1] >= 0)


def test_explain_ranks_by_absolute_contribution_and_renders_text(
    named_model: tuple[lgb.Booster, pl.DataFrame],
) -> None:
    booster, X = named_model
    out = explain(booster, X.head(50), feature_set=_StubFeatureSet(), top_k=3, keys=[f"c{i}" for i in range(50)])
    assert out.columns[:5] == ["customer_id", "score_log_odds", "base_log_odds", "probability", "base_probability"]
    magnitudes = out.select(pl.col("^log_odds_\\d$").abs()).to_numpy()
    valid = ~np.isnan(magnitudes)
    assert np.all(np.diff(np.where(valid, magnitudes, -1.0), axis=1) <= 0)
    row = out.row(0, named=True)
    value = X["visits_web_7d"][0]
    idx = [row[f"feature_{k}"] for k in (1, 2, 3)].index("visits_web_7d")
    assert (
        row[f"reason_{idx + 1}"]
        == f"{value:,.0f} web visits in the last 7 days ({row[f'probability_{idx + 1}'] * 100:+.2g} pp)"
    )
    # a feature the feature set does not know falls back to "<name> = <value>"
    fallback = [r for r in out["reason_1"].to_list() + out["reason_3"].to_list() if r and r.startswith("unused")]
    assert all(r.startswith("unused = ") for r in fallback)


def test_explain_log_odds_units_and_direction(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    out = explain(booster, X.head(100), top_k=2, units="log_odds", direction="positive")
    values = out.select(pl.col("^log_odds_\\d$")).to_numpy().astype(float)
    assert np.all(values[~np.isnan(values)] > 0)
    assert (~np.isnan(values)).sum() > 50
    first = out.filter(pl.col("reason_1").is_not_null()).row(0, named=True)
    assert first["reason_1"].endswith(f"({first['log_odds_1']:+.2f} log-odds)")
    neg = explain(booster, X.head(100), top_k=2, direction="negative")
    assert (neg.select(pl.col("^log_odds_\\d$")).fill_null(0.0).to_numpy() <= 0).all()


def test_explain_fewer_nonzero_reasons_than_k_leaves_nulls() -> None:
    rng = np.random.default_rng(0)
    X = pl.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "c": rng.normal(size=300)})
    y = (X["a"].to_numpy() > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 2}, lgb.Dataset(X, y), 3)
    out = explain(booster, X.head(5), top_k=3)  # stumps on "a" only
    assert out["feature_1"].to_list() == ["a"] * 5
    assert out["reason_2"].null_count() == 5
    assert out["log_odds_3"].null_count() == 5


def test_explain_by_family_sums_members(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    fs = _StubFeatureSet()
    by_feature = explain(booster, X.head(30), feature_set=fs, top_k=4, units="log_odds")
    by_family = explain(booster, X.head(30), feature_set=fs, top_k=4, units="log_odds", by="family")
    fam = by_family.row(0, named=True)
    feat = by_feature.row(0, named=True)
    per_family: dict[str, float] = {}
    for k in range(1, 5):
        if feat[f"feature_{k}"] is not None:
            name = feat[f"feature_{k}"]
            key = fs.families.get(name, name)
            per_family[key] = per_family.get(key, 0.0) + feat[f"log_odds_{k}"]
    for k in range(1, 5):
        if fam[f"family_{k}"] is not None:
            assert fam[f"log_odds_{k}"] == pytest.approx(per_family[fam[f"family_{k}"]], abs=1e-12)
            assert fam[f"reason_{k}"].startswith(family_label(fam[f"family_{k}"]) + ": ")


def test_explain_keys_must_match_rows(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    with pytest.raises(SchemaError, match=r"keys has 2 rows but X has 3.*Hint"):
        explain(booster, X.head(3), keys=["a", "b"])
    keyed = explain(booster, X.head(3).with_columns(customer_id=pl.Series(["a", "b", "c"])))
    assert keyed["customer_id"].to_list() == ["a", "b", "c"]
    assert explain(booster, X.head(3).to_numpy())["row"].to_list() == [0, 1, 2]


def test_probability_units_need_a_probability_model() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, X[:, 0]), 5)
    with pytest.raises(ValueError, match=r"objective is 'regression'.*units='log_odds'"):
        explain(booster, X[:3])
    assert "probability" not in explain(booster, X[:3], units="log_odds").columns


def test_render_fallback_formats() -> None:
    assert _render_one(None, "visits", 3.0) == "visits = 3"
    assert _render_one(None, "ratio", 0.123456) == "ratio = 0.1235"
    assert _render_one(None, "ratio", math.nan) == "ratio missing"


# ------------------------------------------------------------------------------------ explain_difference
def test_explain_difference_is_exact_for_a_treatment_column() -> None:
    rng = np.random.default_rng(11)
    n = 1500
    X = pl.DataFrame(
        {
            "treat_email": rng.integers(0, 2, n).astype(float),
            "opens_email_30d": rng.poisson(1, n).astype(float),
            "visits_web_7d": rng.poisson(2, n).astype(float),
        }
    )
    logit = X["treat_email"].to_numpy() * (X["opens_email_30d"].to_numpy() - 1) + 0.3 * X["visits_web_7d"].to_numpy()
    y = (rng.random(n) < 1 / (1 + np.exp(-logit + 1))).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 40)
    rows = X.head(100)
    xa, xb = rows.with_columns(treat_email=pl.lit(1.0)), rows.with_columns(treat_email=pl.lit(0.0))
    out = explain_difference(booster, xa, xb, top_k=3, units="log_odds")
    ra, rb = booster.predict(xa.to_numpy(), raw_score=True), booster.predict(xb.to_numpy(), raw_score=True)
    np.testing.assert_allclose(out["score_log_odds"].to_numpy(), ra, atol=ATOL)
    np.testing.assert_allclose(out["base_log_odds"].to_numpy(), rb, atol=ATOL)
    total = out.select(pl.sum_horizontal(pl.col("^log_odds_\\d$").fill_null(0.0))).to_series().to_numpy()
    np.testing.assert_allclose(total, ra - rb, atol=ATOL)
    prob = out.select(pl.sum_horizontal(pl.col("^probability_\\d$").fill_null(0.0))).to_series().to_numpy()
    sig = lambda r: 1 / (1 + np.exp(-r))  # noqa: E731
    np.testing.assert_allclose(prob, sig(ra) - sig(rb), atol=1e-9)
    # the treatment is the reason most often, shown with the treated value
    assert out["feature_1"].to_list().count("treat_email") > 50
    assert any(r.startswith("treat_email = 1 ") for r in out["reason_1"].drop_nulls().to_list())


def test_explain_difference_of_two_arm_models_t_learner() -> None:
    X, y = _data(12, n=500, n_features=4, nan_share=0.0)
    arm_a = _train(X, y, rounds=10)
    arm_b = _train(X, 1 - y, rounds=10)
    out = explain_difference(arm_a, X[:40], X[:40], model_b=arm_b, top_k=4)
    ra, rb = arm_a.predict(X[:40], raw_score=True), arm_b.predict(X[:40], raw_score=True)
    lo = out.select(pl.sum_horizontal(pl.col("^log_odds_\\d$").fill_null(0.0))).to_series().to_numpy()
    offset = TreeShap(arm_a).expected_value - TreeShap(arm_b).expected_value
    assert offset != 0
    assert np.all(out["offset_log_odds"].to_numpy() == offset)
    np.testing.assert_allclose(lo + offset, ra - rb, atol=ATOL)
    prob = out.select(pl.sum_horizontal(pl.col("^probability_\\d$").fill_null(0.0))).to_series().to_numpy()
    np.testing.assert_allclose(
        prob + out["offset_probability"].to_numpy(),
        (out["probability"] - out["base_probability"]).to_numpy(),
        atol=1e-9,
    )
    with pytest.raises(SchemaError, match=r"X_a has 40 rows and X_b 39"):
        explain_difference(arm_a, X[:40], X[:39])


# ---------------------------------------------------------------------------------------- global views
def test_global_importance_by_feature_and_family(named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    booster, X = named_model
    fs = _StubFeatureSet()
    phi = TreeShap(booster).shap_values(X)
    by_feature = global_importance(booster, X, feature_set=fs)
    expected = dict(zip(X.columns, np.abs(phi).mean(axis=0), strict=True))
    for name, value in by_feature.select("feature", "mean_abs_shap").iter_rows():
        assert value == pytest.approx(expected[name], abs=1e-12)
    assert by_feature["mean_abs_shap"].is_sorted(descending=True)
    assert by_feature["share"].sum() == pytest.approx(1.0)
    assert by_feature.filter(pl.col("feature") == "age")["family"].item() == "customer"
    by_family = global_importance(booster, X, feature_set=fs, by="family")
    engagement = by_family.filter(pl.col("family") == "engagement")
    assert engagement["mean_abs_shap"].item() == pytest.approx(np.abs(phi[:, 1]).mean(), abs=1e-12)
    assert engagement["label"].item() == "message engagement"


def test_plots_save_png_headless(tmp_path: Path, named_model: tuple[lgb.Booster, pl.DataFrame]) -> None:
    from matplotlib.figure import Figure

    booster, X = named_model
    fs = _StubFeatureSet()
    paths = {
        "beeswarm": tmp_path / "beeswarm.png",
        "waterfall": tmp_path / "sub" / "waterfall.png",
        "importance": tmp_path / "importance.png",
    }
    figs = [
        plot_beeswarm(booster, X.head(200), feature_set=fs, path=paths["beeswarm"]),
        plot_waterfall(booster, X.head(200), row=3, feature_set=fs, path=paths["waterfall"]),
        plot_importance(booster, X.head(200), feature_set=fs, path=paths["importance"]),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t.get_text() for t in figs[1].axes[0].get_yticklabels()]
    assert any("web visits in the last 7 days" in label for label in labels)
    with pytest.raises(IndexError, match=r"row 500 is out of range for X with 200 rows"):
        plot_waterfall(booster, X.head(200), row=500)


# ----------------------------------------------------------------------- real features and every family
@pytest.fixture(scope="module")
def small_world_model(small_histories: Any) -> tuple[lgb.Booster, Any]:
    from omni_ml.training import training_cutoffs, training_set

    ts = training_set(small_histories, training_cutoffs("2024-12-01", 28, n=2), 28)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 15, "min_data_in_leaf": 10, "seed": 0},
        lgb.Dataset(ts.X.to_numpy(), ts.y, feature_name=ts.X.columns),
        40,
    )
    return booster, ts


def test_every_feature_family_renders_readable_text(small_world_model: tuple[lgb.Booster, Any]) -> None:
    booster, ts = small_world_model
    fs = ts.feature_set
    families = fs.families()
    assert len(families) >= 10
    for family, names in families.items():
        for name in names:
            column = ts.X[name]
            values = [column.max(), column.min(), None if column.null_count() == 0 else math.nan]
            for value in values:
                if value is None:
                    continue
                text = _render_one(fs, name, float(value))
                assert text, (family, name)
                assert not any(bad in text for bad in ("{", "}", " = ", "nan", "None")), (family, name, text)
        assert family_label(family)
        assert "_" not in family_label(family)


def test_reasons_on_simulated_customers_use_the_feature_set(small_world_model: tuple[lgb.Booster, Any]) -> None:
    booster, ts = small_world_model
    rows = ts.X.head(300)
    out = explain(booster, rows, feature_set=ts.feature_set, keys=ts.keys.head(300), top_k=3)
    assert out.columns[:2] == ["customer_id", "cutoff"]
    reasons = out.select(pl.concat_list(pl.col("^reason_\\d$")).explode().drop_nulls()).to_series().to_list()
    assert reasons
    assert not any(" = " in r for r in reasons)
    fams = explain(booster, rows, feature_set=ts.feature_set, top_k=3, by="family")
    used = set(fams.select(pl.concat_list(pl.col("^family_\\d$")).explode().drop_nulls()).to_series().to_list())
    assert used <= set(ts.feature_set.families())
    for fam_reason in fams["reason_1"].drop_nulls().to_list()[:50]:
        assert any(fam_reason.startswith(family_label(f) + ": ") for f in used)


def test_explain_a_real_propensity_model_with_isotonic_calibration() -> None:
    from omni_ml.models import PropensityModel

    rng = np.random.default_rng(0)
    X = pl.DataFrame({"visits_web_7d": rng.poisson(2, 3000).astype(float), "age": rng.normal(45, 12, 3000)})
    y = (rng.random(3000) < 1 / (1 + np.exp(-(X["visits_web_7d"].to_numpy() - 2)))).astype(int)
    cutoff = np.repeat(np.arange("2025-01", "2025-06", dtype="datetime64[M]"), 600)
    model = PropensityModel(n_estimators=40, min_child_samples=20, random_state=0).fit(X, y, cutoff=cutoff)
    out = explain(model, X.head(100), feature_set=_StubFeatureSet(), top_k=2)
    np.testing.assert_allclose(out["probability"].to_numpy(), model.predict_proba(X.head(100))[:, 1], atol=1e-12)
    total = out.select(pl.sum_horizontal(pl.col("^probability_\\d$").fill_null(0.0))).to_series().to_numpy()
    np.testing.assert_allclose(total, (out["probability"] - out["base_probability"]).to_numpy(), atol=1e-9)


def test_probability_reasons_show_percentage_points_with_significant_digits(
    named_model: tuple[lgb.Booster, pl.DataFrame],
) -> None:
    """Small contributions must stay readable: '+0.021 pp', never a rounded '+0.000'."""
    booster, X = named_model
    out = explain(booster, X.head(200), top_k=3)
    rows = out.filter(pl.col("reason_1").is_not_null()).head(50).iter_rows(named=True)
    for row in rows:
        match = re.search(r"\(([+-][0-9.]+) pp\)$", row["reason_1"])
        assert match, row["reason_1"]
        shown = float(match.group(1))
        assert shown == pytest.approx(row["probability_1"] * 100, rel=0.06, abs=1e-12)
        assert shown != 0.0 or row["probability_1"] == 0.0


def test_flat_calibration_step_never_renders_zero_percentage_points(
    named_model: tuple[lgb.Booster, pl.DataFrame],
) -> None:
    """Rows on the base's calibration step (p == p0) have non-zero contributions: show them, not '+0 pp'."""
    booster, X = named_model
    model = _CalibratedStub(booster)
    out = explain(model, X, top_k=3)
    flat = out.filter(pl.col("probability") == pl.col("base_probability"))
    assert flat.height > 20  # the step map puts many rows on the base's step
    texts = [t for k in (1, 2, 3) for t in out[f"reason_{k}"].drop_nulls().to_list()]
    assert not [t for t in texts if re.search(r"\([+-]0 pp\)$", t)]
    for row in flat.iter_rows(named=True):
        assert row["log_odds_1"] != 0.0
        assert row["probability_1"] == 0.0
        match = re.search(r"\(([+-][0-9.]+) log-odds\)$", row["reason_1"])
        assert match, row["reason_1"]
        assert float(match.group(1)) == pytest.approx(row["log_odds_1"], rel=0.06)
    # rows off the base's step keep percentage points
    moved = out.filter(pl.col("probability") != pl.col("base_probability"))["reason_1"].drop_nulls()
    assert moved.len() > 20
    assert all(t.endswith(" pp)") for t in moved.to_list())


# ------------------------------------------------------------------ channel reasons with the response history
RAW_NAME = re.compile(r"arm_|resp_|__|\{|\}| = |nan|None")


@pytest.fixture(scope="module")
def response_channel_model(small_world: Path, small_histories: Any) -> tuple[Any, pl.DataFrame]:
    """A small S-learner with every response-history column (counts, rates, baseline-adjusted) and its inputs."""
    import datetime as dt
    import json

    from omni_ml.models.channel import ChannelConfig, channel_features, fit_channel_model

    end = json.loads((small_world / "truth" / "world.json").read_text())["config"]["end"]
    as_of = dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC)
    cfg = ChannelConfig(n_estimators=60, lookback_days=90, pause_ratio=0.5, response_baseline=True)
    model = fit_channel_model(small_histories, as_of, cfg)
    contacted = small_histories.contacts.select("customer_id").unique().sort("customer_id").head(300).collect()
    _, X = channel_features(model, small_histories, as_of, customers=contacted["customer_id"])
    return model, X


def test_every_response_history_column_renders_in_words(response_channel_model: tuple[Any, pl.DataFrame]) -> None:
    from omni_ml.explanation._channel import _ChannelDescriber

    model, X = response_channel_model
    wanted = [f"resp_{w}_{c}" for c in [*model.channels_, "all"] for w in ("expected", "excess", "lift")]
    assert set(wanted) | {"resp_baseline_rate", "resp_baseline_days"} <= set(model.feature_names_)
    assert {"arm:resp_excess_{arm}", "arm:resp_lift_{arm}", "arm:resp_expected_{arm}"} <= set(model.aligned_)
    seen: set[str] = set()
    for channel in model.channels_:
        names = model.explanation_names(channel)
        describer = _ChannelDescriber(model.feature_set_, names, channel)
        for booster_name, feature in names.items():
            if not feature.startswith("resp_"):
                continue
            column = X[feature]
            for value in (column.min(), column.max(), column.median(), 0.0, 1.0, math.nan):
                text = describer.render(booster_name, value)
                assert not RAW_NAME.search(text), (booster_name, value, text)
                seen.add(text)
            assert not RAW_NAME.search(describer.describe(booster_name)), booster_name
            assert describer.family_of(booster_name) == "response_history"
    # the words name the channel and what the number means
    assert any(re.search(r"bought [\d.]+x as often after past sms contacts as usual", t) for t in seen), seen
    assert any(re.search(r"purchases? expected after past email contacts from their usual rate", t) for t in seen)
    assert any(re.search(r"purchases per 100 past contacts on any channel (above|than)", t) for t in seen)
    assert any(t.startswith("usually buys ") and t.endswith(" a month on days not just after a contact") for t in seen)


def test_channel_reasons_with_response_history_are_words_and_add_up(
    response_channel_model: tuple[Any, pl.DataFrame],
) -> None:
    from omni_ml.explanation import explain_channel

    model, X = response_channel_model
    channels = np.random.default_rng(0).choice(model.channels_, size=X.height).tolist()
    k = len(model.feature_names_) + len(model.aligned_) + 1
    why = explain_channel(model, X, channels, top_k=k)
    texts = why.select(pl.concat_list(pl.col("^reason_\\d+$")).explode().drop_nulls()).to_series().to_list()
    features = why.select(pl.concat_list(pl.col("^feature_\\d+$")).explode().drop_nulls()).to_series().to_list()
    assert any(f.startswith(("resp_", "arm_resp_")) for f in features)  # response columns do carry reasons
    assert any("usual" in t for t in texts)
    assert not [t for t in texts if RAW_NAME.search(t)][:5]
    # contributions of all features (+ offset) add up to the estimated uplift of the explained channel
    effects = model.predict_effects(X)
    uplift = (
        pl.DataFrame({"customer_id": [str(i) for i in range(X.height)], "channel": channels})
        .join(effects, on=["customer_id", "channel"], how="left", maintain_order="left")["uplift"]
        .to_numpy()
    )
    contrib = why.select(pl.sum_horizontal(pl.col("^probability_\\d+$").fill_null(0.0))).to_series().to_numpy()
    np.testing.assert_allclose(contrib + why["offset_probability"].to_numpy(), uplift, atol=1e-9)
