"""After-sales signals: returns and customer-service calls (family ``returns_service``)."""

from __future__ import annotations

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature, count, days_since_last, event, total

__all__: list[str] = []


@register_family("returns_service")
def returns_service(ctx: FamilyContext) -> list[Feature]:
    """Returns, returned amount, return rate and service calls per window; days since the last call."""
    w_max = max(ctx.windows)
    out: list[Feature] = [
        Feature(
            "days_since_last_service_call",
            days_since_last(event("service_call")),
            "Days since the last customer-service call",
            "{value} day{s} since the last service call",
            missing="never called customer service",
        ),
        Feature(
            f"return_amount_{w_max}d",
            total("amount", event("return"), window=w_max),
            f"Amount returned in the last {w_max} days",
            f"{{value}} returned in the last {w_max} days",
            fmt=",.2f",
        ),
        Feature(f"__purchases_rs_{w_max}d", count(event("purchase"), window=w_max), "Purchases (helper)"),
    ]
    for w in ctx.windows:
        out += [
            Feature(
                f"returns_{w}d",
                count(event("return"), window=w),
                f"Returns in the last {w} days",
                f"{{value}} return{{s}} in the last {w} days",
            ),
            Feature(
                f"service_calls_{w}d",
                count(event("service_call"), window=w),
                f"Customer-service calls in the last {w} days",
                f"{{value}} service call{{s}} in the last {w} days",
            ),
        ]
    purchases = pl.col(f"__purchases_rs_{w_max}d")
    out.append(
        Feature(
            f"return_rate_{w_max}d",
            pl.when(purchases > 0).then(pl.col(f"returns_{w_max}d").cast(pl.Float64) / purchases),
            f"Returns per purchase in the last {w_max} days (null without purchases)",
            f"{{value}} returns per purchase in the last {w_max} days",
            fmt=".2f",
            missing=f"no purchase in the last {w_max} days",
        )
    )
    return out
