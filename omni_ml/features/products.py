"""Product interest: purchases and views per top category, browsing intensity and trend, carts.

Families ``rfm_category``, ``browsing`` and ``cart``. The categories are the most purchased ones
in the data the :class:`~omni_ml.features.FeatureSet` was fitted on (``top_categories``).
"""

from __future__ import annotations

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature, count, days_since_last, event, slug

__all__: list[str] = []

BROWSE = ("visit", "view")


@register_family("rfm_category")
def rfm_category(ctx: FamilyContext) -> list[Feature]:
    """Per top category: purchases and product views per window, days since the last purchase in it."""
    out: list[Feature] = []
    for cat in ctx.categories:
        s = f"cat_{slug(cat)}"
        out.append(
            Feature(
                f"days_since_last_purchase_{s}",
                days_since_last(event("purchase", category=cat)),
                f"Days since the last purchase in category {cat}",
                f"{{value}} day{{s}} since the last {cat} purchase",
                missing=f"never bought {cat}",
            )
        )
        for w in ctx.category_windows:
            out += [
                Feature(
                    f"purchases_{s}_{w}d",
                    count(event("purchase", category=cat), window=w),
                    f"Purchases in category {cat} in the last {w} days",
                    f"{{value}} {cat} purchase{{s}} in the last {w} days",
                ),
                Feature(
                    f"views_{s}_{w}d",
                    count(event("view", category=cat), window=w),
                    f"Product views in category {cat} in the last {w} days",
                    f"{{value}} {cat} product view{{s}} in the last {w} days",
                ),
            ]
    return out


@register_family("browsing")
def browsing(ctx: FamilyContext) -> list[Feature]:
    """Visits and views per window (overall and per browsing channel) and the browsing trend."""
    out: list[Feature] = [
        Feature(
            "days_since_last_visit",
            days_since_last(event(BROWSE)),
            "Days since the last visit or product view",
            "{value} day{s} since the last visit",
            missing="never visited",
        )
    ]
    for w in ctx.windows:
        out += [
            Feature(
                f"visits_{w}d",
                count(event("visit"), window=w),
                f"Visits in the last {w} days",
                f"{{value}} visit{{s}} in the last {w} days",
            ),
            Feature(
                f"views_{w}d",
                count(event("view"), window=w),
                f"Product views in the last {w} days",
                f"{{value}} product view{{s}} in the last {w} days",
            ),
        ]
        for ch in ctx.browse_channels:
            out.append(
                Feature(
                    f"visits_{slug(ch)}_{w}d",
                    count(event("visit", channel=ch), window=w),
                    f"Visits on {ch} in the last {w} days",
                    f"{{value}} {ch} visit{{s}} in the last {w} days",
                )
            )
    for short, long in ctx.trend_pairs:
        n_short, n_long = f"__browse_{short}d", f"__browse_{long}d"
        out += [
            Feature(n_short, count(event(BROWSE), window=short), f"Visits and views, {short} days (helper)"),
            Feature(n_long, count(event(BROWSE), window=long), f"Visits and views, {long} days (helper)"),
            Feature(
                f"browsing_trend_{short}_{long}",
                pl.when(pl.col(n_long) > 0).then(
                    (pl.col(n_short).cast(pl.Float64) / short) / (pl.col(n_long).cast(pl.Float64) / long)
                ),
                f"Daily visits+views in the last {short} days relative to the last {long} days "
                "(>1: browsing more than usual; null without any)",
                f"browsing at {{value}}x the {long}-day pace in the last {short} days",
                fmt=",.1f",
                missing=f"no browsing in the last {long} days",
            ),
        ]
    return out


@register_family("cart")
def cart(ctx: FamilyContext) -> list[Feature]:
    """Cart additions per window, days since the last one, and an open cart (carted, not bought since)."""
    out: list[Feature] = [
        Feature(
            "days_since_last_cart",
            days_since_last(event("cart")),
            "Days since the last add-to-cart",
            "{value} day{s} since the last add-to-cart",
            missing="never added to cart",
        ),
        Feature("__days_since_purchase_cart", days_since_last(event("purchase")), "Days since last purchase (helper)"),
    ]
    for w in ctx.windows:
        out.append(
            Feature(
                f"carts_{w}d",
                count(event("cart"), window=w),
                f"Add-to-cart events in the last {w} days",
                f"{{value}} add-to-cart{{s}} in the last {w} days",
            )
        )
    for w in [w for w in ctx.windows if w <= 30] or [min(ctx.windows)]:
        last_cart, last_buy = pl.col("days_since_last_cart"), pl.col("__days_since_purchase_cart")
        open_cart = (last_cart < w) & (last_buy.is_null() | (last_cart < last_buy))
        out.append(
            Feature(
                f"cart_without_purchase_{w}d",
                open_cart.fill_null(False).cast(pl.Int8),
                f"1 if something was added to cart in the last {w} days and nothing was bought since",
                f"cart left without purchase in the last {w} days (flag {{value}})",
                dtype=pl.Int8,
            )
        )
    return out
