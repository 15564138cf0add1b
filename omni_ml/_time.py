"""One reading of user-given moments (as-of dates, cutoffs): ISO 8601 text, dates or datetimes, as UTC."""

from __future__ import annotations

import datetime as dt

from omni_ml.exceptions import ConfigError

__all__ = ["as_utc"]


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
