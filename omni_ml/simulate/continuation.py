"""Continue a simulated world: a campaign sent at its end (the future window) or histories extended by days."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omni_ml.config import from_mapping
from omni_ml.data import NO_CONTACT
from omni_ml.exceptions import ConfigError, ConsentError, SchemaError
from omni_ml.simulate.columns import to_polars
from omni_ml.simulate.config import CHANNELS, SimulationConfig
from omni_ml.simulate.engine import run_chunk
from omni_ml.simulate.events import DAY_US, expand
from omni_ml.simulate.identifiers import (
    consents_table,
    contacts_table,
    events_table,
    identity_truth,
    links_frame,
)
from omni_ml.simulate.population import Calendar, CategoryTables, draw_population
from omni_ml.simulate.rhythm import DEFAULT_SEND_HOUR
from omni_ml.simulate.schedule import send_instants
from omni_ml.simulate.world import _FUTURE_REGIME, CONVERSION_DAYS, _chunks, _route, _send_time_truth, _truth

__all__ = ["continue_histories", "continue_world", "load_config"]


def load_config(world_dir: str | Path) -> SimulationConfig:
    """The :class:`SimulationConfig` a world directory was simulated with (from ``truth/world.json``)."""
    path = Path(world_dir) / "truth" / "world.json"
    if not path.is_file():
        msg = f"{str(path)!r} does not exist. Hint: continue_world needs a directory written by simulate()."
        raise ConfigError(msg)
    data: dict[str, Any] = json.loads(path.read_text())
    return from_mapping(SimulationConfig, data["config"], where=str(path))


def _campaign_channels(
    cfg: SimulationConfig, world: Path, campaign: pl.DataFrame, at: dt.date | None = None
) -> np.ndarray:
    """Channel index per global person (-1: no contact), after checking the table and consent at ``at`` (``end``)."""
    missing = [c for c in ("customer_id", "channel") if c not in campaign.columns]
    if missing:
        msg = f"campaign: missing column(s) {missing}; found {campaign.columns}. Hint: pass (customer_id, channel)."
        raise SchemaError(msg)
    camp = campaign.select(pl.col("customer_id").cast(pl.String), pl.col("channel").cast(pl.String).str.to_lowercase())
    allowed = [*CHANNELS, NO_CONTACT]
    bad = camp.filter(~pl.col("channel").is_in(allowed) | pl.col("channel").is_null())
    if bad.height:
        msg = (
            f"campaign.channel: {bad.height:,} of {camp.height:,} rows are not a contactable channel "
            f"(e.g. {bad['channel'][0]!r}). Hint: use one of {allowed}."
        )
        raise SchemaError(msg)
    dup = camp.filter(pl.col("customer_id").is_duplicated())
    if dup.height:
        msg = (
            f"campaign.customer_id: {dup.height:,} of {camp.height:,} rows repeat a customer "
            f"(e.g. {dup['customer_id'][0]!r}). Hint: one channel (or no_contact) per customer."
        )
        raise SchemaError(msg)
    known = pl.read_parquet(world / "customers.parquet", columns=["customer_id"]).with_row_index("gid")
    joined = camp.join(known, on="customer_id", how="left")
    unknown = joined.filter(pl.col("gid").is_null())
    if unknown.height:
        msg = (
            f"campaign.customer_id: {unknown.height:,} of {camp.height:,} rows are not customers of this world "
            f"(e.g. {unknown['customer_id'][0]!r}). Hint: use ids from customers.parquet."
        )
        raise SchemaError(msg)
    send = joined.filter(pl.col("channel") != NO_CONTACT)
    moment = cfg.end if at is None else at
    end = pl.lit(moment).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    state = (
        pl.scan_parquet(world / "consents.parquet")
        .filter(pl.col("timestamp") < end)
        .sort(["timestamp", "granted"], descending=[False, True], maintain_order=True)  # same instant: withdrawn wins
        .group_by("customer_id", "channel")
        .agg(pl.col("granted").last())
        .collect()
    )
    checked = send.join(state, on=["customer_id", "channel"], how="left")
    refused = checked.filter(~pl.col("granted").fill_null(False))
    if refused.height:
        msg = (
            f"campaign: {refused.height:,} of {send.height:,} contacts are on a channel without consent at end="
            f"{moment} (e.g. {refused['customer_id'][0]!r} on {refused['channel'][0]!r}). "
            "Hint: apply the consent mask (omni_ml.policy) before continuing the world."
        )
        raise ConsentError(msg)
    channels = np.full(cfg.n_customers, -1, dtype=np.int64)
    code = send["channel"].replace_strict(list(CHANNELS), list(range(len(CHANNELS))), return_dtype=pl.Int64)
    channels[send["gid"].to_numpy()] = code.to_numpy()
    return channels


def _campaign_times(cfg: SimulationConfig, world: Path, campaign: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Send day after ``end`` and UTC second of the day per global person (see :mod:`.schedule`)."""
    sent = campaign.filter(pl.col("channel").cast(pl.String).str.to_lowercase() != NO_CONTACT)
    times = send_instants(cfg, sent.with_columns(pl.col("customer_id").cast(pl.String)))
    known = pl.read_parquet(world / "customers.parquet", columns=["customer_id"]).with_row_index("gid")
    joined = times.join(known, on="customer_id", how="inner")
    day = np.zeros(cfg.n_customers, dtype=np.int64)
    sec = np.full(cfg.n_customers, int(DEFAULT_SEND_HOUR * 3600), dtype=np.int64)
    gid = joined["gid"].to_numpy()
    day[gid] = joined["send_day"].to_numpy()
    sec[gid] = joined["send_sec"].to_numpy()
    return day, sec


