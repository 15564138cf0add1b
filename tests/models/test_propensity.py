"""PropensityModel and the baselines on synthetic data whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from omni_ml.evaluation import brier, roc_auc
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError
from omni_ml.models import LogisticBaseline, PropensityModel, RecencyFrequencyBaseline
from omni_ml.models._common import BetaCalibrator, CentredIsotonicCalibrator, PlattCalibrator, time_split

N_PER_CUTOFF = 700
N_CUTOFFS = 7
FAST = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20, "min_child_samples": 20}


def _world(seed: int = 0, drift: float = 0.0, n_cutoffs: int = N_CUTOFFS) -> dict[str, object]:
    """Customers with recency/frequency-like features; purchase log-odds known; base rate may drift by cutoff."""
    rng = np.random.default_rng(seed)
    n = N_PER_CUTOFF * n_cutoffs
    cutoff = np.repeat(np.arange("2025-01-01", n_cutoffs * 28, 28, dtype="datetime64[D]")[:n_cutoffs], N_PER_CUTOFF)
    step = np.repeat(np.arange(n_cutoffs), N_PER_CUTOFF)
    recency = rng.exponential(60, n)
    recency[rng.random(n) < 0.1] = np.nan  # never bought
    freq = rng.poisson(2, n).astype(float)
    noise = rng.normal(size=n)
    logit = -0.5 - recency / 40 + 0.4 * freq + 0.8 * (noise > 1) + drift * step
    logit = np.where(np.isnan(recency), -3.0 + drift * step, logit)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(np.int8)
    X = pl.DataFrame({"days_since_last_purchase": recency, "purchases_365d": freq, "noise": noise})
    return {"X": X, "y": y, "cutoff": cutoff, "p": p}


@pytest.fixture(scope="module")
def world() -> dict[str, object]:
    return _world()


@pytest.fixture(scope="module")
def fitted(world: dict[str, object]) -> PropensityModel:
    return PropensityModel(**FAST).fit(world["X"], world["y"], cutoff=world["cutoff"])


def test_estimator_contract_params_clone_and_fitted_attributes(fitted: PropensityModel) -> None:
    params = fitted.get_params()
    assert params["calibration"] == "sigmoid"
    assert params["num_leaves"] == 31
    fresh = clone(fitted)
    assert fresh.get_params() == params
    assert not hasattr(fresh, "booster_")
    fresh.set_params(num_leaves=7)
    assert fresh.num_leaves == 7
    assert fitted.num_leaves == 31
    with pytest.raises(NotFittedError):
        fresh.predict_proba(np.zeros((1, 3)))
    assert fitted.feature_names_ == ["days_since_last_purchase", "purchases_365d", "noise"]
    assert fitted.booster_.num_trees() == fitted.best_iteration_ < FAST["n_estimators"]


def test_split_is_by_time_latest_cutoffs_validate(fitted: PropensityModel) -> None:
    split = fitted.split_
    assert max(split["train"]) < min(split["early_stopping"])
    assert max(split["early_stopping"]) < min(split["calibration"])
    assert split["calibration"] == ["2025-06-18"]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 6), min_size=1, max_size=60),
    n_cal=st.integers(1, 3),
    n_es=st.integers(0, 3),
)
def test_time_split_never_mixes_time(values: list[int], n_cal: int, n_es: int) -> None:
    cutoff = np.array(values)
    split = time_split(cutoff, cutoff.size, n_calibration=n_cal, n_early_stopping=n_es)
    if split.calibration is None:
        assert np.unique(cutoff).size < 2
        assert split.train.size == cutoff.size
        return
    assert split.early_stopping is not None
    train, es, cal = cutoff[split.train], cutoff[split.early_stopping], cutoff[split.calibration]
    assert train.max() < es.min()
    assert train.max() < cal.min()
    # early stopping precedes calibration, or (too few cutoffs) shares exactly the calibration cutoffs
    assert es.max() < cal.min() or np.array_equal(split.early_stopping, split.calibration)
    assert cal.max() == cutoff.max()
    # every row is used, and a row is never in training and a held-out part at once
    assert set(split.train) | set(split.early_stopping) | set(split.calibration) == set(range(cutoff.size))
    assert not set(split.train) & (set(split.early_stopping) | set(split.calibration))


def test_booster_alone_gives_the_log_odds_the_model_calibrates(fitted: PropensityModel, world: dict) -> None:
    X = world["X"]
    raw = fitted.booster_.predict(X.to_numpy(), raw_score=True)
    np.testing.assert_array_equal(raw, fitted.predict_raw(X))
    np.testing.assert_array_equal(fitted.proba_from_raw(raw), fitted.predict_proba(X)[:, 1])
    assert fitted.predict(X).tolist() == (fitted.predict_proba(X)[:, 1] >= 0.5).astype(int).tolist()


def test_same_inputs_same_bytes(world: dict) -> None:
    a = PropensityModel(**FAST, random_state=3).fit(world["X"], world["y"], cutoff=world["cutoff"])
    b = PropensityModel(**FAST, random_state=3).fit(world["X"], world["y"], cutoff=world["cutoff"])
    assert a.booster_.model_to_string() == b.booster_.model_to_string()
    assert a.predict_proba(world["X"]).tobytes() == b.predict_proba(world["X"]).tobytes()


def test_learns_the_signal_close_to_the_truth(fitted: PropensityModel) -> None:
    test = _world(seed=1)
    p = fitted.predict_proba(test["X"])[:, 1]
    assert roc_auc(test["y"], p) > 0.97 * roc_auc(test["y"], test["p"])


def test_columns_are_matched_by_name_and_inputs_can_be_pandas(fitted: PropensityModel, world: dict) -> None:
    X = world["X"]
    expected = fitted.predict_proba(X)
    np.testing.assert_array_equal(fitted.predict_proba(X.select(reversed(X.columns))), expected)
    np.testing.assert_array_equal(fitted.predict_proba(X.to_pandas()), expected)
    with pytest.raises(SchemaError, match=r"missing: 'noise'.*Hint: build the features with the model's feature_set"):
        fitted.predict_proba(X.drop("noise"))


@pytest.mark.parametrize("dtype", [pl.String, pl.Categorical])
def test_text_columns_raise_schema_error_instead_of_aborting_lightgbm(world: dict, dtype: pl.DataType) -> None:
    X = world["X"].with_columns(pl.lit("web").cast(dtype).alias("channel"))
    with pytest.raises(SchemaError, match=r"1 non-numeric column\(s\) 'channel \(.*e.g. channel='web'.*Hint: drop"):
        PropensityModel(**FAST).fit(X, world["y"], cutoff=world["cutoff"])


def test_pandas_object_column_raises_schema_error(world: dict) -> None:
    X = world["X"].to_pandas()
    X["region"] = pd.Series(["north"] * len(X), dtype=object)
    with pytest.raises(SchemaError, match="non-numeric column"):
        PropensityModel(**FAST).fit(X, world["y"])


def test_single_class_is_a_clear_error(world: dict) -> None:
    with pytest.raises(DataInsufficientError, match=r"single class: all 4,900 labels are 0 .*Hint"):
        PropensityModel(**FAST).fit(world["X"], np.zeros(4900), cutoff=world["cutoff"])


def test_single_class_in_the_calibration_period_is_a_clear_error(world: dict) -> None:
    y = world["y"].copy()
    y[world["cutoff"] == world["cutoff"].max()] = 0
    with pytest.raises(DataInsufficientError, match=r"calibration part \(latest cutoffs\) has a single class"):
        PropensityModel(**FAST).fit(world["X"], y, cutoff=world["cutoff"])


def test_tiny_data_split_by_time_is_a_clear_error() -> None:
    X = np.arange(20, dtype=float).reshape(10, 2)
    with pytest.raises(
        DataInsufficientError, match=r"10 rows \(5 positive, 5 negative\) are too few; need at least 50"
    ):
        PropensityModel().fit(X, np.tile([0, 1], 5), cutoff=np.repeat([1, 2], 5))


def test_bad_labels_and_params_are_clear_errors(world: dict) -> None:
    with pytest.raises(
        SchemaError, match=r"Only binary classification is supported.*3 distinct labels \(e.g. 0, 1, 2\)"
    ):
        PropensityModel(**FAST).fit(world["X"], np.arange(4900) % 3)
    with pytest.raises(DataInsufficientError, match=r"single class: all 4,900 labels are 2, one class only"):
        PropensityModel(**FAST).fit(world["X"], np.full(4900, 2))
    with pytest.raises(ConfigError, match=r"calibration='platt' is not one of"):
        PropensityModel(calibration="platt").fit(world["X"], world["y"])  # type: ignore[arg-type]


def test_constant_features_fall_back_to_the_calibration_base_rate(world: dict) -> None:
    X = pl.DataFrame({"a": np.ones(4900), "b": np.zeros(4900)})
    model = PropensityModel(**FAST).fit(X, world["y"], cutoff=world["cutoff"])
    p = model.predict_proba(X)[:, 1]
    latest = world["cutoff"] == world["cutoff"].max()
    assert np.unique(p).size == 1
    assert p[0] == pytest.approx(world["y"][latest].mean())


def test_without_cutoffs_no_early_stopping_and_no_calibration(world: dict) -> None:
    model = PropensityModel(n_estimators=30).fit(world["X"], world["y"])
    assert model.calibrator_ is None
    assert model.best_iteration_ == 30 == model.booster_.num_trees()
    raw = model.predict_raw(world["X"])
    np.testing.assert_allclose(model.predict_proba(world["X"])[:, 1], 1 / (1 + np.exp(-raw)))


def test_calibration_on_held_out_time_improves_brier_under_drift() -> None:
    drifting = _world(seed=2, drift=0.25, n_cutoffs=8)
    later = _world(seed=3, drift=0.25, n_cutoffs=9)
    last = later["cutoff"] == later["cutoff"].max()  # a period no model saw
    X_new, y_new = later["X"].filter(pl.Series(last)), later["y"][last]
    scores = {}
    for calibration in (None, "beta", "centred_isotonic", "isotonic", "sigmoid"):
        model = PropensityModel(**FAST, calibration=calibration)
        model.fit(drifting["X"], drifting["y"], cutoff=drifting["cutoff"])
        scores[calibration] = brier(y_new, model.predict_proba(X_new)[:, 1])
    assert scores["beta"] < scores[None] - 0.02
    assert scores["centred_isotonic"] < scores[None] - 0.02
    assert scores["isotonic"] < scores[None] - 0.02
    assert scores["sigmoid"] < scores[None] - 0.02


def test_refit_all_trains_the_same_rounds_on_every_cutoff(world: dict, fitted: PropensityModel) -> None:
    model = PropensityModel(**FAST, refit="all").fit(world["X"], world["y"], cutoff=world["cutoff"])
    assert model.best_iteration_ == fitted.best_iteration_ == model.booster_.num_trees()
    assert model.booster_.model_to_string() != fitted.booster_.model_to_string()


def test_feature_importance_ranks_the_informative_features(fitted: PropensityModel) -> None:
    imp = fitted.feature_importance()
    assert imp["feature"][0] == "days_since_last_purchase"
    assert imp["gain_share"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("baseline", [RecencyFrequencyBaseline(), LogisticBaseline()])
def test_baselines_share_the_api_and_calibrate_on_the_latest_cutoff(baseline: object, world: dict) -> None:
    model = clone(baseline).fit(world["X"], world["y"], cutoff=world["cutoff"])
    assert model.split_["calibration"] == ["2025-06-18"]
    assert max(model.split_["train"]) < "2025-06-18"
    test = _world(seed=1)
    p = model.predict_proba(test["X"])[:, 1]
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc(test["y"], p) > 0.75
    assert abs(p.mean() - test["y"].mean()) < 0.03


def test_boosted_model_beats_the_recency_frequency_cells_when_there_is_more_signal(fitted, world) -> None:
    rf = RecencyFrequencyBaseline().fit(world["X"], world["y"], cutoff=world["cutoff"])
    test = _world(seed=1)
    assert roc_auc(test["y"], fitted.predict_proba(test["X"])[:, 1]) > roc_auc(
        test["y"], rf.predict_proba(test["X"])[:, 1]
    )


def test_recency_frequency_baseline_names_a_missing_feature(world: dict) -> None:
    with pytest.raises(SchemaError, match=r"recency feature 'days_since_last_purchse'.*Did you mean"):
        RecencyFrequencyBaseline(recency="days_since_last_purchse").fit(world["X"], world["y"])
    with pytest.raises(SchemaError, match=r"no frequency feature matches.*Hint: pass frequency="):
        RecencyFrequencyBaseline().fit(world["X"].drop("purchases_365d"), world["y"])


@pytest.mark.parametrize("calibration", ["sigmoid", "beta", "centred_isotonic"])
def test_calibration_has_no_plateaus_and_never_says_0_or_1(calibration: str, world: dict) -> None:
    """Distinct booster scores get distinct probabilities (same order); none is exactly 0 or 1."""
    fitted = PropensityModel(**FAST, calibration=calibration).fit(world["X"], world["y"], cutoff=world["cutoff"])
    raw = fitted.predict_raw(world["X"])
    p = fitted.predict_proba(world["X"])[:, 1]
    order = np.argsort(raw, kind="stable")
    higher = np.diff(raw[order]) > 0
    assert higher.sum() > 1000
    assert np.all(np.diff(p[order])[higher] > 0)
    assert np.all(np.diff(p[order])[~higher] == 0)
    assert ((p > 0) & (p < 1)).all()
    far = fitted.proba_from_raw(np.array([-1e6, -60.0, -25.0, 0.0, 25.0, 60.0, 1e6]))
    assert ((far > 0) & (far < 1)).all()
    assert np.all(np.diff(far) >= 0)
    # the plain isotonic step map of the same booster: far fewer distinct values, still never exactly 0 or 1
    iso = clone(fitted).set_params(calibration="isotonic").fit(world["X"], world["y"], cutoff=world["cutoff"])
    q = iso.predict_proba(world["X"])[:, 1]
    assert np.unique(q).size < np.unique(p).size / 10
    assert ((q > 0) & (q < 1)).all()
    # calibrated where it was fitted: the latest cutoff's mean probability is its purchase rate
    latest = world["cutoff"] == world["cutoff"].max()
    assert p[latest].mean() == pytest.approx(world["y"][latest].mean(), abs=0.01)


def test_centred_isotonic_interpolates_block_rates_between_block_centres() -> None:
    x = np.array([0.0, 1, 2, 3, 4, 5, 6, 7])
    y = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    cal = CentredIsotonicCalibrator().fit(x, y)
    # PAVA blocks {0, 1} rate 0, {2, 3} rate 1/2, {4..7} rate 1; the end blocks get Jeffreys' half count
    np.testing.assert_allclose(cal.centres_, [0.5, 2.5, 5.5])
    np.testing.assert_allclose(cal.predict(cal.centres_), [0.5 / 3, 0.5, 1 - 0.5 / 5])
    logit_first = np.log(0.5 / 3 / (1 - 0.5 / 3))
    assert cal.predict(np.array([1.5]))[0] == pytest.approx(1 / (1 + np.exp(-logit_first / 2)))
    grid = np.linspace(-10, 20, 301)
    q = cal.predict(grid)
    assert np.all(np.diff(q) > 0)
    assert ((q > 0) & (q < 1)).all()


def _labels(rng: np.random.Generator, log_odds: np.ndarray) -> np.ndarray:
    return (rng.random(log_odds.size) < 1 / (1 + np.exp(-log_odds))).astype(int)


def test_beta_calibration_finds_a_slope_of_its_own_at_each_end_where_platt_has_one() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(-1.0, 2.5, 60_000)
    ln_s, ln_not_s = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)  # ln(sigmoid(x)), ln(1 - sigmoid(x))
    truth = 1.5 * ln_s - 0.5 * ln_not_s - 0.5  # log-odds slope 1.5 far below 0, 0.5 far above
    y = _labels(rng, truth)
    beta, platt = BetaCalibrator().fit(x, y), PlattCalibrator().fit(x, y)
    assert beta.a_ == pytest.approx(1.5, abs=0.15)
    assert beta.b_ == pytest.approx(0.5, abs=0.15)
    assert beta.c_ == pytest.approx(-0.5, abs=0.15)
    grid = np.sort(x)[[100, -100]]  # near the ends of the data

    def log_odds(p: np.ndarray) -> np.ndarray:
        return np.log(p) - np.log1p(-p)

    expected = (1.5 * ln_s - 0.5 * ln_not_s - 0.5)[np.argsort(x)[[100, -100]]]
    assert np.abs(log_odds(beta.predict(grid)) - expected).max() < 0.5
    assert np.abs(log_odds(platt.predict(grid)) - expected).max() > 1.0  # one slope cannot follow both ends


def test_beta_calibration_reduces_to_platt_on_a_logistic_score_and_stays_monotone() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(-2.0, 1.5, 40_000)
    y = _labels(rng, 0.8 * x - 0.3)
    beta = BetaCalibrator().fit(x, y)
    grid = np.linspace(-5, 0, 11)  # where the data are (mean -2, sd 1.5)
    np.testing.assert_allclose(beta.predict(grid), PlattCalibrator().fit(x, y).predict(grid), atol=0.01)
    # a score that orders the labels the wrong way at the top: the negative end is dropped, the map stays monotone
    y_odd = _labels(rng, np.where(x < -2, 1.2 * (x + 2), -0.8 * (x + 2)) - 1.0)
    odd = BetaCalibrator().fit(x, y_odd)
    assert odd.a_ > 0
    assert odd.b_ == 0
    assert np.all(np.diff(odd.predict(np.linspace(-10, 10, 201))) >= 0)
    # labels unrelated to the score: the base rate everywhere
    y_flat = (rng.random(x.size) < 0.1).astype(int)
    flat = BetaCalibrator().fit(-np.abs(x), y_flat)
    q = flat.predict(np.array([-5.0, 0.0]))
    assert np.all(np.diff(q) >= 0)
    assert abs(q.mean() - y_flat.mean()) < 0.01


def test_centred_isotonic_pools_again_when_the_half_count_breaks_the_order() -> None:
    # one non-buyer at score 0, then 100 rows with a single buyer first: PAVA rates 0 (n=1) and 0.01 (n=100);
    # the half count lifts the first to 0.25 > 0.01, so the two blocks are pooled into one at 1.25 / 101
    x = np.arange(101, dtype=float)
    y = np.zeros(101, dtype=int)
    y[1] = 1
    cal = CentredIsotonicCalibrator().fit(x, y)
    np.testing.assert_allclose(cal.centres_, [50.0])
    assert cal.predict(np.array([50.0]))[0] == pytest.approx(1.25 / 101)
    assert np.all(np.diff(cal.predict(np.array([0.0, 50.0, 100.0]))) > 0)


def test_logistic_baseline_transforms_in_place_without_touching_the_callers_matrix() -> None:
    """The pipeline's log1p and scaling overwrite the imputer's copy; the input stays as given."""
    rng = np.random.default_rng(3)
    X = rng.exponential(size=(600, 4)) * np.array([1.0, -1.0, 10.0, 1.0])  # a negative feature too
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (X[:, 0] + rng.normal(size=600) > 1).astype(int)
    given = X.copy()
    model = LogisticBaseline(calibration="sigmoid").fit(X, y, cutoff=np.repeat([1, 2], 300))
    p = model.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(X, given)  # NaNs in the same places, every value unchanged
    assert np.array_equal(model.predict_proba(X)[:, 1], p)  # predicting twice gives the same numbers
    # same numbers as the textbook pipeline that copies at every step
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    reference = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        FunctionTransformer(lambda a: np.sign(a) * np.log1p(np.abs(a))),
        StandardScaler(),
        LogisticRegression(max_iter=2000),
    ).fit(X[:300], y[:300])
    np.testing.assert_allclose(model.pipeline_.predict_proba(X)[:, 1], reference.predict_proba(X)[:, 1], rtol=1e-9)
