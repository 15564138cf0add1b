"""Metrics, lift and calibration tables, the Report and its figures."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from omni_ml.evaluation import (
    calibration_table,
    evaluate,
    evaluate_scores,
    expected_calibration_error,
    lift_table,
    roc_auc,
    top_decile_lift,
)
from omni_ml.exceptions import SchemaError
from omni_ml.models import PropensityModel
from omni_ml.training import TrainingSet

labels_and_scores = st.integers(12, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0]), min_size=n, max_size=n),
    )
)


@settings(max_examples=80, deadline=None)
@given(data=labels_and_scores)
def test_roc_auc_matches_scikit_learn_with_ties(data: tuple[list[int], list[float]]) -> None:
    y, p = np.array(data[0]), np.array(data[1])
    if 0 < y.sum() < y.size:
        assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    else:
        assert np.isnan(roc_auc(y, p))


@settings(max_examples=60, deadline=None)
@given(data=labels_and_scores, seed=st.integers(0, 1000))
def test_lift_table_is_order_free_and_consistent(data: tuple[list[int], list[float]], seed: int) -> None:
    y, p = np.array(data[0]), np.array(data[1])
    table = lift_table(y, p)
    perm = np.random.default_rng(seed).permutation(y.size)
    assert table.equals(lift_table(y[perm], p[perm]))  # ties are spread, never decided by input order
    assert table["n"].sum() == y.size
    assert table["positives"].sum() == pytest.approx(y.sum())
    if y.sum():
        gains = table["gains"].to_numpy()
        assert np.all(np.diff(gains) >= -1e-12)
        assert gains[-1] == pytest.approx(1.0)
        assert table["cum_lift"][-1] == pytest.approx(1.0)


def test_lift_of_a_perfect_ranking() -> None:
    y = np.r_[np.ones(10), np.zeros(90)]
    p = np.linspace(1, 0, 100)
    table = lift_table(y, p)
    assert table["lift"].to_list()[:2] == [10.0, 0.0]
    assert table["gains"][0] == 1.0
    assert top_decile_lift(y, p) == 10.0


def test_expected_calibration_error_sees_a_shift_and_not_a_calibrated_model() -> None:
    rng = np.random.default_rng(0)
    truth = rng.beta(1, 4, 200_000)
    y = (rng.random(truth.size) < truth).astype(np.int8)
    assert expected_calibration_error(y, truth) < 0.005
    assert expected_calibration_error(y, np.clip(truth + 0.05, 0, 1)) == pytest.approx(0.05, abs=0.006)
    assert expected_calibration_error(y, truth, strategy="uniform") < 0.005


def test_equal_mass_bins_hold_equal_rows_and_ties_share_a_bin() -> None:
    p = np.r_[np.full(500, 0.1), np.linspace(0.2, 0.9, 500)]
    y = np.zeros(1000, dtype=np.int8)
    table = calibration_table(y, p, n_bins=10)
    assert table["n"][0] == 500  # the 500 tied scores are not split across bins
    assert set(table["n"].to_list()[1:]) == {100}
    assert ((table["lower"] <= table["observed"]) & (table["observed"] <= table["upper"])).all()


def test_scores_must_be_probabilities() -> None:
    with pytest.raises(SchemaError, match=r"1 of 3 scores are not probabilities in \[0, 1\] \(e.g. 2.5\).*Hint"):
        evaluate_scores([0, 1, 1], [0.1, 2.5, 0.3])
    with pytest.raises(SchemaError, match="3 labels but 2 scores"):
        evaluate_scores([0, 1, 1], [0.1, 0.3])


@pytest.fixture(scope="module")
def report_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    n = 6000
    cutoff = np.repeat(np.array(["2025-05-04", "2025-06-01", "2025-06-29"], dtype="datetime64[us]"), n // 3)
    truth = rng.beta(1.2, 5, n)
    y = (rng.random(n) < truth).astype(np.int8)
    noisy = np.clip(truth + rng.normal(0, 0.05, n), 0, 1)
    return {"cutoff": cutoff, "truth": truth, "y": y, "noisy": noisy}


def test_report_per_cutoff_and_overall_with_mlflow_names(report_inputs: dict[str, np.ndarray]) -> None:
    d = report_inputs
    report = evaluate_scores(d["y"], d["noisy"], cutoff=d["cutoff"], oracle=d["truth"])
    m = report.metrics
    assert all(re.fullmatch(r"[\w\-./ ]+", k) for k in m)  # names MLflow accepts
    assert m["cutoff_2025-06-01/auc"] == pytest.approx(roc_auc(d["y"][2000:4000], d["noisy"][2000:4000]))
    assert m["auc"] == pytest.approx(roc_auc(d["y"], d["noisy"]))
    assert m["auc_share_of_oracle"] == pytest.approx(m["auc"] / m["oracle_auc"])
    assert 0.85 < m["auc_share_of_oracle"] < 1.0
    assert report.per_cutoff["cutoff"].to_list() == sorted(set(d["cutoff"].tolist()))
    assert report.per_cutoff["n_rows"].to_list() == [2000.0] * 3
    assert m["n_rows"] == 6000
    assert m["base_rate"] == pytest.approx(d["y"].mean())
    assert report.lift.height == 10
    assert report.calibration.height == 10
    assert "cutoff 2025-06-29" in report.to_text()


def test_oracle_scores_are_their_own_oracle(report_inputs: dict[str, np.ndarray]) -> None:
    d = report_inputs
    report = evaluate_scores(d["y"], d["truth"], oracle=d["truth"])
    assert report.metrics["auc_share_of_oracle"] == 1.0
    assert report.metrics["ece"] < 0.03


def test_plots_are_figures(report_inputs: dict[str, np.ndarray], tmp_path) -> None:
    d = report_inputs
    figures = evaluate_scores(d["y"], d["noisy"], oracle=d["truth"]).plot()
    assert set(figures) == {"gains", "lift", "calibration"}
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        assert fig.axes[0].get_title()
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    gains_lines = figures["gains"].axes[0].get_lines()
    assert len(gains_lines) == 3  # model, oracle, random


def test_evaluate_a_model_on_a_training_set() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    X = pl.DataFrame({"x": rng.normal(size=n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * X["x"].to_numpy()))).astype(np.int8)
    days = [dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=28 * k) for k in range(6)]
    keys = pl.DataFrame(
        {"customer_id": [f"c{i % 500}" for i in range(n)], "cutoff": [d for d in days for _ in range(500)]}
    )
    ts = TrainingSet(X, y, keys, horizon_days=28)
    train, valid = ts.split_out_of_time(n_valid=1)
    model = PropensityModel(n_estimators=50, random_state=0).fit_training_set(train)
    report = evaluate(model, valid)
    p = model.predict_proba(valid.X)[:, 1]
    assert report.metrics["auc"] == pytest.approx(roc_auc(valid.y, p))
    assert list(report.per_cutoff["cutoff"]) == [days[-1]]
    assert "cutoff_2025-05-21/brier" in report.metrics
    assert evaluate(p, valid).metrics == report.metrics
