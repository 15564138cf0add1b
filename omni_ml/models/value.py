"""Expected customer value over a horizon: a propensity x order-value heuristic and a LightGBM value model.

Two estimates of ``E[revenue in [as_of, as_of + horizon_days)]`` per customer, both point-in-time
(features and order history strictly before ``as_of``) and both working on a plain transaction log
(``customer_id, timestamp, amount``; no channels, contacts or consents needed):

* :class:`OrderValueStats` + :func:`heuristic_value`: ``propensity x orders per buyer x shrunk mean order
  value``. The mean order value of a customer with ``n`` past orders (within ``lookback_days``) is shrunk
  towards the population mean with ``prior_orders`` pseudo-orders, ``(sum + k * m) / (n + k)``, so one
  big or small order does not dominate; ``orders per buyer`` is the mean number of orders of customers
  who bought at least once in a horizon-long window (the last one before ``as_of``). The population
  mean and the ratio are *fitted* once (:meth:`OrderValueStats.fit`), so the value of a customer is a
  function of their own rows only (same answer in any chunk).
* :class:`CustomerValueModel`: LightGBM with a Tweedie objective (revenue is zero for most customers and
  right-skewed for the rest; Tweedie is the usual compound Poisson-Gamma choice) on the same point-in-time
  features as the propensity model (:func:`omni_ml.training.training_set`) and the realised revenue in
  ``[cutoff, cutoff + horizon)`` (:func:`omni_ml.labels.purchase_labels`) at stacked cutoffs. The number
  of trees is chosen by early stopping on the latest cutoff (held-out time), then the model is refitted on
  every cutoff with that number.

The BG/NBD (or Pareto/NBD) + Gamma-Gamma baseline lives in :mod:`omni_ml.models.btyd` (closed form, written
here: ``lifetimes`` has not been released since 2020 and ``pymc-marketing`` needs Python >= 3.12); the
campaign file's ``clv_12m`` column is its 12-month value.

The **value of a conversion** the channel policy needs is the revenue a converting customer brings,
``orders per buyer x shrunk mean order value`` (:meth:`OrderValueStats.conversion_value`), times a margin.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from omni_ml._time import before, window
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, DataInsufficientError, ModelNotFoundError, SchemaError

__all__ = ["CustomerValueModel", "OrderValueStats", "ValueConfig", "heuristic_value"]


def _utc(value: str | dt.date | dt.datetime) -> dt.datetime:
    from omni_ml.training import to_utc

    return to_utc(value)


def _purchases(hist: Histories, start: dt.datetime, end: dt.datetime) -> pl.LazyFrame:
    return hist.events.filter(
        (pl.col("event_type") == "purchase") & window(start, end=end) & pl.col("customer_id").is_not_null()
    ).select("customer_id", pl.col("amount").fill_null(0.0).cast(pl.Float64))


@dataclasses.dataclass(frozen=True)
class OrderValueStats:
    """Fitted population constants of the order-value heuristic (see the module docstring).

    Attributes
    ----------
    as_of
        Fitting moment (orders strictly before it).
    horizon_days
        The horizon ``orders_per_buyer`` refers to.
    lookback_days
        Orders older than this (before the scoring moment) are ignored.
    prior_orders
        Pseudo-orders of the shrinkage towards ``mean_order_value``.
    mean_order_value
        Population mean order value over the lookback.
    orders_per_buyer
        Mean number of orders in a horizon-long window of customers with at least one order in it.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a", "a", "b"], "amount": [10.0, 30.0, 100.0],
    ...     "timestamp": [dt.datetime(2025, 1, 5), dt.datetime(2025, 1, 20), dt.datetime(2025, 1, 25)]})
    >>> s = OrderValueStats.fit(Histories.from_frames(ev), "2025-02-01", horizon_days=30, prior_orders=1.0)
    >>> round(s.mean_order_value, 2), s.orders_per_buyer
    (46.67, 1.5)
    >>> s.customer_stats(Histories.from_frames(ev), "2025-02-01")["order_value"].round(2).to_list()
    [28.89, 73.33]
    """

    as_of: dt.datetime
    horizon_days: int
    lookback_days: int
    prior_orders: float
    mean_order_value: float
    orders_per_buyer: float

    @classmethod
    def fit(
        cls,
        hist: Histories,
        as_of: str | dt.date | dt.datetime,
        *,
        horizon_days: int,
        lookback_days: int = 730,
        prior_orders: float = 2.0,
    ) -> OrderValueStats:
        """Population mean order value and orders per buyer from orders strictly before ``as_of``.

        Raises
        ------
        DataInsufficientError
            No purchase with an amount in the lookback.
        ConfigError
            Non-positive horizon or lookback, negative prior.
        """
        if horizon_days < 1 or lookback_days < 1 or prior_orders < 0:
            msg = (
                f"OrderValueStats: horizon_days and lookback_days must be >= 1 and prior_orders >= 0 "
                f"(got {horizon_days}, {lookback_days}, {prior_orders})."
            )
            raise ConfigError(msg)
        t = _utc(as_of)
        orders = _purchases(hist, t - dt.timedelta(days=lookback_days), t).collect()
        if orders.height == 0:
            msg = (
                f"events: no purchase in the {lookback_days} days before {t:%Y-%m-%d} (0 rows), so no order value "
                "can be estimated. Hint: check the as_of date and that purchases have event_type 'purchase'."
            )
            raise DataInsufficientError(msg)
        recent = _purchases(hist, t - dt.timedelta(days=horizon_days), t).group_by("customer_id").len().collect()
        per_buyer = float(recent["len"].mean()) if recent.height else 1.0  # type: ignore[arg-type]
        return cls(
            as_of=t,
            horizon_days=int(horizon_days),
            lookback_days=int(lookback_days),
            prior_orders=float(prior_orders),
            mean_order_value=float(orders["amount"].mean()),  # type: ignore[arg-type]
            orders_per_buyer=per_buyer,
        )

    def customer_stats(self, hist: Histories, as_of: str | dt.date | dt.datetime) -> pl.DataFrame:
        """``customer_id, n_orders, order_value`` (shrunk mean order value) of customers with orders before ``as_of``.

        Customers without orders are absent; they get ``mean_order_value`` (see :meth:`order_value`).
        """
        t = _utc(as_of)
        k, m = self.prior_orders, self.mean_order_value
        return (
            _purchases(hist, t - dt.timedelta(days=self.lookback_days), t)
            .group_by("customer_id")
            # summed in integer cents: exact, so the value does not depend on row order (chunked scoring)
            .agg(
                pl.len().cast(pl.Int64).alias("n_orders"),
                (pl.col("amount") * 100).round().cast(pl.Int64).sum().alias("__cents"),
            )
            .with_columns(((pl.col("__cents") / 100.0 + k * m) / (pl.col("n_orders") + k)).alias("order_value"))
            .drop("__cents")
            .sort("customer_id")
            .collect()
        )

    def order_value(self, hist: Histories, as_of: str | dt.date | dt.datetime, customers: pl.Series) -> np.ndarray:
        """Shrunk mean order value of each of ``customers`` (population mean without past orders)."""
        stats = self.customer_stats(hist, as_of)
        joined = customers.cast(pl.String).alias("customer_id").to_frame().join(stats, on="customer_id", how="left")
        return joined["order_value"].fill_null(self.mean_order_value).to_numpy().astype(np.float64)

    def conversion_value(
        self, hist: Histories, as_of: str | dt.date | dt.datetime, customers: pl.Series, *, margin: float = 1.0
    ) -> pl.DataFrame:
        """Value of one conversion per customer: ``margin x orders_per_buyer x shrunk order value``.

        Returns ``customer_id, conversion_value`` (the frame :func:`omni_ml.policy.decide` takes as ``values``).
        """
        value = margin * self.orders_per_buyer * self.order_value(hist, as_of, customers)
        return pl.DataFrame({"customer_id": customers.cast(pl.String), "conversion_value": value})


def heuristic_value(
    stats: OrderValueStats, hist: Histories, as_of: str | dt.date | dt.datetime, propensity: pl.DataFrame
) -> pl.DataFrame:
    """Expected value over the horizon = ``propensity x orders_per_buyer x shrunk mean order value``.

    Parameters
    ----------
    stats
        Fitted :class:`OrderValueStats` (its horizon should be the propensity's).
    hist, as_of
        Order history strictly before ``as_of``.
    propensity
        ``customer_id, propensity`` (e.g. the campaign file's columns).

    Returns
    -------
    polars.DataFrame
        ``customer_id, customer_value`` in the order of ``propensity``.
    """
    missing = [c for c in ("customer_id", "propensity") if c not in propensity.columns]
    if missing:
        msg = f"propensity: missing column(s) {missing}; found {propensity.columns}. Hint: customer_id, propensity."
        raise SchemaError(msg)
    aov = stats.order_value(hist, as_of, propensity["customer_id"])
    value = propensity["propensity"].to_numpy().astype(np.float64) * stats.orders_per_buyer * aov
    return pl.DataFrame({"customer_id": propensity["customer_id"].cast(pl.String), "customer_value": value})


@dataclasses.dataclass(frozen=True)
class ValueConfig:
    """Recipe of :class:`CustomerValueModel` (build from YAML with ``omni_ml.config.from_yaml``).

    Parameters
    ----------
    horizon_days
        Value horizon: revenue in ``[as_of, as_of + horizon_days)``.
    every_days, n_cutoffs
        Spacing and number of stacked training cutoffs (all label windows end before ``as_of``).
    tweedie_variance_power
        1 < p < 2: compound Poisson-Gamma (zero-inflated, skewed revenue).
    n_estimators, learning_rate, num_leaves, min_child_samples, early_stopping_rounds, random_state
        LightGBM settings; trees are chosen by early stopping on the latest cutoff.
    features
        A ``FeatureConfig`` (or a mapping of its fields); ``None``: feature defaults.
    """

    horizon_days: int = 90
    every_days: int = 28
    n_cutoffs: int = 6
    tweedie_variance_power: float = 1.3
    n_estimators: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    early_stopping_rounds: int = 30
    random_state: int = 0
    features: Any = None

    def __post_init__(self) -> None:
        problems = []
        if self.horizon_days < 1 or self.every_days < 1:
            problems.append(f"horizon_days and every_days must be >= 1 (got {self.horizon_days}, {self.every_days})")
        if self.n_cutoffs < 2:
            problems.append(f"n_cutoffs must be >= 2 (one is held out for early stopping; got {self.n_cutoffs})")
        if not 1.0 < self.tweedie_variance_power < 2.0:
            problems.append(f"tweedie_variance_power must be in (1, 2) (got {self.tweedie_variance_power})")
        if problems:
            msg = "ValueConfig: " + "; ".join(problems) + "."
            raise ConfigError(msg)


class CustomerValueModel:
    """LightGBM (Tweedie) model of revenue over a horizon from point-in-time features.

    Parameters
    ----------
    config
        :class:`ValueConfig`; defaults when ``None``.

    Attributes
    ----------
    as_of_, horizon_days_, feature_set_, booster_, best_iteration_, feature_names_

    Examples
    --------
    >>> CustomerValueModel().is_fitted
    False
    """

    def __init__(self, config: ValueConfig | None = None) -> None:
        self.config = config or ValueConfig()

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return hasattr(self, "booster_")

    def fit(self, hist: Histories, as_of: str | dt.date | dt.datetime) -> CustomerValueModel:
        """Fit on stacked cutoffs before ``as_of`` (every label window ends at or before ``as_of``).

        Parameters
        ----------
        hist
            Identity-resolved histories (a plain transaction log is enough).
        as_of
            End of the data used.

        Returns
        -------
        CustomerValueModel
            ``self``.

        Raises
        ------
        DataInsufficientError
            No revenue at all in the training windows.
        """
        import lightgbm as lgb

        from omni_ml.labels import purchase_labels
        from omni_ml.training import training_cutoffs, training_set

        cfg = self.config
        t = _utc(as_of)
        feature_cfg = cfg.features
        if isinstance(feature_cfg, dict):
            from omni_ml.config import from_mapping
            from omni_ml.features import FeatureConfig

            feature_cfg = from_mapping(FeatureConfig, feature_cfg, where="ValueConfig.features")
        past = hist.replace(events=hist.events.filter(before(t)))
        cuts = training_cutoffs(t, cfg.horizon_days, every_days=cfg.every_days, n=cfg.n_cutoffs)
        ts = training_set(past, cuts, cfg.horizon_days, config=feature_cfg, as_of=t)
        y = purchase_labels(past, ts.keys, cfg.horizon_days, as_of=t)["revenue"].to_numpy().astype(np.float64)
        if not (y > 0).any():
            msg = (
                f"value model: none of the {len(y):,} training rows has revenue in its {cfg.horizon_days}-day window. "
                "Hint: check purchase amounts, or use a longer history / more cutoffs."
            )
            raise DataInsufficientError(msg)
        X = ts.X.to_numpy().astype(np.float64)
        latest = (ts.keys["cutoff"] == ts.keys["cutoff"].max()).to_numpy()
        params: dict[str, Any] = {
            "objective": "tweedie",
            "tweedie_variance_power": cfg.tweedie_variance_power,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "seed": cfg.random_state,
            "deterministic": True,
            "num_threads": 1,
            "verbose": -1,
        }
        names = list(ts.X.columns)
        best = cfg.n_estimators
        if (~latest).any() and (y[~latest] > 0).any():
            train = lgb.Dataset(X[~latest], y[~latest], feature_name=names, free_raw_data=False)
            valid = lgb.Dataset(X[latest], y[latest], reference=train)
            probe = lgb.train(
                params,
                train,
                num_boost_round=cfg.n_estimators,
                valid_sets=[valid],
                callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
            )
            best = max(1, int(probe.best_iteration or cfg.n_estimators))
        self.booster_ = lgb.train(params, lgb.Dataset(X, y, feature_name=names), num_boost_round=best)
        self.best_iteration_ = best
        self.feature_names_ = names
        self.feature_set_ = ts.feature_set
        self.as_of_ = t
        self.horizon_days_ = cfg.horizon_days
        return self

    def predict_frame(self, X: pl.DataFrame) -> np.ndarray:
        """Expected revenue over the horizon for feature rows ``X`` (columns :attr:`feature_names_`)."""
        if not self.is_fitted:
            msg = "CustomerValueModel is not fitted. Hint: call .fit(hist, as_of) first."
            raise ModelNotFoundError(msg)
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            msg = f"X: missing feature column(s) {missing[:5]} ({len(missing)} in all). Hint: build_features(...)."
            raise SchemaError(msg)
        return np.asarray(self.booster_.predict(X.select(self.feature_names_).to_numpy().astype(np.float64)))

    def predict(self, hist: Histories, as_of: str | dt.date | dt.datetime) -> pl.DataFrame:
        """``customer_id, customer_value``: expected revenue in ``[as_of, as_of + horizon)`` per customer.

        Features see only rows strictly before ``as_of``.
        """
        from omni_ml.features import build_features

        if not self.is_fitted:
            msg = "CustomerValueModel is not fitted. Hint: call .fit(hist, as_of) first."
            raise ModelNotFoundError(msg)
        features = build_features(hist, _utc(as_of), feature_set=self.feature_set_).sort("customer_id")
        return pl.DataFrame(
            {"customer_id": features["customer_id"], "customer_value": self.predict_frame(features)},
            schema={"customer_id": pl.String, "customer_value": pl.Float64},
        )