def continue_world(
    world_dir: str | Path,
    campaign: pl.DataFrame,
    out_dir: str | Path | None = None,
    *,
    campaign_id: str = "continued",
) -> pl.DataFrame:
    """The future window of an existing world with a campaign sent at ``end``.

    The world is re-simulated from its config (same seed: the history and every person's state at
    ``end`` are identical); contacts are sent (``assignment_probability`` 1) to the listed customers on
    their channel at their send time: ``send_on`` (a date) at ``send_hour`` (0-23) in ``send_time_zone``
    (UTC when missing) when the campaign has those columns (the campaign file's ``send_*`` columns), else
    on ``end`` at the world's default send time, 09:00 UTC. A contact's effect depends on its send time
    (:mod:`omni_ml.simulate.rhythm`); a contact due after ``end`` is sent only if the customer is still
    consented to its channel that day. The future then unfolds with
    common random numbers, so with an all-``no_contact`` campaign the result equals
    ``truth/future_events.parquet``, and a campaign changes outcomes only through its effects.

    Parameters
    ----------
    world_dir
        A directory written by :func:`simulate`.
    campaign
        ``customer_id`` and ``channel`` (a contactable channel or ``"no_contact"``), optionally
        ``send_on``, ``send_hour``, ``send_time_zone``; customers not listed are not contacted.
    out_dir
        When given, ``future_events.parquet`` and ``contacts.parquet`` (the contacts sent) are written here.
    campaign_id
        ``campaign_id`` of the contacts sent and of their opens, clicks and unsubscribes.

    Returns
    -------
    polars.DataFrame
        Events of ``[end, end + future_days)`` in the events schema, every row with its true customer_id.

    Raises
    ------
    SchemaError
        Missing columns, unknown channels or customers, a customer listed twice, a send time outside the
        future window, an hour outside 0-23 or an unknown time zone.
    ConsentError
        A contact on a channel the customer has not consented to at ``end``.
    """
    world = Path(world_dir)
    cfg = load_config(world)
    channels = _campaign_channels(cfg, world, campaign)
    send_day, send_sec = _campaign_times(cfg, world, campaign)
    cal = Calendar.build(cfg)
    tables = CategoryTables.build(cfg)
    events: list[pl.DataFrame] = []
    sent: list[pl.DataFrame] = []
    for k, offset, n in _chunks(cfg):
        pop = draw_population(cfg, k, offset, n)
        rec = run_chunk(
            cfg,
            k,
            pop,
            cal,
            tables,
            campaign=channels[offset : offset + n],
            send_day=send_day[offset : offset + n],
            send_sec=send_sec[offset : offset + n],
        )
        _hist, future = _route(cfg, cal, expand(cfg, k, pop, cal, rec, 0), expand(cfg, k, pop, cal, rec, 1))
        fut, _seen = events_table(cfg, k, pop, cal, future, period=1, campaign_name=campaign_id, with_customer_id=True)
        events.append(to_polars(fut))
        sent.append(to_polars(contacts_table(cfg, pop, cal, rec.contacts, cal.n_history, cal.n_total, campaign_id)))
    result = pl.concat(events)
    if out_dir is not None:
        target = Path(out_dir)
        target.mkdir(parents=True, exist_ok=True)
        result.write_parquet(target / "future_events.parquet", compression="zstd")
        pl.concat(sent).write_parquet(target / "contacts.parquet", compression="zstd")
    return result


