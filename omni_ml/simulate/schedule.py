"""Send times of a campaign applied to a world: ``send_on`` / ``send_hour`` / ``send_time_zone`` to UTC instants.

A campaign file may say when each contact is sent (``send_on``: a date, ``send_hour``: 0-23, both in
``send_time_zone``, UTC when the column is missing or null). Without ``send_on`` a contact is sent on
``end``; without ``send_hour`` at the world's default send time (``DEFAULT_SEND_HOUR`` UTC). Every
instant must fall within the world's future window ``[end, end + future_days)``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import polars as pl

from omni_ml.exceptions import SchemaError
from omni_ml.simulate.config import SimulationConfig
from omni_ml.simulate.rhythm import DEFAULT_SEND_HOUR

__all__ = ["SEND_COLUMNS", "send_instants"]

SEND_COLUMNS = ("send_on", "send_hour", "send_time_zone")


def _bad(campaign: pl.DataFrame, mask: pl.Series, column: str, what: str, hint: str) -> SchemaError:
    bad = campaign.filter(mask)
    example = bad[column][0] if column in bad.columns else None
    msg = (
        f"campaign.{column}: {bad.height:,} of {campaign.height:,} rows {what} "
        f"(e.g. {example!r} for customer {bad['customer_id'][0]!r}). Hint: {hint}"
    )
    return SchemaError(msg)


def send_instants(cfg: SimulationConfig, campaign: pl.DataFrame) -> pl.DataFrame:
    """``customer_id, send_day, send_sec``: day after ``end`` and UTC second of the day of each row's contact.

    Raises
    ------
    SchemaError
        A ``send_hour`` outside 0-23, an unknown time zone, a ``send_on`` that is not a date, or an instant
        outside the future window.
    """
    end = dt.datetime.combine(cfg.end, dt.time(), tzinfo=dt.UTC)
    stop = end + dt.timedelta(days=cfg.future_days)
    if campaign.height == 0:
        return pl.DataFrame(schema={"customer_id": pl.String, "send_day": pl.Int64, "send_sec": pl.Int64})
    frame = campaign.select("customer_id")
    if "send_on" in campaign.columns:
        on = campaign["send_on"]
        if on.dtype == pl.String:
            parsed = on.str.to_date(strict=False)
            failed = parsed.is_null() & on.is_not_null()
            if failed.any():
                raise _bad(campaign, failed, "send_on", "are not dates", "write send_on as YYYY-MM-DD.")
            on = parsed
        elif on.dtype == pl.Datetime:
            on = on.dt.date()
        elif on.dtype != pl.Date:
            msg = f"campaign.send_on: type {on.dtype} is not a date. Hint: write send_on as YYYY-MM-DD."
            raise SchemaError(msg)
        frame = frame.with_columns(on.fill_null(cfg.end).alias("send_on"))
    else:
        frame = frame.with_columns(pl.lit(cfg.end).alias("send_on"))
    zone = campaign["send_time_zone"].cast(pl.String) if "send_time_zone" in campaign.columns else None
    if "send_hour" in campaign.columns:
        hour = campaign["send_hour"].cast(pl.Float64, strict=False)
        out_of_range = hour.is_not_null() & ((hour < 0) | (hour >= 24) | hour.is_nan())
        if out_of_range.any():
            raise _bad(campaign, out_of_range, "send_hour", "are outside 0-23", "send_hour is the hour of the day.")
        given = hour.is_not_null()
    else:
        hour = pl.Series([None] * campaign.height, dtype=pl.Float64)
        given = pl.Series([False] * campaign.height)
    # a row without an hour goes out at the default time in UTC, whatever its zone
    zone_s = (
        pl.Series(["UTC"] * campaign.height)
        if zone is None
        else pl.select(pl.when(given).then(zone.fill_null("UTC")).otherwise(pl.lit("UTC"))).to_series()
    )
    frame = frame.with_columns(
        hour.fill_null(DEFAULT_SEND_HOUR).alias("hour"), zone_s.alias("zone"), pl.int_range(pl.len()).alias("row")
    )
    parts = []
    for name in sorted(frame["zone"].unique().to_list()):
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise _bad(
                campaign.with_columns(zone_s.alias("send_time_zone")),
                zone_s == name,
                "send_time_zone",
                "name an unknown time zone",
                "use an IANA name such as 'Europe/Copenhagen' or 'UTC'.",
            ) from exc
        part = frame.filter(pl.col("zone") == name)
        local = pl.col("send_on").cast(pl.Datetime("us")) + pl.duration(seconds=(pl.col("hour") * 3600).round(0))
        parts.append(
            part.with_columns(
                local.dt.replace_time_zone(name, ambiguous="earliest", non_existent="null")
                .dt.convert_time_zone("UTC")
                .alias("instant")
            )
        )
    done = pl.concat(parts).sort("row")
    instant = done["instant"]
    outside = instant.is_null() | (instant < end) | (instant >= stop)
    if outside.any():
        shown = campaign.with_columns(done["send_on"].alias("send_on"))
        raise _bad(
            shown,
            outside,
            "send_on",
            f"are sent outside the world's future window [{end:%Y-%m-%d %H:%M}, {stop:%Y-%m-%d %H:%M}) UTC",
            "send within the future_days after end (a campaign period of at most future_days days).",
        )
    seconds = done.select((pl.col("instant") - pl.lit(end)).dt.total_seconds()).to_series().to_numpy().astype(np.int64)
    return pl.DataFrame(
        {
            "customer_id": campaign["customer_id"].cast(pl.String),
            "send_day": seconds // 86_400,
            "send_sec": seconds % 86_400,
        }
    )
