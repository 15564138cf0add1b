"""Recency, frequency and monetary value: overall, per channel; inter-purchase time; tenure.

Families ``rfm``, ``rfm_channel``, ``interpurchase`` and ``tenure``. Counts are 0 and days-since
features null for a customer with no such event before the cutoff.
"""

from __future__ import annotations

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature, count, days_since_first, days_since_last, event, slug, total

__all__: list[str] = []

PURCHASE = event("purchase")


def _days(value: str) -> str:
    return f"{{value}} day{{s}} since {value}"


@register_family("rfm")
def rfm(ctx: FamilyContext) -> list[Feature]:
    """Purchases, revenue and average order value per window; days since the last purchase and event."""
    out = [
        Feature(
            "days_since_last_purchase",
            days_since_last(PURCHASE),
            "Days since the last purchase",
            _days("the last purchase"),
            fmt=",.0f",
            missing="no purchase yet",
        ),
        Feature(
            "days_since_last_event",
            days_since_last(),
            "Days since the last recorded activity of any kind",
            _days("the last activity"),
            missing="no activity yet",
        ),
        Feature("purchases_total", count(PURCHASE), "Purchases ever", "{value} purchase{s} in total"),
        Feature("revenue_total", total("amount", PURCHASE), "Revenue ever", "{value} spent in total", fmt=",.2f"),
    ]
    for w in ctx.windows:
        out += [
            Feature(
                f"purchases_{w}d",
                count(PURCHASE, window=w),
                f"Purchases in the last {w} days",
                f"{{value}} purchase{{s}} in the last {w} days",
            ),
            Feature(
                f"revenue_{w}d",
                total("amount", PURCHASE, window=w),
                f"Revenue in the last {w} days",
                f"{{value}} spent in the last {w} days",
                fmt=",.2f",
            ),
        ]
    w = max(ctx.windows)
    out.append(
        Feature(
            f"avg_order_value_{w}d",
            pl.when(pl.col(f"purchases_{w}d") > 0).then(pl.col(f"revenue_{w}d") / pl.col(f"purchases_{w}d")),
            f"Average order value over the last {w} days (null without purchases)",
            f"average order of {{value}} over the last {w} days",
            fmt=",.2f",
            missing=f"no purchase in the last {w} days",
        )
    )
    return out


@register_family("rfm_channel")
def rfm_channel(ctx: FamilyContext) -> list[Feature]:
    """Per purchase channel: purchases and revenue per window, days since the last purchase there."""
    out: list[Feature] = []
    for ch in ctx.purchase_channels:
        s = slug(ch)
        where = event("purchase", channel=ch)
        out.append(
            Feature(
                f"days_since_last_purchase_{s}",
                days_since_last(where),
                f"Days since the last purchase on {ch}",
                _days(f"the last {ch} purchase"),
                missing=f"no {ch} purchase yet",
            )
        )
        for w in ctx.windows:
            out += [
                Feature(
                    f"purchases_{s}_{w}d",
                    count(where, window=w),
                    f"Purchases on {ch} in the last {w} days",
                    f"{{value}} {ch} purchase{{s}} in the last {w} days",
                ),
                Feature(
                    f"revenue_{s}_{w}d",
                    total("amount", where, window=w),
                    f"Revenue on {ch} in the last {w} days",
                    f"{{value}} spent on {ch} in the last {w} days",
                    fmt=",.2f",
                ),
            ]
    return out


@register_family("interpurchase")
def interpurchase(ctx: FamilyContext) -> list[Feature]:
    """Mean days between purchases and how overdue the next one is (needs 2+ purchases)."""
    first = Feature(
        "days_since_first_purchase",
        days_since_first(PURCHASE),
        "Days since the first purchase",
        _days("the first purchase"),
        missing="no purchase yet",
    )
    n = Feature("__purchases_all", count(PURCHASE), "Purchases ever (helper)", "{value} purchases")
    last = Feature("__days_since_last_purchase", days_since_last(PURCHASE), "Days since last purchase (helper)")
    gap = (pl.col("days_since_first_purchase") - pl.col("__days_since_last_purchase")) / (
        pl.col("__purchases_all").cast(pl.Float64) - 1.0
    )
    mean_gap = Feature(
        "interpurchase_days",
        pl.when(pl.col("__purchases_all") >= 2).then(gap),
        "Mean days between consecutive purchases (null with fewer than 2 purchases)",
        "buys every {value} day{s} on average",
        fmt=",.1f",
        missing="fewer than 2 purchases",
    )
    overdue = Feature(
        "purchase_overdue_ratio",
        pl.when(pl.col("interpurchase_days") > 0).then(
            pl.col("__days_since_last_purchase") / pl.col("interpurchase_days")
        ),
        "Days since the last purchase divided by the mean inter-purchase time (>1: overdue)",
        "{value} times the usual gap since the last purchase",
        fmt=",.1f",
        missing="no usual purchase rhythm yet",
    )
    return [first, n, last, mean_gap, overdue]


@register_family("tenure")
def tenure(ctx: FamilyContext) -> list[Feature]:
    """Days since the customer's first recorded activity."""
    return [
        Feature(
            "tenure_days",
            days_since_first(),
            "Days since the first recorded activity (tenure)",
            "customer for {value} day{s}",
            missing="no activity yet",
        )
    ]
