"""Tests of omni_ml.models.value on a plain transaction log with a known value per customer."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, ModelNotFoundError, SchemaError
from omni_ml.models.value import CustomerValueModel, OrderValueStats, ValueConfig, heuristic_value

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
AS_OF = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
HORIZON = 60


def _plain_log(seed: int = 0, n: int = 500) -> tuple[pl.DataFrame, np.ndarray]:
    """Poisson buyers with their own rate and order value; returns events (incl. the future) and E[value]."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(1.0, 6.0 / 365, n)  # orders per day
    aov = rng.lognormal(np.log(60), 0.6, n)
    days = (AS_OF - START).days + HORIZON
    rows_c, rows_t, rows_a = [], [], []
    for i in range(n):
        k = rng.poisson(rate[i] * days)
        rows_c += [f"C{i:05d}"] * k
        rows_t += [START + dt.timedelta(days=float(d)) for d in rng.uniform(0, days, k)]
        rows_a += list(aov[i] * rng.lognormal(-0.02, 0.2, k))
    events = pl.DataFrame({"customer_id": rows_c, "timestamp": rows_t, "amount": rows_a})
    return events, rate * HORIZON * aov


@pytest.fixture(scope="module")
def plain() -> tuple[Histories, np.ndarray, pl.DataFrame]:
    events, expected = _plain_log()
    hist = Histories.from_frames(events).collect()
    realised = (
        events.filter((pl.col("timestamp") >= AS_OF) & (pl.col("timestamp") < AS_OF + dt.timedelta(days=HORIZON)))
        .group_by("customer_id")
        .agg(pl.col("amount").sum().alias("realised"))
    )
    return hist, expected, realised


@pytest.fixture(scope="module")
def fitted(plain: tuple[Histories, np.ndarray, pl.DataFrame]) -> CustomerValueModel:
    hist, _, _ = plain
    cfg = ValueConfig(horizon_days=HORIZON, every_days=28, n_cutoffs=5, n_estimators=150, num_leaves=7)
    return CustomerValueModel(cfg).fit(hist, AS_OF)


def test_value_model_ranks_customers_by_their_true_value_on_a_plain_log(
    plain: tuple[Histories, np.ndarray, pl.DataFrame], fitted: CustomerValueModel
) -> None:
    hist, expected, realised = plain
    assert not hist.has_channels
    pred = fitted.predict(hist, AS_OF)
    truth = pl.DataFrame({"customer_id": [f"C{i:05d}" for i in range(expected.size)], "expected": expected})
    j = pred.join(truth, on="customer_id").join(realised, on="customer_id", how="left").fill_null(0.0)
    assert (j["customer_value"] >= 0).all()
    assert spearmanr(j["customer_value"], j["expected"])[0] > 0.5
    assert spearmanr(j["customer_value"], j["realised"])[0] > 0.3
    # calibrated in the mean: total predicted revenue within 30% of the expected total
    assert j["customer_value"].sum() == pytest.approx(j["expected"].sum(), rel=0.3)


def test_value_model_never_sees_rows_at_or_after_as_of(
    plain: tuple[Histories, np.ndarray, pl.DataFrame], fitted: CustomerValueModel
) -> None:
    hist, _, _ = plain
    past = hist.replace(events=hist.events.filter(pl.col("timestamp") < AS_OF))
    refit = CustomerValueModel(fitted.config).fit(past, AS_OF)
    a = fitted.predict(hist, AS_OF)
    b = refit.predict(past, AS_OF)
    assert a.equals(b)


def test_heuristic_is_propensity_times_orders_per_buyer_times_shrunk_order_value(
    plain: tuple[Histories, np.ndarray, pl.DataFrame],
) -> None:
    hist, _, _ = plain
    stats = OrderValueStats.fit(hist, AS_OF, horizon_days=HORIZON, prior_orders=2.0)
    assert stats.orders_per_buyer >= 1.0
    prop = pl.DataFrame({"customer_id": ["C00000", "C00001", "nobody"], "propensity": [0.5, 0.2, 0.1]})
    out = heuristic_value(stats, hist, AS_OF, prop)
    assert out["customer_id"].to_list() == ["C00000", "C00001", "nobody"]
    # a customer without orders gets the population mean order value
    assert out["customer_value"][2] == pytest.approx(0.1 * stats.orders_per_buyer * stats.mean_order_value)
    conv = stats.conversion_value(hist, AS_OF, prop["customer_id"], margin=0.5)
    assert conv["conversion_value"][2] == pytest.approx(0.5 * stats.orders_per_buyer * stats.mean_order_value)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['propensity'\]"):
        heuristic_value(stats, hist, AS_OF, prop.drop("propensity"))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(1, 1000), min_size=1, max_size=8), st.floats(0.0, 10.0))