_TABLES = ("events", "contacts", "consents", "identity_links", "customers")


def _continuation(world: Path, cfg: SimulationConfig) -> tuple[int, list[dict[str, Any]]]:
    """The world's current end (day index from ``start``) and the campaigns applied since the simulated end."""
    data: dict[str, Any] = json.loads((world / "truth" / "world.json").read_text())
    meta = data.get("continuation") or {}
    return int(meta.get("end_day", cfg.history_days)), list(meta.get("campaigns", []))


def _campaign_frame(campaign: pl.DataFrame) -> pl.DataFrame:
    """``customer_id, channel, assignment_probability`` of a campaign file (``best_channel``) or action table."""
    if "channel" not in campaign.columns and "best_channel" in campaign.columns:
        campaign = campaign.rename({"best_channel": "channel"})
    if "assignment_probability" not in campaign.columns:
        campaign = campaign.with_columns(pl.lit(1.0).alias("assignment_probability"))
    return campaign.select(
        pl.col("customer_id").cast(pl.String),
        pl.col("channel").cast(pl.String).str.to_lowercase(),
        pl.col("assignment_probability").cast(pl.Float64),
    )


def _read_table(world: Path, name: str) -> pl.DataFrame | None:
    path = world / f"{name}.parquet"
    return pl.read_parquet(path) if path.exists() else None


