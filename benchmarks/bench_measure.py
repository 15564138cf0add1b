"""Does `omni-ml measure` recover the true incremental effect of a campaign? And how good is customer value?

Per seed: simulate a world, fit a campaign model at the world's end, score every customer with a random
control group (``omni_ml.scoring.score``), send the campaign through the simulator's future
(``continue_world``: treated customers contacted on their channel, held-out ones not), write a histories
directory (identity-resolved history + the campaign's future + the contacts sent) and measure it with
:func:`omni_ml.measure.measure_campaign` (the code behind ``omni-ml measure``). The truth:

* ``truth_conv_expected``: mean over the customers recommended a contact of ``p_if_contacted(channel) -
  p_if_not`` from ``truth/channel_response`` (the exact expected effect on ">= 1 purchase within 7 days of
  a contact at end", i.e. the measured conversion with ``--window 7``);
* ``truth_conv_crn`` / ``truth_rev_crn``: the same customers' realised effect with common random numbers:
  a second ``continue_world`` contacts every recommended customer (controls included), the no-contact
  future is ``truth/future_events``; effect = mean(outcome contacted - outcome not contacted).

Customer value (seed by seed): Spearman rank correlation with the realised revenue of the future window
(``truth/future_events``, no campaign) of the LightGBM value model, the heuristic (propensity x orders per
buyer x shrunk order value) and the naive "revenue of the last horizon" baseline; the value model again
on the plain transaction log (purchases only, channel dropped). BG/NBD is not available (see
omni_ml/models/value.py).

    .venv/bin/python -m benchmarks.bench_measure                      # 10 seeds x 10,000 customers
    .venv/bin/python -m benchmarks.bench_measure --seeds 2 --n-customers 2000   # quick run

Measured (2 shared cores, nice 10; 10 seeds x 10,000 persons, window 7 days, 95% intervals):

* control 30% (default): Welch CI covers the expected true conversion effect on 10/10 seeds, bootstrap
  10/10, the CRN realised effect 10/10; revenue per customer covers the CRN effect 10/10. True effects
  +0.007..+0.012 per eligible customer, mean |estimate - truth| 0.0028, mean CI half-width 0.016 (the
  simulated campaign effects are too small for this world size to be significant: honest, wide intervals).
  Max overall |SMD| 0.069. measure_campaign 0.9 s per campaign (~14k customers, 1,000 bootstrap resamples).
* control 10% (``--control-fraction 0.1 --skip-value``): Welch 9/10, bootstrap 10/10, CRN 10/10;
  revenue 8/10 (heavy-tailed revenue with ~400 controls; P(<= 8/10 | 95% coverage) = 8.6%).
  Max overall |SMD| 0.12 (chance level 2 SE ~ 0.10 with ~400 controls).
* customer value, Spearman with the realised revenue of the next 30 days (mean of 10 seeds): LightGBM
  value model 0.434, heuristic propensity x order value 0.413, last-30-days revenue 0.346, value model
  on the plain transaction log (purchases only) 0.406. BG/NBD: not available (see omni_ml/models/value.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import polars as pl
from scipy.stats import spearmanr

from omni_ml.campaign import CampaignConfig, CampaignModel
from omni_ml.config import from_mapping
from omni_ml.data import Histories, load_histories
from omni_ml.identity import resolve_identities
from omni_ml.measure import measure_campaign
from omni_ml.models.value import CustomerValueModel, OrderValueStats, ValueConfig, heuristic_value
from omni_ml.scoring import score
from omni_ml.simulate import continue_world, load_config, preset, simulate

CONFIG = {
    "train": {
        "n_cutoffs": 6,
        "every_days": 28,
        "model": {"n_estimators": 150, "learning_rate": 0.1, "early_stopping_rounds": 20, "num_leaves": 15},
    },
    "channel": {"n_estimators": 80, "lookback_days": 49, "pause_ratio": 0.5},
    "reasons": 0,
}


def _spearman(a: pl.Series, b: pl.Series) -> float:
    return float(spearmanr(a.to_numpy(), b.to_numpy())[0])


def _future_outcomes(events: pl.DataFrame, start: dt.datetime, days: int, prefix: str) -> pl.DataFrame:
    end = start + dt.timedelta(days=days)
    return (
        events.filter(
            (pl.col("event_type") == "purchase") & (pl.col("timestamp") >= start) & (pl.col("timestamp") < end)
        )
        .group_by("customer_id")
        .agg(pl.len().alias(f"{prefix}_n"), pl.col("amount").fill_null(0.0).sum().alias(f"{prefix}_rev"))
    )


def run_seed(seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    world = simulate(preset("small", seed=seed, n_customers=args.n_customers), tmp / f"world{seed}")
    end = dt.datetime.combine(load_config(world).end, dt.time(), tzinfo=dt.UTC)
    hist = resolve_identities(load_histories(world)).collect()
    model = CampaignModel(from_mapping(CampaignConfig, CONFIG)).fit(hist, end, horizon_days=28)
    model.save(tmp / f"model{seed}.joblib")
    scored = tmp / f"scored{seed}.parquet"
    score(
        world,
        model=tmp / f"model{seed}.joblib",
        as_of=end,
        out=scored,
        reasons=0,
        control_fraction=args.control_fraction,
        seed=seed,
    )
    people = pl.read_parquet(world / "customers.parquet")["customer_id"].implode()
    # anon- customers (unlinked cookies) cannot be addressed: they are not part of the campaign
    campaign = pl.read_parquet(scored).filter(pl.col("customer_id").is_in(people))
    campaign_file = tmp / f"campaign{seed}.parquet"
    campaign.write_parquet(campaign_file)
    actual = continue_world(
        world,
        campaign.select("customer_id", pl.col("best_channel").alias("channel")),
        tmp / f"actual{seed}",
        campaign_id="measured",
    )
    everyone = continue_world(world, campaign.select("customer_id", pl.col("recommended_channel").alias("channel")))
    # the histories directory omni-ml measure reads: resolved history + the campaign's future + its contacts
    measured = tmp / f"measured{seed}"
    measured.mkdir()
    pl.concat([hist.events.collect(), actual.select(hist.events.collect_schema().names())]).write_parquet(
        measured / "events.parquet"
    )
    t1 = time.perf_counter()
    report = measure_campaign(campaign_file, measured, window_days=args.window, n_boot=args.n_boot, seed=seed)
    t_measure = time.perf_counter() - t1
    o = report.overall

    eligible = campaign.filter(pl.col("recommended_channel") != "no_contact").select(
        "customer_id", pl.col("recommended_channel").alias("channel")
    )
    response = pl.read_parquet(world / "truth" / "channel_response.parquet")
    expected = eligible.join(response, on=["customer_id", "channel"], how="left")
    truth_expected = float((expected["p_if_contacted"] - expected["p_if_not"]).mean())  # type: ignore[arg-type]
    nothing = pl.read_parquet(world / "truth" / "future_events.parquet")
    crn = (
        eligible.join(_future_outcomes(everyone, end, args.window, "b"), on="customer_id", how="left")
        .join(_future_outcomes(nothing, end, args.window, "c"), on="customer_id", how="left")
        .fill_null(0)
    )
    truth_conv = float(((crn["b_n"] > 0).cast(pl.Float64) - (crn["c_n"] > 0).cast(pl.Float64)).mean())  # type: ignore[arg-type]
    truth_rev = float((crn["b_rev"] - crn["c_rev"]).mean())  # type: ignore[arg-type]

    row: dict[str, float] = {
        "seed": seed,
        "n_treated": o["n_treated"],
        "n_control": o["n_control"],
        "conv_diff": o["conversion_diff"],
        "conv_lo": o["conversion_ci_low"],
        "conv_hi": o["conversion_ci_high"],
        "boot_lo": o["conversion_boot_low"],
        "boot_hi": o["conversion_boot_high"],
        "truth_conv_expected": truth_expected,
        "truth_conv_crn": truth_conv,
        "rev_diff": o["revenue_diff"],
        "rev_lo": o["revenue_ci_low"],
        "rev_hi": o["revenue_ci_high"],
        "truth_rev_crn": truth_rev,
        "max_abs_smd": float(report.balance.filter(pl.col("segment_type") == "overall")["smd"].abs().max()),  # type: ignore[arg-type]
        "measure_s": t_measure,
    }
    row["covered_expected"] = float(o["conversion_ci_low"] <= truth_expected <= o["conversion_ci_high"])
    row["covered_boot"] = float(o["conversion_boot_low"] <= truth_expected <= o["conversion_boot_high"])
    row["covered_crn"] = float(o["conversion_ci_low"] <= truth_conv <= o["conversion_ci_high"])
    row["covered_rev"] = float(o["revenue_ci_low"] <= truth_rev <= o["revenue_ci_high"])

    if not args.skip_value:
        horizon = load_config(world).future_days
        realised = _future_outcomes(nothing, end, horizon, "f")
        vm = CustomerValueModel(ValueConfig(horizon_days=horizon, n_cutoffs=6, n_estimators=300)).fit(hist, end)
        pred = vm.predict(hist, end)
        stats = OrderValueStats.fit(hist, end, horizon_days=horizon)
        heur = heuristic_value(stats, hist, end, campaign.select("customer_id", "propensity"))
        last = _future_outcomes(hist.events.collect(), end - dt.timedelta(days=horizon), horizon, "l")
        plain_events = hist.events.filter(pl.col("event_type") == "purchase").select(
            "customer_id", "timestamp", "amount"
        )
        plain = Histories.from_frames(plain_events.collect()).collect()
        vm_plain = CustomerValueModel(ValueConfig(horizon_days=horizon, n_cutoffs=6, n_estimators=300)).fit(plain, end)
        pred_plain = vm_plain.predict(plain, end).rename({"customer_value": "plain"})
        j = (
            campaign.select("customer_id")
            .join(pred, on="customer_id", how="left")
            .join(heur.rename({"customer_value": "heuristic"}), on="customer_id", how="left")
            .join(last, on="customer_id", how="left")
            .join(pred_plain, on="customer_id", how="left")
            .join(realised, on="customer_id", how="left")
            .fill_null(0.0)
        )
        row["rho_value_model"] = _spearman(j["customer_value"], j["f_rev"])
        row["rho_heuristic"] = _spearman(j["heuristic"], j["f_rev"])
        row["rho_last_period"] = _spearman(j["l_rev"], j["f_rev"])
        row["rho_value_plain_log"] = _spearman(j["plain"], j["f_rev"])
    row["seconds"] = time.perf_counter() - t0
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of simulated worlds (seeds 0..n-1)")
    parser.add_argument("--n-customers", type=int, default=10000, help="persons per world (--scale)")
    parser.add_argument("--control-fraction", type=float, default=0.3)
    parser.add_argument("--window", type=int, default=7, help="outcome window in days (7 matches the truth table)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--skip-value", action="store_true", help="skip the customer value comparison")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            rows.append(run_seed(seed, args, Path(tmp)))
            r = rows[-1]
            print(
                f"seed {seed}: diff {r['conv_diff']:+.4f} CI [{r['conv_lo']:+.4f}, {r['conv_hi']:+.4f}] "
                f"truth {r['truth_conv_expected']:+.4f} (crn {r['truth_conv_crn']:+.4f}) "
                f"covered={int(r['covered_expected'])} ({r['seconds']:.0f} s)",
                flush=True,
            )
    table = pl.DataFrame(rows)
    with pl.Config(tbl_rows=50, tbl_cols=30, tbl_width_chars=250, float_precision=4):
        print(
            table.select(
                "seed",
                "n_treated",
                "n_control",
                "conv_diff",
                "conv_lo",
                "conv_hi",
                "truth_conv_expected",
                "truth_conv_crn",
                "rev_diff",
                "rev_lo",
                "rev_hi",
                "truth_rev_crn",
                "max_abs_smd",
            )
        )
        print(table.select("seed", *[c for c in table.columns if c.startswith(("covered", "rho_"))], "seconds"))
    n = table.height
    print(
        f"\n{args.seeds} seeds x {args.n_customers:,} customers, control {args.control_fraction:.0%}, "
        f"window {args.window} days, 95% intervals"
    )
    print(
        f"conversion: Welch CI covers the expected true effect on {int(table['covered_expected'].sum())}/{n} seeds, "
        f"bootstrap {int(table['covered_boot'].sum())}/{n}; covers the CRN realised effect "
        f"{int(table['covered_crn'].sum())}/{n}"
    )
    print(f"revenue per customer: Welch CI covers the CRN realised effect on {int(table['covered_rev'].sum())}/{n}")
    print(
        f"mean |diff - truth| conversion {(table['conv_diff'] - table['truth_conv_expected']).abs().mean():.4f}, "
        f"mean CI half-width {((table['conv_hi'] - table['conv_lo']) / 2).mean():.4f}; "
        f"max overall |SMD| {table['max_abs_smd'].max():.3f}; measure {table['measure_s'].mean():.2f} s/seed"
    )
    if "rho_value_model" in table.columns:
        print(
            "value (Spearman with realised future revenue, mean over seeds): "
            + ", ".join(f"{c[4:]} {table[c].mean():.3f}" for c in table.columns if c.startswith("rho_"))
        )


if __name__ == "__main__":
    main()