def test_shrunk_order_value_lies_between_own_mean_and_population_mean(amounts: list[float], prior: float) -> None:
    other = [50.0, 70.0]
    ev = pl.DataFrame(
        {
            "customer_id": ["a"] * len(amounts) + ["b"] * len(other),
            # distinct timestamps: identical rows would be de-duplicated on load
            "timestamp": [AS_OF - dt.timedelta(days=10 + i) for i in range(len(amounts) + len(other))],
            "amount": amounts + other,
        }
    )
    hist = Histories.from_frames(ev)
    stats = OrderValueStats.fit(hist, AS_OF, horizon_days=30, prior_orders=prior)
    value = stats.order_value(hist, AS_OF, pl.Series(["a"]))[0]
    own, pop = float(np.mean(amounts)), stats.mean_order_value
    # amounts are summed in whole cents: up to half a cent of rounding
    assert min(own, pop) - 0.005 <= value <= max(own, pop) + 0.005


def test_errors_are_clear() -> None:
    ev = pl.DataFrame({"customer_id": ["a"], "timestamp": [AS_OF + dt.timedelta(days=1)], "amount": [5.0]})
    with pytest.raises(DataInsufficientError, match="no purchase in the 730 days before 2025-03-01"):
        OrderValueStats.fit(Histories.from_frames(ev), AS_OF, horizon_days=30)
    with pytest.raises(ConfigError, match="n_cutoffs must be >= 2"):
        ValueConfig(n_cutoffs=1)
    with pytest.raises(ConfigError, match=r"tweedie_variance_power must be in \(1, 2\)"):
        ValueConfig(tweedie_variance_power=2.5)
    with pytest.raises(ModelNotFoundError, match="not fitted"):
        CustomerValueModel().predict(Histories.from_frames(ev), AS_OF)


def test_policy_uses_the_per_customer_conversion_value() -> None:
    from omni_ml.policy import PolicyConfig, decide

    est = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "channel": ["email"] * 3,
            "p_if_contacted": [0.12] * 3,
            "p_if_not": [0.10] * 3,
        }
    )
    consent = pl.DataFrame({"customer_id": ["a", "b", "c"], "consent_email": [True] * 3})
    cfg = PolicyConfig(conversion_value=1.0, channels=("email",), channel_costs={"email": 0.5})
    # uplift 0.02: worth contacting only when a conversion is worth more than 0.5 / 0.02 = 25
    values = pl.DataFrame({"customer_id": ["a", "b"], "conversion_value": [100.0, 10.0]})
    out = decide(est, consent, config=cfg, values=values)
    assert out["best_channel"].to_list() == ["email", "no_contact", "no_contact"]
    assert out["expected_value"][0] == pytest.approx(0.02 * 100.0 - 0.5)
    assert out["score_email"].to_list() == pytest.approx([1.5, -0.3, 0.02 * 1.0 - 0.5])
    assert decide(est, consent, config=cfg).equals(decide(est, consent, config=cfg, values=None))
    with pytest.raises(SchemaError, match=r"negative conversion_value \(e\.g\. 'a': -1\.0\)"):
        decide(est, consent, config=cfg, values=values.with_columns(pl.lit(-1.0).alias("conversion_value")))
    with pytest.raises(SchemaError, match="repeat a customer_id"):
        decide(est, consent, config=cfg, values=pl.concat([values, values]))


def test_campaign_model_values_conversions_per_customer_and_reports_customer_value(small_histories: Histories) -> None:
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.config import from_mapping
    from tests.conftest import CAMPAIGN_TEST_CONFIG

    as_of = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cfg = from_mapping(
        CampaignConfig,
        {
            **CAMPAIGN_TEST_CONFIG,
            "reasons": 0,
            "value_margin": 0.25,
            "value_model": {"n_cutoffs": 3, "n_estimators": 60, "num_leaves": 7},
        },
    )
    model = CampaignModel(cfg).fit(small_histories, "2024-12-01", horizon_days=28)
    assert model.value_model_.horizon_days_ == 28
    scored = model.score(small_histories, as_of, reasons=0)
    direct = model.value_model_.predict(small_histories, as_of)
    joined = scored.select("customer_id", "customer_value").join(direct, on="customer_id", suffix="_direct")
    assert joined.height == scored.height
    assert np.allclose(joined["customer_value"], joined["customer_value_direct"])
    # contacted customers: expected value = uplift x 0.25 x orders per buyer x shrunk order value - cost
    contacted = scored.filter(pl.col("best_channel") != "no_contact")
    assert contacted.height > 0
    worth = model.value_stats_.conversion_value(small_histories, as_of, contacted["customer_id"], margin=0.25)
    cost = contacted["best_channel"].replace_strict(dict(model.policy_.channel_costs), return_dtype=pl.Float64)
    expected = contacted["expected_uplift"] * worth["conversion_value"] - cost
    assert np.allclose(contacted["expected_value"], expected)
    with pytest.raises(ConfigError, match="value_margin must be None or a number >= 0"):
        CampaignConfig(value_margin=-1.0)
