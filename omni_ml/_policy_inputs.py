"""The inputs of a channel decision as arrays aligned with the customers: estimates, consent, conversion values.

:func:`omni_ml.policy.decide` and :func:`omni_ml.policy.baseline_decisions` read their frames through these
helpers, which check them at the door (a missing column, a repeated customer or pair, a negative value is a
:class:`~omni_ml.exceptions.SchemaError` naming the fix) and return numpy arrays, one row per customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from omni_ml.exceptions import SchemaError

if TYPE_CHECKING:
    from omni_ml.policy import PolicyConfig

__all__ = ["consent_matrix", "conversion_values", "wide_estimates"]


def wide_estimates(
    estimates: pl.DataFrame, channels: Sequence[str], cfg: PolicyConfig
) -> tuple[pl.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Long estimates -> (customer ids, uplift (n, k), cost (n, k), available (n, k))."""
    need = {"customer_id", "channel", "p_if_contacted", "p_if_not"}
    missing = sorted(need - set(estimates.columns))
    if missing:
        msg = (
            f"estimates: missing column(s) {missing}; found {estimates.columns}. Hint: pass the long frame of "
            "ChannelModel.predict_effects (customer_id, channel, p_if_contacted, p_if_not[, cost])."
        )
        raise SchemaError(msg)
    est = estimates.filter(pl.col("channel").is_in(list(channels)))
    dup = est.select("customer_id", "channel").is_duplicated()
    if dup.any():
        example = est.filter(dup).row(0, named=True)
        msg = (
            f"estimates: {int(dup.sum()):,} rows repeat a (customer_id, channel) pair "
            f"(e.g. {example['customer_id']!r}, {example['channel']!r}). Hint: one row per customer and channel."
        )
        raise SchemaError(msg)
    # a null or NaN cost is a missing cost: the configured one applies (NaN would otherwise win argmax)
    cost_expr = pl.col("cost") if "cost" in est.columns else pl.lit(None, dtype=pl.Float64)
    default_cost = pl.col("channel").replace_strict(
        {c: cfg.cost(c) for c in channels}, default=0.0, return_dtype=pl.Float64
    )
    est = est.with_columns(
        (pl.col("p_if_contacted") - pl.col("p_if_not")).cast(pl.Float64).alias("__uplift"),
        pl.coalesce(cost_expr.cast(pl.Float64).fill_nan(None), default_cost).alias("__cost"),
    )
    ids = est.select(pl.col("customer_id").unique().sort())["customer_id"]
    index = {c: i for i, c in enumerate(channels)}
    row = ids.to_frame().with_row_index("__i").join(est, on="customer_id")
    i = row["__i"].to_numpy()
    j = row["channel"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
    shape = (ids.len(), len(channels))
    uplift = np.zeros(shape)
    cost = np.zeros(shape)
    available = np.zeros(shape, dtype=bool)
    uplift[i, j] = row["__uplift"].fill_null(np.nan).to_numpy()
    cost[i, j] = row["__cost"].to_numpy()
    available[i, j] = ~np.isnan(uplift[i, j])
    return ids, np.nan_to_num(uplift), cost, available


def consent_matrix(consent: pl.DataFrame, ids: pl.Series, channels: Sequence[str], default: bool) -> np.ndarray:
    """Consent (n, k) of each id on each channel; ``default`` for a customer or channel without a column or value."""
    cols = [f"consent_{c}" for c in channels]
    present = [c for c in cols if c in consent.columns]
    if "customer_id" not in consent.columns:
        msg = f"consent: missing column 'customer_id'; found {consent.columns}. Hint: pass consent_state(hist, as_of)."
        raise SchemaError(msg)
    if consent.select("customer_id").is_duplicated().any():
        msg = "consent: a customer_id appears more than once. Hint: pass consent_state(hist, as_of) at one moment."
        raise SchemaError(msg)
    joined = ids.to_frame().join(consent.select("customer_id", *present), on="customer_id", how="left")
    out = np.full((ids.len(), len(channels)), default, dtype=bool)
    for j, col in enumerate(cols):
        if col in present:
            out[:, j] = joined[col].fill_null(default).to_numpy()
    return out


def conversion_values(values: pl.DataFrame | None, ids: pl.Series, default: float) -> np.ndarray:
    """Per-customer value of a conversion aligned with ``ids`` (``default`` for customers not listed)."""
    if values is None:
        return np.full(ids.len(), float(default))
    missing = [c for c in ("customer_id", "conversion_value") if c not in values.columns]
    if missing:
        msg = f"values: missing column(s) {missing}; found {values.columns}. Hint: customer_id, conversion_value."
        raise SchemaError(msg)
    dup = values["customer_id"].is_duplicated()
    if dup.any():
        msg = (
            f"values: {int(dup.sum()):,} rows repeat a customer_id (e.g. {values.filter(dup)['customer_id'][0]!r}). "
            "Hint: one conversion value per customer."
        )
        raise SchemaError(msg)
    bad = values.filter(
        pl.col("conversion_value").is_null() | pl.col("conversion_value").is_nan() | (pl.col("conversion_value") < 0)
    )
    if bad.height:
        example = bad.row(0, named=True)
        msg = (
            f"values: {bad.height:,} of {values.height:,} rows have a missing, NaN or negative conversion_value "
            f"(e.g. {example['customer_id']!r}: {example['conversion_value']}). Hint: values must be >= 0."
        )
        raise SchemaError(msg)
    joined = ids.to_frame().join(
        values.select(pl.col("customer_id").cast(pl.String), pl.col("conversion_value").cast(pl.Float64)),
        on="customer_id",
        how="left",
        maintain_order="left",
    )
    return joined["conversion_value"].fill_null(float(default)).to_numpy()
