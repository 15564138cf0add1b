"""BG/NBD, Pareto/NBD and Gamma-Gamma: published CDNOW values, parameter recovery, invariants."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.data import Histories
from omni_ml.exceptions import ModelNotFoundError, SchemaError
from omni_ml.models.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel, btyd_customer_value, rfm_summary

CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee (2005a), table 1
CDNOW_PARETO = {"r": 0.5534, "alpha": 10.5802, "s": 0.6061, "beta": 11.6562}  # BTYD walkthrough (R), p. 8
CDNOW_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # Fader, Hardie & Lee (2005b)


def _bgnbd(params: dict[str, float]) -> BetaGeoModel:
    m = BetaGeoModel()
    m.params_ = dict(params)
    return m


def _pareto(params: dict[str, float]) -> ParetoNBDModel:
    m = ParetoNBDModel()
    m.params_ = dict(params)
    return m


def test_bgnbd_conditional_expectation_matches_published_cdnow_value() -> None:
    # the paper's worked example: x = 2, t_x = 30.43, T = 38.86 weeks, next 39 weeks -> 1.226
    got = _bgnbd(CDNOW_BGNBD).expected_purchases(39, 2, 30.43, 38.86)
    assert got[0] == pytest.approx(1.226, abs=5e-4)


def test_bgnbd_unconditional_expectation_matches_published_cdnow_curve() -> None:
    # Hardie's spreadsheet (fitted, unrounded parameters); the rounded published ones agree to 0.2%
    times = [0.1429, 1.0, 3.0, 31.8571, 32.0, 78.0]
    published = [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576]
    got = _bgnbd(CDNOW_BGNBD).expected_purchases_new(times)
    np.testing.assert_allclose(got, published, rtol=2e-3, atol=1e-4)


def test_pareto_nbd_p_alive_matches_published_cdnow_value() -> None:
    assert _pareto(CDNOW_PARETO).p_alive(26, 30.86, 31.0)[0] == pytest.approx(0.9979, abs=2e-4)


def test_gamma_gamma_matches_hardie_spreadsheet() -> None:
    # CDNOW customers 1, 2 and 6 (x, mean repeat order value) -> Hardie's spreadsheet (note 025)
    m = GammaGammaModel()
    m.params_ = dict(CDNOW_GG)
    got = m.expected_order_value([2, 1, 7], [22.35, 11.77, 73.74])
    np.testing.assert_allclose(got, [24.65, 18.91, 71.46], atol=0.02)


def test_pareto_p_any_purchase_agrees_with_monte_carlo() -> None:
    m = _pareto(CDNOW_PARETO)
    x, t_x, T, t = 2, 30.43, 38.86, 39.0
    rng = np.random.default_rng(0)
    lam = rng.gamma(CDNOW_PARETO["r"] + x, 1 / (CDNOW_PARETO["alpha"] + T), 400_000)
    mu = rng.gamma(CDNOW_PARETO["s"], 1 / (CDNOW_PARETO["beta"] + T), 400_000)
    mc = float(np.mean(lam / (lam + mu) * -np.expm1(-(lam + mu) * t)))
    assert m.p_any_purchase(t, x, t_x, T)[0] == pytest.approx(mc * m.p_alive(x, t_x, T)[0], abs=3e-3)


def _simulate_bgnbd(n: int, params: dict[str, float], T: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, np.full(n, T)


def test_bgnbd_fit_recovers_generating_parameters() -> None:
    truth = {"r": 0.8, "alpha": 5.0, "a": 1.5, "b": 4.0}
    x, t_x, T = _simulate_bgnbd(4000, truth, 52.0, seed=1)
    t_x = np.round(t_x, 1)
    m = BetaGeoModel().fit(x, t_x, T)
    assert m.params_["r"] == pytest.approx(truth["r"], rel=0.15)
    assert m.params_["alpha"] == pytest.approx(truth["alpha"], rel=0.2)
    # the fitted model predicts the sample's own repeat rate
    assert m.expected_purchases_new(52.0)[0] == pytest.approx(x.mean(), rel=0.05)
    assert m.log_likelihood_ >= float(np.sum(m.log_likelihood(x, t_x, T, params=list(truth.values())))) - 1e-6


def test_pareto_nbd_fit_recovers_generating_parameters() -> None:
    truth = {"r": 0.8, "alpha": 5.0, "s": 0.7, "beta": 10.0}
    rng = np.random.default_rng(2)
    n, T = 5000, 52.0
    lam = rng.gamma(truth["r"], 1 / truth["alpha"], n)
    life = rng.exponential(1 / rng.gamma(truth["s"], 1 / truth["beta"], n))
    x = rng.poisson(lam * np.minimum(life, T)).astype(float)
    # given their number, purchase times are uniform over the active span: t_x is the largest of x uniforms
    t_x = np.where(x > 0, np.minimum(life, T) * rng.random(n) ** (1 / np.maximum(x, 1)), 0.0)
    t_x = np.round(t_x, 1)  # weeks to one decimal, as summaries are reported
    m = ParetoNBDModel().fit(x, t_x, np.full(n, T))
    assert m.params_["r"] == pytest.approx(truth["r"], rel=0.15)
    assert m.params_["alpha"] == pytest.approx(truth["alpha"], rel=0.25)
    assert m.log_likelihood_ >= float(np.sum(m.log_likelihood(x, t_x, np.full(n, T), params=list(truth.values()))))


def test_gamma_gamma_fit_recovers_population_mean() -> None:
    rng = np.random.default_rng(3)
    n, p, q, gamma = 4000, 4.0, 3.0, 20.0
    nu = rng.gamma(q, 1 / gamma, n)
    x = rng.integers(1, 8, n)
    mean = np.array([rng.gamma(p, 1 / v, k).mean() for v, k in zip(nu, x, strict=True)])
    m = GammaGammaModel().fit(x, mean)
    fitted_mean = m.params_["p"] * m.params_["gamma"] / (m.params_["q"] - 1)
    assert fitted_mean == pytest.approx(p * gamma / (q - 1), rel=0.1)


@settings(deadline=None)  # the quadrature's first call (node tables) is slow on a loaded machine
@given(
    x=st.integers(0, 60),
    frac=st.floats(0, 1),
    T=st.floats(0.5, 200),
    t=st.floats(0.1, 100),
)
def test_probabilities_are_probabilities_and_expectations_positive(x: int, frac: float, T: float, t: float) -> None:
    t_x = 0.0 if x == 0 else frac * T
    for m in (_bgnbd(CDNOW_BGNBD), _pareto(CDNOW_PARETO)):
        alive = m.p_alive(x, t_x, T)[0]
        anyp = m.p_any_purchase(t, x, t_x, T)[0]
        assert 0 <= anyp <= alive <= 1
        assert m.expected_purchases(t, x, t_x, T)[0] >= anyp - 1e-9


def test_bgnbd_longer_silence_lowers_p_alive() -> None:
    m = _bgnbd(CDNOW_BGNBD)
    early, late = m.p_alive([3, 3], [10.0, 30.0], [38.0, 38.0])
    assert early < late


def test_impossible_summary_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"1 of 2 customers are impossible \(e\.g\. x=1\.0, t_x=5\.0, T=3\.0\)"):
        _bgnbd(CDNOW_BGNBD).p_alive([1, 1], [5.0, 1.0], [3.0, 3.0])


def test_unfitted_model_says_how_to_fit() -> None:
    with pytest.raises(ModelNotFoundError, match=r"BetaGeoModel is not fitted"):
        BetaGeoModel().p_alive(1, 1, 2)


def test_rfm_summary_sees_only_purchases_before_as_of_and_values_btyd() -> None:
    days = [dt.datetime(2025, 1, d, tzinfo=dt.UTC) for d in (1, 8, 15, 29, 29)]
    ev = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "timestamp": days,
            "event_type": ["purchase"] * 5,
            "amount": [10.0, 20.0, 40.0, 999.0, 5.0],
        }
    )
    s = rfm_summary(Histories(events=ev.lazy()), "2025-01-29", unit_days=7)
    assert s["customer_id"].to_list() == ["a"]  # b's only purchase is at the cutoff itself
    assert s.row(0, named=True) | {} == {
        "customer_id": "a",
        "x": 2,
        "t_x": 2.0,
        "T": 4.0,
        "mean_value": 30.0,
        "first_value": 10.0,
    }
    gg = GammaGammaModel()
    gg.params_ = dict(CDNOW_GG)
    value = btyd_customer_value(_bgnbd(CDNOW_BGNBD), gg, s, horizon=52.0)
    expected = _bgnbd(CDNOW_BGNBD).expected_purchases(52.0, 2, 2.0, 4.0) * gg.expected_order_value(2, 30.0)
    assert value["customer_value"].to_numpy() == pytest.approx(expected)
