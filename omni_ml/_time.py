"""Time in one place: user-given moments as UTC, and the two table filters every module uses.

* :func:`as_utc` reads as-of dates and cutoffs (ISO 8601 text, dates or datetimes) as aware UTC datetimes.
* :func:`before` is the rule "known at ``t``": ``timestamp < t``, strictly (a row stamped exactly at the
  cutoff happened at the moment of decision and is not known yet).
* :func:`window` is a half-open period ``start <= timestamp < end`` (or ``start + days``): outcomes after
  a cutoff, a look-back before it.

Outside this module only the feature engine (``omni_ml.features``, one lazy plan over many cutoffs) and
the labels (``omni_ml.labels``, the label window against a ``cutoff`` column) state these comparisons.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from omni_ml.exceptions import ConfigError

__all__ = ["as_utc", "before", "utc_column", "window"]

_Moment = Any  # a datetime (or anything polars compares with a Datetime column) or a polars expression


def as_utc(
    value: str | dt.date | dt.datetime,
    *,
    name: str = "as_of",
    error: type[Exception] = ConfigError,
) -> dt.datetime:
    """``value`` as an aware UTC datetime: naive input is taken as UTC, aware input converted, a date is midnight.

    Text is ISO 8601 (``2025-06-01``, ``2025-06-01 14:05``, ``2025-06-01T14:05:00+01:00``). Text that is
    not raises ``error`` naming the parameter ``name``, the value and the fix.

    Examples
    --------
    >>> as_utc("2025-06-01")
    datetime.datetime(2025, 6, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> as_utc(dt.datetime(2025, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))).hour
    10
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            msg = f"{name}: cannot parse {value!r} as a date. Hint: use ISO 8601, e.g. 2025-06-01."
            raise error(msg) from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utc_column(column: str | pl.Expr, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """A Datetime or Date column of type ``dtype`` as a UTC Datetime, as :func:`as_utc` treats one value.

    An aware column is converted to UTC, a naive one is taken as UTC, a Date is UTC midnight (microseconds).
    The time unit of a Datetime is kept (cast it where the contract's unit is needed).

    Raises
    ------
    TypeError
        ``dtype`` is neither a Datetime nor a Date.

    Examples
    --------
    >>> frame = pl.DataFrame({"d": [dt.date(2025, 1, 2)]})
    >>> frame.select(utc_column("d", frame.schema["d"]))["d"][0]
    datetime.datetime(2025, 1, 2, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """
    expr = pl.col(column) if isinstance(column, str) else column
    if isinstance(dtype, pl.Datetime):
        return expr.dt.convert_time_zone("UTC") if dtype.time_zone else expr.dt.replace_time_zone("UTC")
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    msg = f"utc_column: expected a Datetime or Date column, got {dtype}."
    raise TypeError(msg)


def before(t: _Moment, column: str = "timestamp") -> pl.Expr:
    """Rows known at ``t``: ``column < t`` (strict; ``t`` a datetime or a polars expression such as a cutoff column).

    Examples
    --------
    >>> frame = pl.DataFrame({"timestamp": [dt.datetime(2025, 1, d) for d in (1, 2, 3)]})
    >>> frame.filter(before(dt.datetime(2025, 1, 2)))["timestamp"].dt.day().to_list()
    [1]
    """
    return pl.col(column) < t


def window(
    start: _Moment,
    days: float | None = None,
    *,
    end: _Moment | None = None,
    column: str = "timestamp",
) -> pl.Expr:
    """Rows in the half-open period ``start <= column < end``, with ``end = start + days`` when ``days`` is given.

    Examples
    --------
    >>> frame = pl.DataFrame({"timestamp": [dt.datetime(2025, 1, d) for d in (1, 2, 3, 4)]})
    >>> frame.filter(window(dt.datetime(2025, 1, 2), 2))["timestamp"].dt.day().to_list()
    [2, 3]
    >>> frame.filter(window(dt.datetime(2025, 1, 1), end=dt.datetime(2025, 1, 2)))["timestamp"].dt.day().to_list()
    [1]
    """
    if (days is None) == (end is None):
        msg = "window: give exactly one of days or end."
        raise ValueError(msg)
    stop = end if end is not None else start + dt.timedelta(days=float(days or 0))
    return (pl.col(column) >= start) & before(stop, column)
