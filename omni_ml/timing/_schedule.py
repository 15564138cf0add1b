"""When in the campaign period: each customer's purchase hazard per day and the best day the contact rules allow."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from omni_ml._time import before
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.policy import PolicyConfig
from omni_ml.timing._profiles import WEEKDAYS, _local_wall

if TYPE_CHECKING:
    from omni_ml.timing import TimingConfig


def purchase_hazard(
    hist: Histories,
    moment: dt.datetime,
    ids: pl.Series,
    events: pl.DataFrame,
    cfg: TimingConfig,
    mean_gap_days: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hazard index per customer and day of the period, the term that dominates it, and the due day."""
    n, p = ids.len(), cfg.period_days
    ts = pl.col("timestamp")
    buys = (
        hist.events.filter(
            before(moment) & (pl.col("event_type") == "purchase") & pl.col("customer_id").is_in(ids.implode())
        )
        .select("customer_id", ts.dt.date().alias("day"))
        .unique()
        .sort("customer_id", "day")
        .group_by("customer_id")
        .agg(
            pl.col("day").diff().dt.total_days().drop_nulls().sum().alias("gap_sum"),
            (pl.len() - 1).alias("n_gaps"),
            pl.col("day").max().alias("last"),
        )
        .collect()
    )
    facts = ids.to_frame().join(buys, on="customer_id", how="left", maintain_order="left")
    k = 2.0  # pseudo-gaps of the population's mean
    gap = (facts["gap_sum"].fill_null(0).to_numpy() + k * mean_gap_days) / (facts["n_gaps"].fill_null(0).to_numpy() + k)
    since = np.array(
        [(moment.date() - d).days if d is not None else np.nan for d in facts["last"].to_list()], dtype=np.float64
    )
    due = gap - since  # days from as_of to the expected next purchase (nan: never bought)
    days = np.arange(p, dtype=np.float64)[None, :]
    # a rising (Weibull) hazard until the next purchase is due, relative to today's; flat once due
    elapsed = np.minimum(since[:, None] + days, gap[:, None])
    start = np.minimum(since[:, None], gap[:, None])
    cycle = np.where(np.isnan(due)[:, None], 1.0, ((elapsed + 1.0) / (start + 1.0)) ** cfg.cycle_weight)
    recent = (
        events.filter((pl.col("event_type") == "visit") & ~before(moment - dt.timedelta(days=3)))
        .group_by("customer_id")
        .len()
    )
    sessions = ids.to_frame().join(recent, on="customer_id", how="left", maintain_order="left")["len"]
    browse = cfg.browsing_weight * sessions.fill_null(0).to_numpy()[:, None] * np.exp(-days / 2.0)
    hazard = cycle * (1.0 + browse)
    driver = np.where(browse[:, :1] > 0.05, "browsing", np.where(cycle[:, -1:] > 1.2, "purchase_cycle", "weekday"))
    return hazard, np.broadcast_to(driver, (n, p)), np.round(due, 1)


def best_allowed_day(
    hist: Histories,
    moment: dt.datetime,
    ids: pl.Series,
    zone: pl.Series,
    send_hour: np.ndarray,
    hazard: np.ndarray,
    affinity: np.ndarray,
    cfg: TimingConfig,
    pol: PolicyConfig,
) -> pl.DataFrame:
    """The best allowed day per customer.

    Columns ``day`` (-1: none allowed), ``allowed_any``, ``first_allowed``, ``local_start``.
    """
    n, p = ids.len(), cfg.period_days
    frame = pl.DataFrame({"customer_id": ids, "time_zone": zone, "send_hour": send_hour.astype(np.int64)})
    frame = frame.with_columns(pl.lit(moment).cast(TIMESTAMP).alias("as_of"), pl.int_range(pl.len()).alias("row"))
    local = _local_wall(frame, "as_of").sort("row")
    start = local["local"].dt.date()
    # send instants per day of the period, in UTC
    grid = local.select("row", "customer_id", "time_zone", "send_hour", start.alias("start")).join(
        pl.DataFrame({"d": np.arange(p, dtype=np.int64)}), how="cross"
    )
    wall = pl.col("start").cast(pl.Datetime("us")) + pl.duration(days=pl.col("d"), hours=pl.col("send_hour"))
    parts = []
    for name in sorted(grid["time_zone"].unique().to_list()):
        part = grid.filter(pl.col("time_zone") == name)
        parts.append(
            part.with_columns(
                wall.dt.replace_time_zone(name, ambiguous="earliest", non_existent="null")
                .dt.convert_time_zone("UTC")
                .alias("instant")
            )
        )
    grid = pl.concat(parts) if parts else grid.with_columns(pl.lit(None, dtype=TIMESTAMP).alias("instant"))
    grid = grid.with_columns(
        pl.col("instant").fill_null(
            (wall + pl.duration(hours=1)).dt.replace_time_zone("UTC")  # a skipped DST hour: the next one
        )
    )
    ok = grid.with_columns((pl.col("instant") >= pl.lit(moment).cast(TIMESTAMP)).alias("ok"))
    if hist.contacts is not None:
        contacts = (
            hist.contacts.filter(before(moment) & pl.col("customer_id").is_in(ids.implode()))
            .select("customer_id", pl.col("timestamp").alias("contact"))
            .collect()
        )
        days_back = (pl.col("instant") - pl.col("contact")).dt.total_seconds() / 86_400.0
        counts = (
            grid.select("row", "d", "customer_id", "instant")
            .join(contacts, on="customer_id", how="inner", maintain_order="left")
            .group_by("row", "d")
            .agg(
                (days_back <= 7).sum().alias("c7"),
                (days_back <= 30).sum().alias("c30"),
                days_back.min().alias("since"),
            )
        )
        ok = ok.join(counts, on=["row", "d"], how="left", maintain_order="left").with_columns(
            (
                pl.col("ok")
                & (pl.col("c7").fill_null(0) < pol.max_contacts_7d)
                & (pl.col("c30").fill_null(0) < pol.max_contacts_30d)
                & (pl.col("since").fill_null(float("inf")) > pol.cooldown_days)
            ).alias("ok")
        )
    allowed = np.zeros((n, p), dtype=bool)
    if n:
        okf = ok.select("row", "d", "ok")
        allowed[okf["row"].to_numpy(), okf["d"].to_numpy()] = okf["ok"].to_numpy()
    # weekday of each day of the period in local time: start's weekday + d
    start_wd = start.dt.weekday().to_numpy().astype(np.int64) - 1 if n else np.zeros(0, dtype=np.int64)
    wd = (start_wd[:, None] + np.arange(p)[None, :]) % WEEKDAYS
    week = np.take_along_axis(affinity, wd, axis=1) if n else np.zeros((0, p))
    discount = cfg.wait_discount ** np.arange(p, dtype=np.float64)[None, :]
    score = np.where(allowed, hazard * week * discount, -np.inf)
    best = np.argmax(score, axis=1) if n else np.zeros(0, dtype=np.int64)
    any_ok = allowed.any(axis=1)
    first = np.where(any_ok, np.argmax(allowed, axis=1), -1)
    return pl.DataFrame(
        {
            "day": np.where(any_ok, best, -1),
            "allowed_any": any_ok,
            "first_allowed": first,
            "local_start": start,
        }
    )
