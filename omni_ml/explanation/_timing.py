"""The timing reason in words: why this hour, this weekday and this day of the campaign period.

:func:`timing_reasons` turns the evidence columns of :meth:`omni_ml.timing.SendTimeModel.recommend` into
one sentence per row, e.g. ``"usually opens e-mail on Tuesday evenings (23 engagements); sent Friday:
usually buys every 31 days, next purchase due in 6 days"``.
"""

from __future__ import annotations

import polars as pl

__all__ = ["daypart", "timing_reasons"]

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_VERBS = {
    "email": "opens e-mail",
    "push": "opens push messages",
    "sms": "reads text messages",
    "direct_mail": "engages",
    "call_center": "takes calls",
}


def daypart(hour: int) -> str:
    """The part of the day of an hour (0-23), in plural for "on Tuesday evenings".

    Examples
    --------
    >>> daypart(7), daypart(12), daypart(15), daypart(20), daypart(2)
    ('mornings', 'lunchtimes', 'afternoons', 'evenings', 'nights')
    """
    if 5 <= hour <= 10:
        return "mornings"
    if 11 <= hour <= 13:
        return "lunchtimes"
    if 14 <= hour <= 17:
        return "afternoons"
    if 18 <= hour <= 22:
        return "evenings"
    return "nights"


def _when(weekday: int, hour: int, zone: str) -> str:
    clock = f"{hour:02d}:00 {zone}"
    return f"{WEEKDAY_NAMES[weekday - 1]} {daypart(hour)} (around {clock})"


def _one(row: dict[str, object]) -> str | None:
    channel = row.get("best_channel")
    weekday, hour, zone = row["send_weekday"], row["send_hour"], row["send_time_zone"]
    if weekday is None or hour is None:
        return None
    when = _when(int(weekday), int(hour), str(zone or "UTC"))  # type: ignore[call-overload]
    source = row["send_time_source"]
    events = float(row["send_time_events"] or 0.0)  # type: ignore[arg-type]
    if source == "own":
        verb = _VERBS.get(str(channel), "engages") if channel not in (None, "no_contact") else "engages"
        first = f"usually {verb} on {when} ({events:.0f} engagements)"
    elif source == "segment":
        first = f"little own history: customers like them ({row['send_time_segment']}) engage on {when}"
    else:
        first = f"no engagement yet: the best time of all customers, {when}"
    send_on = row.get("send_on")
    driver = row.get("send_on_driver")
    if send_on is None or driver is None:
        if row.get("send_time_rule") == "no_allowed_day":
            return first + "; no day of the campaign period passes the contact-pressure and cool-down rules"
        return first
    day = f"{WEEKDAY_NAMES[send_on.weekday()]} {send_on:%Y-%m-%d}"  # type: ignore[attr-defined]
    if driver == "browsing":
        second = f"sent {day}: browsing right now"
    elif driver == "purchase_cycle":
        due = row.get("days_to_next_purchase")
        second = f"sent {day}: next purchase due in about {float(due):.0f} days"  # type: ignore[arg-type]
    elif driver == "earliest_allowed":
        second = f"sent {day}: the first day after the cool-down and contact-pressure limits"
    else:
        second = f"sent {day}: their best weekday in the campaign period"
    return f"{first}; {second}"


def timing_reasons(recommendations: pl.DataFrame, channels: pl.Series | None = None) -> pl.Series:
    """One sentence per row of :meth:`~omni_ml.timing.SendTimeModel.recommend` (null without a time).

    Parameters
    ----------
    recommendations
        The output of ``recommend`` (``send_weekday, send_hour, send_time_zone, send_on, send_time_rule,
        send_time_source, send_time_events, send_time_segment, send_on_driver, days_to_next_purchase``).
    channels
        The chosen channel per row (``best_channel``), for the verb ("opens e-mail"); optional.

    Returns
    -------
    polars.Series
        ``send_time_reason`` (String).

    Examples
    --------
    >>> import datetime as dt
    >>> rec = pl.DataFrame({"send_weekday": [2], "send_hour": [19], "send_time_zone": ["UTC"],
    ...     "send_on": [dt.date(2025, 1, 7)], "send_time_rule": ["best_time"], "send_time_source": ["own"],
    ...     "send_time_events": [23.0], "send_time_segment": [None], "send_on_driver": ["weekday"],
    ...     "days_to_next_purchase": [None]}, schema_overrides={"send_time_segment": pl.String,
    ...     "send_on_driver": pl.String, "days_to_next_purchase": pl.Float64})
    >>> for part in timing_reasons(rec, pl.Series(["email"]))[0].split("; "):
    ...     print(part)
    usually opens e-mail on Tuesday evenings (around 19:00 UTC) (23 engagements)
    sent Tuesday 2025-01-07: their best weekday in the campaign period
    """
    frame = recommendations
    if channels is not None:
        frame = frame.with_columns(channels.alias("best_channel"))
    texts = [_one(row) for row in frame.iter_rows(named=True)]
    return pl.Series("send_time_reason", texts, dtype=pl.String)
