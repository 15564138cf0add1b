"""Send-time recommendations on simulated worlds, judged by the worlds' truth.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_timing                         # small preset, seeds 2 3 4
    .venv/bin/python -m benchmarks.bench_timing --n-customers 10000 --seeds 4 5
    .venv/bin/python -m benchmarks.bench_timing --seeds 0 1 --timing '{"weekday_purchase_gap_days": 0}'

Steps per world: simulate (seeds other than 0 and 1, the worlds the defaults were chosen on), resolve
identities; the campaign is the oracle channel policy (:func:`omni_ml.policy.decide` on
``truth/channel_response`` with the history's consent and pressure rules at ``end``), so every timing
policy sends the same contacts on the same channels and only *when* differs. A
:class:`~omni_ml.timing.SendTimeModel` is fitted as of ``end`` on the history. Timing policies (all within
the 7-day campaign period ``[end, end + 7 days)``):

- ``default``: everyone on ``end`` at the world's default send time, 09:00 UTC (the reference);
- ``population``: the population's best weekday (its first date in the period) at the population's
  best hour (modes of all engagement before ``end``);
- ``recent``: Braze-style "most recent engagement hour": the hour of the customer's last engagement
  event (the default hour without one), on ``end`` (the next occurrence of that hour within 24 hours);
- ``recommended``: ``send_on`` at ``send_hour`` of the model;
- ``best``: each person's truly best day and hour (:func:`omni_ml.simulate.best_send_times`).

Value: the exact P(purchase in ``[end, end + 14 days)``) of every contacted person under each policy
(:func:`omni_ml.simulate.timed_campaign_value`; no Monte-Carlo error), times the conversion value (40)
summed; costs are identical across timing policies (same contacts). ``share`` is
``(V_policy - V_default) / (V_best - V_default)``, the issue's criterion (>= 0.70 for ``recommended``).
Hit rate: ``send_hour`` within one hour (circular) of the true best hour of the chosen channel
(``direct_mail`` has no hour and is left out), by the customer's engagement events before ``end``; weekday
hit: ``send_weekday`` is the person's true best weekday (1/7 by chance).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from omni_ml.data import load_histories
from omni_ml.identity import consent_state, resolve_identities
from omni_ml.policy import NO_CONTACT, PolicyConfig, decide, history_facts
from omni_ml.simulate import best_send_times, preset, simulate, timed_campaign_value
from omni_ml.timing import SendTimeModel, TimingConfig, weekday_hour_counts

VALUE = 40.0
DEFAULT_HOUR = 9


def _plans(
    world: Path, hist, end: dt.datetime, decisions: pl.DataFrame, model: SendTimeModel
) -> dict[str, pl.DataFrame]:
    contacted = decisions.filter(pl.col("best_channel") != NO_CONTACT)
    base = contacted.select("customer_id", pl.col("best_channel").alias("channel"))
    rec = model.recommend(hist, end, contacted)
    pop_hour = int(np.argmax(model.population_hour_["__all__"]))
    pop_wd = int(np.argmax(model.population_weekday_["__all__"]))  # Monday = 0
    pop_day = end.date() + dt.timedelta(days=(pop_wd - end.weekday()) % 7)
    events = weekday_hour_counts(hist, end, customers=contacted["customer_id"])
    last = events.filter("for_hour").sort("timestamp").group_by("customer_id").agg(pl.col("local_hour").last())
    recent = base.join(last, on="customer_id", how="left").select(
        "customer_id", "channel", pl.col("local_hour").fill_null(DEFAULT_HOUR).cast(pl.Int64).alias("send_hour")
    )
    best = best_send_times(world, base, period_days=7, days=14)
    return {
        "default": base.with_columns(pl.lit(end.date()).alias("send_on"), pl.lit(DEFAULT_HOUR).alias("send_hour")),
        "population": base.with_columns(pl.lit(pop_day).alias("send_on"), pl.lit(pop_hour).alias("send_hour")),
        "recent": recent.with_columns(pl.lit(end.date()).alias("send_on")),
        "recommended": base.join(rec.select("customer_id", "send_on", "send_hour"), on="customer_id"),
        "best": best.drop("send_time_zone"),
    }, rec


def run_world(world: Path, timing: TimingConfig | None = None) -> dict[str, float]:
    """Value shares and hit rates of one world (``timing``: the model's settings, its defaults when ``None``)."""
    hist = resolve_identities(load_histories(world)).collect()
    cfg_json = (world / "truth" / "world.json").read_text()
    end_s = cfg_json.split('"end": "')[1][:10]
    end = dt.datetime.fromisoformat(end_s).replace(tzinfo=dt.UTC)
    truth = pl.read_parquet(world / "truth" / "channel_response.parquet")
    consent = consent_state(hist, end)
    facts = history_facts(hist, end)
    decisions = decide(truth, consent, facts, PolicyConfig())
    started = time.perf_counter()
    model = SendTimeModel(config=timing).fit(hist, end)
    plans, rec = _plans(world, hist, end, decisions, model)
    fit_seconds = time.perf_counter() - started
    value = timed_campaign_value(world, plans, days=14)
    contacted = plans["default"]["customer_id"]
    v = value.filter(pl.col("customer_id").is_in(contacted.implode()))
    totals = {name: float(v[f"p_{name}"].sum()) * VALUE for name in plans}
    gain_best = totals["best"] - totals["default"]
    out: dict[str, float] = {"contacted": float(contacted.len()), "seconds_timing": fit_seconds}
    for name in ("population", "recent", "recommended"):
        out[f"share_{name}"] = (totals[name] - totals["default"]) / gain_best
    out["gain_best"] = gain_best
    out["gain_recommended"] = totals["recommended"] - totals["default"]
    # hit rates of the hour against the truth of the chosen channel
    st = pl.read_parquet(world / "truth" / "send_time.parquet")
    weekdays = (
        plans["default"]
        .select("customer_id", "channel")
        .join(st, on=["customer_id", "channel"])
        .join(rec.select("customer_id", "send_weekday"), on="customer_id")
    )
    pop_weekday = int(np.argmax(model.population_weekday_["__all__"])) + 1
    out["weekday_hit_model"] = float((weekdays["send_weekday"] == weekdays["best_weekday"]).mean())
    out["weekday_hit_population"] = float((weekdays["best_weekday"] == pop_weekday).mean())
    frame = (
        plans["default"]
        .select("customer_id", "channel")
        .join(st, on=["customer_id", "channel"])
        .filter(pl.col("best_hour").is_not_null())
        .join(rec.select("customer_id", "send_hour", "send_time_events"), on="customer_id")
        .join(plans["recent"].select("customer_id", pl.col("send_hour").alias("recent_hour")), on="customer_id")
    )
    pop_hour = int(np.argmax(model.population_hour_["__all__"]))

    def hit(col: pl.Expr) -> pl.Expr:
        d = (col.cast(pl.Int64) - pl.col("best_hour").cast(pl.Int64)).abs()
        return (pl.min_horizontal(d, 24 - d) <= 1).mean()

    for label, cond in (
        ("all", pl.lit(True)),
        ("ge5", pl.col("send_time_events") >= 5),
        ("lt5", pl.col("send_time_events") < 5),
    ):
        part = frame.filter(cond)
        row = part.select(
            hit(pl.col("send_hour")).alias("model"),
            hit(pl.lit(pop_hour)).alias("population"),
            hit(pl.col("recent_hour")).alias("recent"),
        ).row(0)
        out[f"n_{label}"] = float(part.height)
        out[f"hit_model_{label}"], out[f"hit_population_{label}"], out[f"hit_recent_{label}"] = row
    return out


def main(argv: list[str] | None = None) -> None:
    """Simulate the worlds, print one table per claim."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-customers", type=int, default=2_500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--world", type=Path, default=None, help="reuse one simulated world (ignores --seeds)")
    parser.add_argument(
        "--timing", default="{}", help="TimingConfig fields as JSON, e.g. '{\"weekday_purchase_gap_days\": 0}'"
    )
    args = parser.parse_args(argv)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.timing).items()}
    timing = TimingConfig(**fields)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        worlds = (
            [(None, args.world)]
            if args.world
            else [
                (s, simulate(preset("small", n_customers=args.n_customers, seed=s), Path(tmp) / f"w{s}"))
                for s in args.seeds
            ]
        )
        for seed, world in worlds:
            started = time.perf_counter()
            res = run_world(world, timing)
            res["seed"] = float(seed if seed is not None else -1)
            res["seconds"] = time.perf_counter() - started
            rows.append(res)
    table = pl.DataFrame(rows)
    print("Value of timing: share of the true-best-time gain over the default time (09:00 UTC on end)")
    print(
        table.select(
            "seed",
            "contacted",
            pl.col("gain_best").round(2),
            pl.col("gain_recommended").round(2),
            *[pl.col(f"share_{n}").round(3) for n in ("recommended", "population", "recent")],
        )
    )
    print("Hit rate: send_hour within one hour of the true best hour (model / population mode / most recent)")
    for label in ("all", "ge5", "lt5"):
        print(
            table.select(
                "seed",
                pl.col(f"n_{label}").alias(f"customers_{label}"),
                *[pl.col(f"hit_{w}_{label}").round(3) for w in ("model", "population", "recent")],
            )
        )
    print("Weekday hit: send_weekday is the true best weekday (model / population's busiest visit day)")
    print(table.select("seed", *[pl.col(f"weekday_hit_{w}").round(3) for w in ("model", "population")]))
    print(table.select("seed", pl.col("seconds_timing").round(1), pl.col("seconds").round(1)))


if __name__ == "__main__":
    main()
