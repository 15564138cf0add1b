"""Where in the year the cutoff falls (family ``time_of_year``): the seasonality every customer shares.

Purchases rise and fall with the calendar (a December peak, a January lull) for everyone at once. A
model trained on stacked cutoffs sees each cutoff's season only through these features; without them
it averages the seasons of its training cutoffs and its calibration inherits the season of the latest
(held-out) cutoff, so a model scored in January but calibrated on December's label window
over-predicts. With them, a training set that spans a year or more holds cutoffs from the same time of
year one year earlier, and the booster learns the seasonal level from those.

Three features, all functions of the cutoff only (the same value for every customer at a cutoff; no
event is read, so nothing at or after the cutoff can leak in):

* ``cutoff_day_of_year``: 1 (1 January) to 366, the readable one;
* ``cutoff_season_sin`` / ``cutoff_season_cos``: the first Fourier pair of the day of the year,
  ``sin(2 pi d / 365.25)`` and ``cos(2 pi d / 365.25)``, which has no jump between 31 December and
  1 January (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., 2021,
  section 7.4, "Fourier series").

The day of the year is taken in UTC, the time zone of every cutoff.
"""

from __future__ import annotations

import math

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature

__all__: list[str] = []

#: Days per year of the Fourier terms (leap years averaged in).
YEAR_DAYS = 365.25


def _day_of_year() -> pl.Expr:
    # Derived features are evaluated on the engine's frame, which holds each row's `cutoff`.
    return pl.col("cutoff").dt.ordinal_day()


@register_family("time_of_year")
def time_of_year(ctx: FamilyContext) -> list[Feature]:
    """Day of the year of the cutoff, and its first Fourier pair (sine and cosine)."""
    angle = _day_of_year().cast(pl.Float64) * (2.0 * math.pi / YEAR_DAYS)
    return [
        Feature(
            "cutoff_day_of_year",
            _day_of_year(),
            "Day of the year of the cutoff (1 = 1 January)",
            "day {value} of the year",
            dtype=pl.Int32,
        ),
        Feature(
            "cutoff_season_sin",
            angle.sin(),
            "Sine of the cutoff's day of the year (seasonal position, first Fourier term)",
            "seasonal position (sine) {value}",
            fmt=".2f",
        ),
        Feature(
            "cutoff_season_cos",
            angle.cos(),
            "Cosine of the cutoff's day of the year (seasonal position, first Fourier term)",
            "seasonal position (cosine) {value}",
            fmt=".2f",
        ),
    ]
