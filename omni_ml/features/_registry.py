"""The family registry: a family is a named function ``FamilyContext -> list[Feature]``.

Adding a family takes a few lines::

    import polars as pl
    from omni_ml.features import Feature, count, event, register_family

    @register_family("wishlist")
    def wishlist(ctx):
        return [
            Feature(f"wishlist_adds_{w}d", count(event("wishlist"), window=w),
                    f"Wishlist additions in the last {w} days",
                    f"{{value}} wishlist addition{{s}} in the last {w} days")
            for w in ctx.windows
        ]

and then ``FeatureConfig(families=(..., "wishlist"))`` (or ``families=None`` for every registered family).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from omni_ml.features._spec import FamilyBuilder, FamilyContext, Feature

__all__ = ["FAMILIES", "register_family"]

FAMILIES: dict[str, FamilyBuilder] = {}


def register_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Register ``func`` as the builder of family ``name`` (re-registering a name replaces it).

    Examples
    --------
    >>> from omni_ml.features import Feature, count, event
    >>> @register_family("demo_wishlist")
    ... def _demo(ctx):
    ...     return [Feature("wishlist_adds_7d", count(event("wishlist"), window=7), "Wishlist additions, 7 days")]
    >>> "demo_wishlist" in FAMILIES
    True
    >>> _ = FAMILIES.pop("demo_wishlist")
    """

    def decorator(func: FamilyBuilder) -> FamilyBuilder:
        FAMILIES[name] = func
        return func

    return decorator


def build_family(name: str, ctx: FamilyContext) -> list[Feature]:
    """Run the builder of ``name`` and stamp each feature with its family."""
    return [dataclasses.replace(f, family=name) for f in FAMILIES[name](ctx)]
