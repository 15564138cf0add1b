"""The ceiling of send-time recommendations: what a recommender that knows the simulator's model reaches.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_timing_ceiling                  # small preset, seeds 2 3 4
    .venv/bin/python -m benchmarks.bench_timing_ceiling --seeds 0 1 5 6 7

The campaign, the default and the true-best plans are those of :mod:`benchmarks.bench_timing` (same
contacts on the same channels; only *when* differs). The ceiling plans are Bayes decisions that are given
*more* than the history shows, so their shares bound from above what any recommender reaches with the
history alone:

- every person's exact latent state at ``end`` (in or out of market, contact effect, fatigue, category
  suppression: the inputs of :func:`omni_ml.simulate.truth.timed_purchase_probability`) and their true
  best hour of the chosen channel;
- for the weekday, the posterior of the person's best weekday ``D`` under the simulator's rhythm model
  (:mod:`omni_ml.simulate.rhythm`): background browsing on day ``t`` happens with probability
  ``browse * vm7(weekday(t) - D; BROWSE_WEEKDAY_KAPPA)``, so with a uniform prior
  ``log P(D | sessions) = BROWSE_WEEKDAY_KAPPA * sum cos(2 pi (weekday(t) - D) / 7) + const`` over the
  background sessions of the whole simulated history (the no-session days add a term that is the same
  for every ``D`` up to the one-day difference in how often each weekday occurs). Three evidence sets:

  - ``labelled``: the simulator's own label of which sessions are background browsing (the history's
    visit rows do not carry it; this is strictly more than the data holds) — the ceiling;
  - ``visits``: every visit row of the person in the history before ``end`` (what the data holds: the
    in-market sessions and the visits of online purchases, which follow the retailer's week rather than the
    person's, are mixed in);
  - ``visits_unbought``: the visits :class:`~omni_ml.timing.SendTimeModel` counts for the weekday (no
    purchase of the customer within ``weekday_purchase_gap_days`` = 7 days after it), within its lookback;
  - ``none``: no weekday evidence (uniform posterior): what the day is worth without the weekday.

The day is ``argmax_d sum_D P(D | evidence) * P(purchase | contact on day d at the true best hour, D)``,
each term the exact probability of the truth; the value is then measured with the true ``D``
(:func:`omni_ml.simulate.timed_campaign_value`), as for every plan of ``bench_timing``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from omni_ml.data import load_histories
from omni_ml.identity import consent_state, resolve_identities
from omni_ml.policy import NO_CONTACT, PolicyConfig, decide, history_facts
from omni_ml.simulate import best_send_times, preset, simulate, timed_campaign_value
from omni_ml.simulate.continuation import _campaign_channels, load_config
from omni_ml.simulate.engine import run_chunk
from omni_ml.simulate.population import Calendar, CategoryTables, draw_population
from omni_ml.simulate.rhythm import (
    BROWSE_WEEKDAY_KAPPA,
    DEFAULT_SEND_HOUR,
    _weekday_table,
    draw_rhythm,
    weekday_of_day,
)
from omni_ml.simulate.truth import timed_purchase_probability
from omni_ml.simulate.world import _chunks
from omni_ml.timing import SendTimeModel, weekday_hour_counts

VALUE = 40.0
PERIOD, DAYS = 7, 14
EVIDENCE = ("labelled", "visits", "visits_unbought", "none")


def _posterior(days_by_person: list[np.ndarray], epoch_day: int) -> np.ndarray:
    """(n, 7) P(best weekday = D) from the days (history index) of each person's sessions."""
    n = len(days_by_person)
    log_post = np.zeros((n, 7))
    angles = 2 * math.pi * np.arange(7) / 7.0
    for i, days in enumerate(days_by_person):
        if days.size:
            wd = weekday_of_day(epoch_day + days)
            # sum over sessions of cos(2 pi (w - D) / 7), for every D
            c = np.cos(2 * math.pi * wd / 7.0).sum()
            s = np.sin(2 * math.pi * wd / 7.0).sum()
            log_post[i] = BROWSE_WEEKDAY_KAPPA * (c * np.cos(angles) + s * np.sin(angles))
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return post / post.sum(axis=1, keepdims=True)


def _group(idx: np.ndarray, day: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(n + 1))
    by_person = day[order]  # one sorted copy: the slices are views of it
    return [by_person[bounds[i] : bounds[i + 1]] for i in range(n)]


