"""The propensity models are scikit-learn citizens: its own estimator checks, clone, Pipeline, GridSearchCV, SHAP."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import estimator_checks_generator
from sklearn.utils.validation import check_is_fitted

from omni_ml.exceptions import DataInsufficientError, SchemaError
from omni_ml.models import LogisticBaseline, PropensityModel, RecencyFrequencyBaseline

# RecencyFrequencyBaseline finds its two features by name; scikit-learn's checks pass anonymous arrays,
# whose columns the models call x0, x1, ...
ESTIMATORS = [
    PropensityModel(),
    LogisticBaseline(),
    RecencyFrequencyBaseline(recency="x0", frequency="x1"),
]
FAST = {"n_estimators": 40, "min_child_samples": 20, "learning_rate": 0.1, "early_stopping_rounds": 10}


def _checks() -> list:
    """scikit-learn's checks of each estimator, except the array-API one (no array-API support is claimed).

    That check skips itself unless SCIPY_ARRAY_API is set; the suite allows no skips.
    """
    return [
        pytest.param(estimator, check, id=f"{type(estimator).__name__}-{check.func.__name__}")
        for original in ESTIMATORS
        for estimator, check in estimator_checks_generator(original)
        if check.func.__name__ != "check_array_api_input"
    ]


@pytest.mark.parametrize(("estimator", "check"), _checks())
def test_scikit_learn_estimator_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(3)
    n = 2400
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - X[:, 1])))).astype(int)
    cutoff = np.repeat(np.arange("2025-01", "2025-07", dtype="datetime64[M]"), n // 6)
    return {"X": X, "y": y, "cutoff": cutoff, "frame": pl.DataFrame(X, schema=["recency", "frequency", "noise"])}


def test_fit_does_not_touch_the_parameters_and_clone_gives_an_unfitted_twin(data: dict) -> None:
    model = PropensityModel(**FAST, calibration="centred_isotonic")
    before = model.get_params()
    model.fit(data["X"], data["y"], cutoff=data["cutoff"])
    assert model.get_params() == before
    twin = clone(model)
    assert twin.get_params() == before
    with pytest.raises(NotFittedError):
        check_is_fitted(twin)
    with pytest.raises(NotFittedError):
        twin.predict_proba(data["X"])
    np.testing.assert_array_equal(
        twin.fit(data["X"], data["y"], cutoff=data["cutoff"]).predict_proba(data["X"]), model.predict_proba(data["X"])
    )


def test_feature_names_in_is_set_for_frames_only_and_n_features_in_always(data: dict) -> None:
    model = PropensityModel(**FAST).fit(data["frame"], data["y"], cutoff=data["cutoff"])
    assert list(model.feature_names_in_) == ["recency", "frequency", "noise"]
    assert model.n_features_in_ == 3
    # a frame is matched by name (any column order), an array by position
    shuffled = data["frame"].select("noise", "recency", "frequency")
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(data["X"]))
    model.fit(data["X"], data["y"], cutoff=data["cutoff"])  # refit on an array: no names any more
    assert not hasattr(model, "feature_names_in_")
    assert model.feature_names_ == ["x0", "x1", "x2"]
    with pytest.raises(SchemaError, match=r"X has 2 features, but PropensityModel is expecting 3 features.*Hint"):
        model.predict_proba(data["X"][:, :2])


def test_any_two_labels_give_the_same_model_and_predict_returns_them(data: dict) -> None:
    numeric = PropensityModel(**FAST).fit(data["X"], data["y"], cutoff=data["cutoff"])
    words = np.where(data["y"] == 1, "buys", "abstains")
    named = PropensityModel(**FAST).fit(data["X"], words, cutoff=data["cutoff"])
    assert named.classes_.tolist() == ["abstains", "buys"]
    np.testing.assert_array_equal(named.predict_proba(data["X"]), numeric.predict_proba(data["X"]))
    assert set(named.predict(data["X"]).tolist()) == {"abstains", "buys"}
    np.testing.assert_array_equal(named.predict(data["X"]) == "buys", numeric.predict(data["X"]) == 1)


@pytest.mark.parametrize("make", [PropensityModel, LogisticBaseline])
def test_bad_targets_are_clear_errors(make: type, data: dict) -> None:
    X = data["X"][:300]
    with pytest.raises(SchemaError, match=r"Only binary classification is supported.*multiclass.*Hint"):
        make().fit(X, np.arange(300) % 3)
    with pytest.raises(SchemaError, match=r"requires y to be passed, but the target y is None"):
        make().fit(X, None)
    with pytest.raises(SchemaError, match=r"Input y contains NaN or infinity: 1 of 300 labels"):
        make().fit(X, np.r_[np.nan, data["y"][1:300]])
    with pytest.raises(SchemaError, match=r"Unknown label type: continuous"):
        make().fit(X, np.linspace(0, 1, 300))


def test_small_data_fits_without_cutoffs_and_is_refused_with_them() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = np.tile([0, 1], 15)
    model = PropensityModel(n_estimators=5).fit(X, y)
    assert model.calibrator_ is None  # no held-out time: LightGBM's own sigmoid (documented fallback)
    assert model.predict_proba(X).shape == (30, 2)
    with pytest.raises(DataInsufficientError, match=r"30 rows \(15 positive, 15 negative\) are too few; need"):
        PropensityModel().fit(X, y, cutoff=np.repeat([1, 2, 3], 10))


def test_small_leaves_fit_scikit_learns_toy_problem() -> None:
    """The default leaves (100 rows) cannot split 200 rows (the poor_score tag); small ones separate the blobs."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=300, random_state=0)
    X, y = X[y != 2], y[y != 2]
    model = PropensityModel(n_estimators=50, min_child_samples=5).fit(X, y)
    assert (model.predict(X) == y).mean() > 0.83