def continue_histories(
    world_dir: str | Path,
    campaign: pl.DataFrame,
    days: int,
    out_dir: str | Path,
) -> Path:
    """A complete histories directory ending ``days`` after the world's end, with the campaign sent at its end.

    The world (a directory written by :func:`simulate`, or by this function: worlds continue cycle after
    cycle) is re-simulated from its config with every campaign applied so far, each on its own day, and the
    new one at the current end (timestamp 00:00 UTC, ``campaign_id`` ``cmp-YYYYMMDD`` of that day, each
    contact's ``assignment_probability`` from ``campaign``). ``out_dir`` then holds:

    * every table of the world as it is (rows added to it, e.g. by ``omni-ml feedback``, are kept), plus
      the rows of ``[end, end + days)``: the campaign's contacts, opens, clicks and unsubscribes, purchases,
      returns, browsing, consent changes and new identity links (the simulated population signs up before
      the original end, so no new customers appear);
    * ``truth/`` for the new end: ``propensity``, ``channel_response`` and ``future_events`` (no outbound
      contacts in ``[end + days, end + days + future_days)``), ``identity`` (grown by the identifiers seen
      since), ``world.json`` (the original config plus the continuation: new end, campaigns and their days)
      and ``campaigns/`` (the actions applied, to replay them in the next continuation).

    The window's rows are cut from the same draws as the world's ``truth/future_events`` (common random
    numbers), so with an all-``no_contact`` campaign and ``days <= future_days`` they are exactly the
    future events of ``[end, end + days)`` (only which rows carry an identifier instead of a customer_id is
    drawn anew). The output is written to a temporary directory next to ``out_dir`` and renamed when complete.

    Raises
    ------
    ConfigError
        ``days`` < 1, or ``out_dir`` exists.
    SchemaError, ConsentError
        As :func:`continue_world` (checked against the consent state at the world's current end).
    """
    world = Path(world_dir)
    target = Path(out_dir)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        msg = f"continue: --days must be a positive integer (got {days!r})."
        raise ConfigError(msg)
    if target.exists():
        msg = f"continue: --out {str(target)!r} already exists. Hint: choose a new directory."
        raise ConfigError(msg)
    cfg = load_config(world)
    end_day, applied = _continuation(world, cfg)
    end_date = cfg.start + dt.timedelta(days=end_day)
    actions = _campaign_frame(campaign)
    # a campaign file also lists customers the world does not know as persons (unresolved ``anon-`` cookies):
    # they cannot be contacted, and a pause of a stranger changes nothing
    persons = pl.read_parquet(world / "customers.parquet", columns=["customer_id"])
    actions = actions.filter(
        (pl.col("channel") != NO_CONTACT) | pl.col("customer_id").is_in(persons["customer_id"].implode())
    )
    new_channels = _campaign_channels(cfg, world, actions, at=end_date)
    schedule = {int(a["day"]): a["file"] for a in applied}
    if end_day in schedule:  # pragma: no cover - the end moves with every continuation
        msg = f"continue: a campaign was already applied on {end_date}."
        raise ConfigError(msg)
    channels_by_day: dict[int, np.ndarray] = {}
    for day, file in schedule.items():
        at = cfg.start + dt.timedelta(days=day)
        channels_by_day[day] = _campaign_channels(cfg, world, pl.read_parquet(world / file), at=at)
    channels_by_day[end_day] = new_channels
    new_end = end_day + days
    ext = cfg.replace(future_days=new_end - cfg.history_days + cfg.future_days)
    cal_full = Calendar.build(ext)
    cal_new = dataclasses.replace(cal_full, n_history=new_end)
    # the window as the world's own future saw it: same split of the draws as its truth/future_events
    cal_window = dataclasses.replace(cal_full, n_history=end_day, n_total=max(new_end, end_day + cfg.future_days))
    tables = CategoryTables.build(ext)
    cmp_name = f"cmp-{end_date:%Y%m%d}"

    parts = _extended_parts(cfg, ext, cal_new, cal_window, tables, channels_by_day, (end_day, new_end))

    sent = pl.concat(parts.pop("contacts"))
    probability = actions.select("customer_id", "channel", pl.col("assignment_probability").alias("__p"))
    sent = (
        sent.join(probability, on=["customer_id", "channel"], how="left")
        .with_columns(
            pl.when(pl.col("campaign_id") == cmp_name)
            .then(pl.col("__p"))
            .otherwise(pl.col("assignment_probability"))
            .alias("assignment_probability")
        )
        .drop("__p")
    )
    tmp = target.parent / f".{target.name}.continue-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        (tmp / "truth" / "campaigns").mkdir(parents=True)
        rows = _write_tables(tmp, world, parts, sent)
        for a in applied:
            shutil.copy2(world / a["file"], tmp / a["file"])
        file = f"truth/campaigns/{cmp_name}.parquet"
        actions.write_parquet(tmp / file, compression="zstd")
        world_json = {
            "config": cfg.to_dict(),
            "future_regime": _FUTURE_REGIME,
            "conversion_days": CONVERSION_DAYS,
            "rows": rows,
            "continuation": {
                "continued_from": str(world.resolve()),
                "end": (cfg.start + dt.timedelta(days=new_end)).isoformat(),
                "end_day": new_end,
                "campaigns": [*applied, {"day": end_day, "date": end_date.isoformat(), "file": file}],
            },
        }
        (tmp / "truth" / "world.json").write_text(json.dumps(world_json, indent=2, sort_keys=True) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extended_parts(
    cfg: SimulationConfig,
    ext: SimulationConfig,
    cal_new: Calendar,
    cal_window: Calendar,
    tables: CategoryTables,
    channels_by_day: dict[int, np.ndarray],
    days: tuple[int, int],
) -> dict[str, list[pl.DataFrame]]:
    """Per table, the chunks' rows of the days ``[end_day, new_end)`` and of the new truth, chunk by chunk."""
    end_day, new_end = days
    start_us = (cal_new.epoch_day + end_day) * DAY_US
    stop_us = (cal_new.epoch_day + new_end) * DAY_US
    parts: dict[str, list[pl.DataFrame]] = collections.defaultdict(list)
    for k, offset, n in _chunks(cfg):
        pop = draw_population(ext, k, offset, n)
        rec = run_chunk(
            ext, k, pop, cal_new, tables, campaigns={d: c[offset : offset + n] for d, c in channels_by_day.items()}
        )
        _h, window = _route(
            ext, cal_window, expand(ext, k, pop, cal_window, rec, 0), expand(ext, k, pop, cal_window, rec, 1)
        )
        window = window.take(window.ts < stop_us)
        ev, seen_w = events_table(
            ext, k, pop, cal_window, window, period=2 + end_day, campaign_name="", with_customer_id=False
        )
        parts["events"].append(to_polars(ev))
        parts["contacts"].append(to_polars(contacts_table(ext, pop, cal_window, rec.contacts, end_day, new_end, "")))
        parts["consents"].append(to_polars(consents_table(cal_window, pop, rec.consents, end_day, new_end)))
        links = links_frame(ext, pop, cal_window, seen_w)
        parts["identity_links"].append(
            links.filter((pl.col("timestamp") >= _ts(start_us)) & (pl.col("timestamp") < _ts(stop_us)))
        )
        _h2, future = _route(ext, cal_new, expand(ext, k, pop, cal_new, rec, 0), expand(ext, k, pop, cal_new, rec, 1))
        fut, seen_f = events_table(ext, k, pop, cal_new, future, period=1, campaign_name="", with_customer_id=True)
        parts["truth/future_events"].append(to_polars(fut))
        parts["truth/identity"].append(identity_truth(ext, pop, pl.concat([seen_w, seen_f])))
        propensity, response = _truth(ext, k, pop, cal_new, tables, rec)
        parts["truth/propensity"].append(to_polars(propensity))
        parts["truth/channel_response"].append(to_polars(response))
        parts["truth/send_time"].append(to_polars(_send_time_truth(ext, k, pop)))
    return parts


def _write_tables(tmp: Path, world: Path, parts: dict[str, list[pl.DataFrame]], sent: pl.DataFrame) -> dict[str, int]:
    """Write the histories (old rows + new) and the truth tables into ``tmp``; rows per table written."""
    rows: dict[str, int] = {}
    for name in _TABLES:
        old = _read_table(world, name)
        new = (
            sent if name == "contacts" else (pl.concat(parts[name], how="diagonal_relaxed") if name in parts else None)
        )
        if name == "identity_links" and old is not None and new is not None:
            new = new.join(old.select("identifier_a", "identifier_b"), on=["identifier_a", "identifier_b"], how="anti")
        frames = [f for f in (old, new) if f is not None]
        if not frames:
            continue
        table = (
            pl.concat([frames[0], *[f.select(frames[0].columns).cast(frames[0].schema) for f in frames[1:]]])
            if len(frames) > 1
            else frames[0]
        )
        table.write_parquet(tmp / f"{name}.parquet", compression="zstd")
        rows[name] = table.height
    for name in ("future_events", "propensity", "channel_response", "send_time"):
        table = pl.concat(parts[f"truth/{name}"])
        table.write_parquet(tmp / "truth" / f"{name}.parquet", compression="zstd")
        rows[f"truth/{name}"] = table.height
    identity = pl.concat(
        [pl.read_parquet(world / "truth" / "identity.parquet"), *parts["truth/identity"]], how="diagonal_relaxed"
    )
    identity = identity.unique(maintain_order=True)
    identity.write_parquet(tmp / "truth" / "identity.parquet", compression="zstd")
    rows["truth/identity"] = identity.height
    return rows


def _ts(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))