def ceiling_plans(world: Path, hist, campaign: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``ceiling_<evidence>`` plans (``customer_id, channel, send_on, send_hour``) for the contacted rows."""
    cfg = load_config(world)
    channels = _campaign_channels(cfg, world, campaign)
    cal = Calendar.build(cfg)
    tables = CategoryTables.build(cfg)
    ids = pl.read_parquet(world / "customers.parquet", columns=["customer_id"])["customer_id"]
    end_day = cal.epoch_day + cal.n_history
    # visit rows of the history per customer (what the data holds), as days counted from the world's start
    visits = (
        hist.events.filter(pl.col("event_type") == "visit")
        .select("customer_id", ((pl.col("timestamp").dt.epoch("d")) - cal.epoch_day).alias("day"))
        .collect()
    )
    gid = ids.to_frame().with_row_index("gid")
    visits = visits.join(gid, on="customer_id", how="inner")
    v_gid, v_day = visits["gid"].to_numpy().astype(np.int64), visits["day"].to_numpy().astype(np.int64)
    end = dt.datetime.combine(cfg.end, dt.time(), tzinfo=dt.UTC)
    counted = (
        weekday_hour_counts(hist, end)
        .filter("for_weekday")
        .select("customer_id", (pl.col("timestamp").dt.epoch("d") - cal.epoch_day).alias("day"))
        .join(gid, on="customer_id", how="inner")
    )
    u_gid, u_day = counted["gid"].to_numpy().astype(np.int64), counted["day"].to_numpy().astype(np.int64)
    chosen_day: dict[str, list[np.ndarray]] = {e: [] for e in EVIDENCE}
    hours: list[np.ndarray] = []
    table = _weekday_table(cfg.send_weekday_kappa)
    for k, offset, n in _chunks(cfg):
        pop = draw_population(cfg, k, offset, n)
        rec = run_chunk(cfg, k, pop, cal, tables)
        state = rec.end_state
        rhythm = draw_rhythm(cfg, k, pop)
        ch = channels[offset : offset + n]
        safe = np.maximum(ch, 0)
        hour = rhythm.best_integer_hour()[np.arange(n), safe]
        hour = np.where(rhythm.flat[safe], int(DEFAULT_SEND_HOUR), hour)
        hours.append(hour)
        s = rec.sessions
        hist_bg = (s["day"] < cal.n_history) & (s["cat"] < 0)
        labelled = _group(s["idx"][hist_bg].astype(np.int64), s["day"][hist_bg].astype(np.int64), n)
        mine = (v_gid >= offset) & (v_gid < offset + n)
        observed = _group(v_gid[mine] - offset, v_day[mine], n)
        mine_u = (u_gid >= offset) & (u_gid < offset + n)
        unbought = _group(u_gid[mine_u] - offset, u_day[mine_u], n)
        posts = {
            "labelled": _posterior(labelled, cal.epoch_day),
            "visits": _posterior(observed, cal.epoch_day),
            "visits_unbought": _posterior(unbought, cal.epoch_day),
            "none": np.full((n, 7), 1 / 7),
        }
        # hour part of the multiplier at the true best hour (weekday factor 1)
        base_m = rhythm.multiplier(np.arange(n), safe, hour * 3600, rhythm.best_weekday)
        base_m = base_m / table[0]
        p = np.zeros((n, PERIOD, 7))  # P(purchase) for send day d given best weekday D
        for d in range(PERIOD):
            w = int(weekday_of_day(end_day + d))
            day = np.full(n, d, dtype=np.int64)
            for big_d in range(7):
                m = (base_m * table[(w - big_d) % 7]).astype(np.float32)
                p[:, d, big_d] = timed_purchase_probability(cfg, pop, cal, tables, state, DAYS, ch, day, m)
        for e, post in posts.items():
            expected = np.einsum("ndk,nk->nd", p, post)
            chosen_day[e].append(np.argmax(expected, axis=1))
    out = {}
    frame = pl.DataFrame({"customer_id": ids, "send_hour": np.concatenate(hours).astype(np.int64)})
    sent = campaign.select("customer_id", "channel")
    for e in EVIDENCE:
        days = np.concatenate(chosen_day[e])
        plan = frame.with_columns(pl.Series("send_on", [cfg.end + dt.timedelta(days=int(d)) for d in days]))
        out[f"ceiling_{e}"] = sent.join(plan, on="customer_id", how="left")
    return out


def run_world(world: Path) -> dict[str, float]:
    """Shares of the ceiling plans and of the model's recommendation on one world."""
    hist = resolve_identities(load_histories(world)).collect()
    cfg_json = (world / "truth" / "world.json").read_text()
    end = dt.datetime.fromisoformat(cfg_json.split('"end": "')[1][:10]).replace(tzinfo=dt.UTC)
    truth = pl.read_parquet(world / "truth" / "channel_response.parquet")
    decisions = decide(truth, consent_state(hist, end), history_facts(hist, end), PolicyConfig())
    contacted = decisions.filter(pl.col("best_channel") != NO_CONTACT)
    base = contacted.select("customer_id", pl.col("best_channel").alias("channel"))
    model = SendTimeModel().fit(hist, end)
    rec = model.recommend(hist, end, contacted)
    plans = {
        "default": base.with_columns(pl.lit(end.date()).alias("send_on"), pl.lit(9).alias("send_hour")),
        "recommended": base.join(rec.select("customer_id", "send_on", "send_hour"), on="customer_id"),
        "best": best_send_times(world, base, period_days=PERIOD, days=DAYS).drop("send_time_zone"),
        **ceiling_plans(world, hist, base),
    }
    value = timed_campaign_value(world, plans, days=DAYS)
    v = value.filter(pl.col("customer_id").is_in(base["customer_id"].implode()))
    totals = {name: float(v[f"p_{name}"].sum()) * VALUE for name in plans}
    gain = totals["best"] - totals["default"]
    out = {"contacted": float(base.height), "gain_best": gain}
    for name in plans:
        if name not in ("default", "best"):
            out[f"share_{name}"] = (totals[name] - totals["default"]) / gain
    return out


def main(argv: list[str] | None = None) -> None:
    """Simulate the worlds and print the shares of the ceiling plans."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-customers", type=int, default=2_500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--world", type=Path, default=None, help="reuse one simulated world (ignores --seeds)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [-1] if args.world else args.seeds:
            started = time.perf_counter()
            world = args.world or simulate(
                preset("small", n_customers=args.n_customers, seed=seed), Path(tmp) / f"w{seed}"
            )
            res = run_world(world)
            res["seed"] = float(seed)
            res["seconds"] = time.perf_counter() - started
            rows.append(res)
    table = pl.DataFrame(rows)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_tbl_width_chars(250)
    shares = [c for c in table.columns if c.startswith("share_")]
    print("Share of the true-best-time gain (over 09:00 UTC on end) of the model and of the ceiling plans")
    print(table.select("seed", "contacted", pl.col("gain_best").round(1), *[pl.col(c).round(3) for c in shares]))
    print(table.select("seed", pl.col("seconds").round(1)))


if __name__ == "__main__":
    main()
