"""The decision rules' history facts as engine features: contact pressure, incidents, recent categories.

:func:`omni_ml.policy.history_facts` is this module's :func:`facts_features` computed by the feature
engine and read back by :func:`facts_frame`. The facts are hidden features (names start with
``__fact_``), so they can join any other feature list in one engine plan (see
:func:`omni_ml.features.build_feature_frames`): scoring reads them in the same pass as the models' inputs.

Windows are the engine's: "within ``N`` days" of a cutoff ``c`` is ``c - N days <= timestamp < c``; days
since the latest matching row are exact to the microsecond.

* ``contacts_7d``, ``contacts_30d``: sent contacts (a logged ``no_contact`` pause is no contact pressure);
* ``days_since_contact``: days since the latest sent contact (null: never);
* ``days_since_incident``: days since the latest event of a service type (null: none);
* ``recent_categories``: the categories with a purchase within ``suppression_days`` (sorted; empty list
  when ``suppression_days`` is 0);
* ``preferred_category``: the category with the most purchases in the last 365 days (ties: the first
  in sort order; null without a categorised purchase).

The categories are a vocabulary of the facts, read from the purchases of the last
``max(365, suppression_days)`` days (:func:`categories_for`): one count per category and window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl

from omni_ml._time import window
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError
from omni_ml.features._spec import Feature, count, days_since_last, event

__all__ = ["FACT_COLUMNS", "FactsSpec", "categories_for", "facts_features", "facts_frame"]

PREFERENCE_DAYS = 365  # preferred_category: the most bought category of the last year
PRESSURE_WINDOWS = (7, 30)
FACT_COLUMNS: tuple[str, ...] = (
    "contacts_7d",
    "contacts_30d",
    "days_since_contact",
    "days_since_incident",
    "recent_categories",
    "preferred_category",
)
_PREFIX = "__fact_"


@dataclasses.dataclass(frozen=True)
class FactsSpec:
    """What the facts depend on: the policy's suppression window, its service event types and the categories.

    Parameters
    ----------
    suppression_days
        ``recent_categories`` window in whole days (0: no category is recent).
    service_event_types
        Event types that count as service incidents.
    categories
        The purchase categories to count (see :func:`categories_for`); sorted and unique here.
    """

    suppression_days: int
    service_event_types: tuple[str, ...]
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        days = self.suppression_days
        if isinstance(days, bool) or not float(days).is_integer() or days < 0:
            msg = (
                f"PolicyConfig.suppression_days must be a whole number of days >= 0 (got {days!r}). "
                "Hint: round it, e.g. suppression_days: 30."
            )
            raise ConfigError(msg)
        object.__setattr__(self, "suppression_days", int(days))
        object.__setattr__(self, "service_event_types", tuple(self.service_event_types))
        object.__setattr__(self, "categories", tuple(sorted(set(self.categories))))

    @property
    def look_back_days(self) -> int:
        """Days of purchases the category facts read."""
        return max(PREFERENCE_DAYS, self.suppression_days)


def _categories(hist: Histories, as_of: dt.datetime, days: int, customers: pl.DataFrame | None) -> tuple[str, ...]:
    rows = hist.events.filter(
        window(as_of - dt.timedelta(days=days), end=as_of)
        & (pl.col("event_type") == "purchase")
        & pl.col("category").is_not_null()
    )
    if customers is not None:
        rows = rows.join(customers.lazy().select("customer_id"), on="customer_id", how="semi")
    found = rows.select(pl.col("category").cast(pl.String).unique()).collect()["category"]
    return tuple(sorted(found.to_list()))


def categories_for(spec: FactsSpec, hist: Histories, as_of: dt.datetime, customers: pl.DataFrame | None) -> FactsSpec:
    """``spec`` with the categories bought by ``customers`` in its look-back before ``as_of``."""
    found = _categories(hist, as_of, spec.look_back_days, customers)
    return dataclasses.replace(spec, categories=found)


def facts_features(spec: FactsSpec) -> list[Feature]:
    """The hidden engine features behind the facts of ``spec`` (read back with :func:`facts_frame`)."""
    out = [
        Feature(
            f"{_PREFIX}contacts_{w}d",
            count(window=w, source="contacts"),
            f"Contacts sent in the last {w} days",
            family="facts",
        )
        for w in PRESSURE_WINDOWS
    ]
    out += [
        Feature(
            f"{_PREFIX}days_since_contact",
            days_since_last(source="contacts"),
            "Days since the last contact",
            family="facts",
        ),
        Feature(
            f"{_PREFIX}days_since_incident",
            days_since_last(event(spec.service_event_types)),
            "Days since the last service incident",
            family="facts",
        ),
    ]
    for i, category in enumerate(spec.categories):
        bought = event("purchase", category=category)
        if spec.suppression_days > 0:
            out.append(
                Feature(
                    f"{_PREFIX}recent_{i}",
                    count(bought, window=spec.suppression_days),
                    f"Purchases in {category} in the last {spec.suppression_days} days",
                    family="facts",
                )
            )
        out.append(
            Feature(
                f"{_PREFIX}preferred_{i}",
                count(bought, window=PREFERENCE_DAYS),
                f"Purchases in {category} in the last {PREFERENCE_DAYS} days",
                family="facts",
            )
        )
    return out


def facts_frame(spec: FactsSpec, computed: pl.DataFrame) -> pl.DataFrame:
    """``customer_id`` and :data:`FACT_COLUMNS` from engine output holding :func:`facts_features` (row order kept)."""
    n = computed.height
    k = len(spec.categories)
    categories = np.asarray(spec.categories, dtype=object)
    recent: list[list[str]] = [[] for _ in range(n)]
    preferred: list[str | None] = [None] * n
    if k:
        if spec.suppression_days > 0:
            bought = np.column_stack([computed[f"{_PREFIX}recent_{i}"].to_numpy() > 0 for i in range(k)])
            recent = [list(categories[row]) for row in bought]  # categories are sorted
        counts = np.column_stack([computed[f"{_PREFIX}preferred_{i}"].to_numpy() for i in range(k)])
        best = counts.argmax(axis=1)  # the first (sorted) category among the most bought
        has = counts.max(axis=1) > 0
        preferred = [str(categories[b]) if h else None for b, h in zip(best, has, strict=True)]
    return pl.DataFrame(
        {
            "customer_id": computed["customer_id"],
            "contacts_7d": computed[f"{_PREFIX}contacts_7d"].cast(pl.Int64),
            "contacts_30d": computed[f"{_PREFIX}contacts_30d"].cast(pl.Int64),
            "days_since_contact": computed[f"{_PREFIX}days_since_contact"].cast(pl.Float64),
            "days_since_incident": computed[f"{_PREFIX}days_since_incident"].cast(pl.Float64),
            "recent_categories": pl.Series(recent, dtype=pl.List(pl.String)),
            "preferred_category": pl.Series(preferred, dtype=pl.String),
        }
    )
