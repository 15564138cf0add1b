"""Is the customer still active, and are they buying more or less than they used to (family ``lifecycle``).

Buy-till-you-die models (BG/NBD, Pareto/NBD; ``omni_ml.models.btyd``) judge whether a customer is still
"alive" from how long they have been silent *relative to their own rate*: a week of silence means
little for a customer who buys twice a year and much for one who buys weekly. These features give the
booster that comparison directly, parameter-free, for purchases and for any activity:

* ``*_silence_expected``: the customer's own average rate (count / days since the first one) times
  the days since the last one, i.e. how many would have been expected during the current silence.
  Under a Poisson process ``exp(-value)`` is the probability of a silence at least this long.
* ``purchase_days_share``: the share of the customer's purchase span ``t_x / T`` (first to last
  purchase over first purchase to the cutoff); the recency ratio BG/NBD's P(alive) turns on.
* ``purchase_trend_<s>_<l>``: purchases in the last ``s`` days against the ``l``-day rate scaled to
  ``s`` days, ``(n_s + 1) / (n_l * s / l + 1)`` (> 1: buying more than usual; shrunk towards 1 by one
  pseudo-purchase). The browsing trend lives in the ``browsing`` family.

Null when the customer has nothing of the kind before the cutoff (or, for the share, only one day).

Opt-in: :func:`register` adds the family to the registry, and ``FeatureConfig(families=None)`` then builds it
(importing the module registers nothing: the registry is process-wide).
"""

from __future__ import annotations

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature, count, days_since_first, days_since_last, event

__all__ = ["lifecycle", "register"]

_PURCHASE = event("purchase")


def _silence(kind: str, where: pl.Expr | None, what: str) -> list[Feature]:
    n = Feature(f"__{kind}_count_all", count(where), f"{what} ever (helper)")
    first = Feature(f"__{kind}_days_since_first", days_since_first(where), f"Days since the first {what} (helper)")
    last = Feature(f"__{kind}_days_since_last", days_since_last(where), f"Days since the last {what} (helper)")
    rate = pl.col(f"__{kind}_count_all").cast(pl.Float64) / pl.col(f"__{kind}_days_since_first").clip(lower_bound=1.0)
    expected = Feature(
        f"{kind}_silence_expected",
        pl.when(pl.col(f"__{kind}_count_all") > 0).then(rate * pl.col(f"__{kind}_days_since_last")),
        f"{what.capitalize()} expected at the customer's own rate during the days since the last one",
        f"{{value}} {what} expected during the current silence",
        fmt=",.1f",
        missing=f"no {what} yet",
    )
    return [n, first, last, expected]


def lifecycle(ctx: FamilyContext) -> list[Feature]:
    """Silence against the customer's own rate (purchases, any activity), purchase span share, purchase trend."""
    out = _silence("purchase", _PURCHASE, "purchases") + _silence("activity", None, "activities")
    span = pl.col("__purchase_days_since_first") - pl.col("__purchase_days_since_last")
    out.append(
        Feature(
            "purchase_days_share",
            pl.when(pl.col("__purchase_days_since_first") > 0).then(span / pl.col("__purchase_days_since_first")),
            "First-to-last purchase span over first purchase to cutoff (t_x / T; 1: bought just now)",
            "bought over {value} of the time since the first purchase",
            fmt=".0%",
            missing="no purchase before today",
        )
    )
    longest = max(ctx.windows)
    for short in sorted(w for w in ctx.windows if w < longest):
        n_short = Feature(f"__purchases_{short}d_lc", count(_PURCHASE, window=short), "helper")
        n_long = Feature(f"__purchases_{longest}d_lc", count(_PURCHASE, window=longest), "helper")
        ratio = (pl.col(n_short.name).cast(pl.Float64) + 1.0) / (
            pl.col(n_long.name).cast(pl.Float64) * short / longest + 1.0
        )
        out += [
            n_short,
            n_long,
            Feature(
                f"purchase_trend_{short}_{longest}",
                ratio,
                f"Purchases in the last {short} days against the {longest}-day rate (> 1: more than usual)",
                f"{{value}} times the usual purchases in the last {short} days",
                fmt=",.2f",
            ),
        ]
    # one helper per name: the longest window's count is shared by every pair
    seen: set[str] = set()
    unique = []
    for f in out:
        if f.name not in seen:
            seen.add(f.name)
            unique.append(f)
    return unique


def register() -> None:
    """Add the ``lifecycle`` family to the feature registry (every later feature build includes it)."""
    register_family("lifecycle")(lifecycle)
