"""Exact truth of timed campaigns: what a send time is worth, and each person's best send time.

Both functions re-simulate the world's history (same seed, so every person's latent state at ``end`` is
the one of ``simulate``) and then run the truth recursion of :mod:`omni_ml.simulate.truth` with each
person's contact on its own day and with its send-time multiplier (:mod:`omni_ml.simulate.rhythm`): no
Monte-Carlo error, so two timing policies can be compared on a small world.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from omni_ml.data import NO_CONTACT
from omni_ml.exceptions import ConfigError
from omni_ml.simulate.config import CHANNELS
from omni_ml.simulate.continuation import _campaign_channels, _campaign_times, load_config
from omni_ml.simulate.engine import run_chunk
from omni_ml.simulate.population import Calendar, CategoryTables, draw_population
from omni_ml.simulate.rhythm import DEFAULT_SEND_HOUR, draw_rhythm, weekday_of_day
from omni_ml.simulate.truth import timed_purchase_probability
from omni_ml.simulate.world import _chunks

__all__ = ["best_send_times", "timed_campaign_value"]


def _window(days: int, future_days: int) -> None:
    if not 1 <= days <= future_days:
        msg = f"days={days} must be within 1..future_days={future_days} of the world. Hint: days=14 (7 + 7)."
        raise ConfigError(msg)


def timed_campaign_value(world_dir: str | Path, plans: Mapping[str, pl.DataFrame], *, days: int = 14) -> pl.DataFrame:
    """P(at least one purchase in ``[end, end + days)``) per customer under each timed campaign.

    Parameters
    ----------
    world_dir
        A directory written by :func:`~omni_ml.simulate.simulate`.
    plans
        Name -> campaign (``customer_id, channel`` and optionally ``send_on, send_hour, send_time_zone``,
        as :func:`~omni_ml.simulate.continue_world` reads them); customers not listed are not contacted.
    days
        Length of the outcome window from ``end`` (it should cover the campaign period plus the
        conversion time, e.g. 7 + 7).

    Returns
    -------
    polars.DataFrame
        ``customer_id, p_none, p_<name>...`` for every customer of the world (``p_none``: no contact).
    """
    world = Path(world_dir)
    cfg = load_config(world)
    _window(days, cfg.future_days)
    parsed = {
        name: (_campaign_channels(cfg, world, plan), *_campaign_times(cfg, world, plan)) for name, plan in plans.items()
    }
    cal = Calendar.build(cfg)
    tables = CategoryTables.build(cfg)
    ids = pl.read_parquet(world / "customers.parquet", columns=["customer_id"])["customer_id"]
    columns: dict[str, list[np.ndarray]] = {"p_none": [], **{f"p_{name}": [] for name in plans}}
    for k, offset, n in _chunks(cfg):
        pop = draw_population(cfg, k, offset, n)
        state = run_chunk(cfg, k, pop, cal, tables).end_state
        rhythm = draw_rhythm(cfg, k, pop)
        none = np.full(n, -1)
        zeros = np.zeros(n, dtype=np.int64)
        columns["p_none"].append(
            timed_purchase_probability(cfg, pop, cal, tables, state, days, none, zeros, np.ones(n, np.float32))
        )
        for name, (channel, send_day, send_sec) in parsed.items():
            ch, day, sec = channel[offset : offset + n], send_day[offset : offset + n], send_sec[offset : offset + n]
            weekday = weekday_of_day(cal.epoch_day + cal.n_history + day)
            m = rhythm.multiplier(np.arange(n), np.maximum(ch, 0), sec, weekday)
            columns[f"p_{name}"].append(timed_purchase_probability(cfg, pop, cal, tables, state, days, ch, day, m))
    return pl.DataFrame({"customer_id": ids, **{c: np.concatenate(v) for c, v in columns.items()}})


def best_send_times(
    world_dir: str | Path, campaign: pl.DataFrame, *, period_days: int = 7, days: int = 14
) -> pl.DataFrame:
    """Each contacted person's truly best send time within the campaign period (the oracle of timing).

    For every day of ``[end, end + period_days)`` the best whole hour is the one nearest the person's best
    hour of the channel (the hour curve is unimodal and symmetric; ``direct_mail`` has none and keeps the
    default hour); the day is the one with the largest exact P(purchase in ``[end, end + days)``) given
    that contact (ties: the earliest).

    Returns
    -------
    polars.DataFrame
        ``customer_id, channel, send_on, send_hour, send_time_zone`` (UTC) for the contacted rows of
        ``campaign``.
    """
    world = Path(world_dir)
    cfg = load_config(world)
    _window(days, cfg.future_days)
    if not 1 <= period_days <= days:
        msg = f"period_days={period_days} must be within 1..days={days}. Hint: period_days=7."
        raise ConfigError(msg)
    channels = _campaign_channels(cfg, world, campaign)
    cal = Calendar.build(cfg)
    tables = CategoryTables.build(cfg)
    best_day: list[np.ndarray] = []
    best_hour: list[np.ndarray] = []
    for k, offset, n in _chunks(cfg):
        pop = draw_population(cfg, k, offset, n)
        state = run_chunk(cfg, k, pop, cal, tables).end_state
        rhythm = draw_rhythm(cfg, k, pop)
        ch = channels[offset : offset + n]
        safe = np.maximum(ch, 0)
        hour = rhythm.best_integer_hour()[np.arange(n), safe]
        hour = np.where(rhythm.flat[safe], int(DEFAULT_SEND_HOUR), hour)
        scores = []
        for d in range(period_days):
            day = np.full(n, d, dtype=np.int64)
            m = rhythm.multiplier(np.arange(n), safe, hour * 3600, weekday_of_day(cal.epoch_day + cal.n_history + d))
            scores.append(timed_purchase_probability(cfg, pop, cal, tables, state, days, ch, day, m))
        best_day.append(np.argmax(np.stack(scores, axis=1), axis=1))
        best_hour.append(hour)
    ids = pl.read_parquet(world / "customers.parquet", columns=["customer_id"])["customer_id"]
    table = pl.DataFrame(
        {
            "customer_id": ids,
            "send_on": [cfg.end + dt.timedelta(days=int(d)) for d in np.concatenate(best_day)],
            "send_hour": np.concatenate(best_hour).astype(np.int64),
        }
    )
    sent = campaign.select(pl.col("customer_id").cast(pl.String), pl.col("channel").cast(pl.String).str.to_lowercase())
    sent = sent.filter(pl.col("channel").is_in(list(CHANNELS)) & (pl.col("channel") != NO_CONTACT))
    return sent.join(table, on="customer_id", how="left").with_columns(pl.lit("UTC").alias("send_time_zone"))