def test_in_a_pipeline_the_cutoff_reaches_the_model(data: dict) -> None:
    pipe = Pipeline([("scale", StandardScaler()), ("model", PropensityModel(**FAST))])
    pipe.fit(data["X"], data["y"], model__cutoff=data["cutoff"])
    assert pipe[-1].split_["calibration"] == ["2025-06"]
    direct = PropensityModel(**FAST).fit(StandardScaler().fit_transform(data["X"]), data["y"], cutoff=data["cutoff"])
    np.testing.assert_allclose(pipe.predict_proba(data["X"]), direct.predict_proba(pipe[0].transform(data["X"])))


def test_grid_search_slices_the_cutoffs_with_the_rows(data: dict) -> None:
    """Out-of-time folds: each fit sees the cutoffs of its own rows (its calibration is its own latest cutoff)."""
    fold = np.where(data["cutoff"] == data["cutoff"].max(), 0, -1)  # validate on the latest cutoff only
    search = GridSearchCV(
        PropensityModel(**FAST), {"num_leaves": [3, 15]}, cv=PredefinedSplit(fold), scoring="roc_auc", refit=True
    )
    search.fit(data["X"], data["y"], cutoff=data["cutoff"])
    train, valid = fold == -1, fold == 0
    for i, leaves in enumerate(search.cv_results_["param_num_leaves"]):
        alone = PropensityModel(**FAST, num_leaves=leaves).fit(
            data["X"][train], data["y"][train], cutoff=data["cutoff"][train]
        )
        assert alone.split_["calibration"] == ["2025-05"]
        expected = roc_auc_score(data["y"][valid], alone.predict_proba(data["X"][valid])[:, 1])
        assert search.cv_results_["split0_test_score"][i] == pytest.approx(expected, abs=1e-12)
    assert search.best_estimator_.split_["calibration"] == ["2025-06"]  # the refit saw every cutoff


def test_shap_tree_explainer_on_the_booster_adds_up_to_the_raw_score(data: dict) -> None:
    shap = pytest.importorskip("shap")
    model = PropensityModel(**FAST).fit(data["frame"], data["y"], cutoff=data["cutoff"])
    X = data["frame"].head(50).to_pandas()
    explanation = shap.TreeExplainer(model.booster_)(X)
    assert explanation.values.shape == (50, 3)
    assert explanation.feature_names == ["recency", "frequency", "noise"]
    raw = explanation.values.sum(axis=1) + explanation.base_values
    np.testing.assert_allclose(raw, model.predict_raw(X), atol=1e-9)
    # ... and the calibrated probability is the calibration map of that sum
    np.testing.assert_allclose(model.proba_from_raw(raw), model.predict_proba(X)[:, 1], atol=1e-12)
