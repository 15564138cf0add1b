"""Propensity and customer value on a real public transaction log (CDNOW) against the buy-till-you-die models.

CDNOW (Fader & Hardie): every purchase of the 23,570 customers whose first purchase at the CD retailer
CDNOW was in the first quarter of 1997, up to the end of June 1998 (69,659 rows: customer, date, CDs,
dollars). The file ships inside the ``lifetimes`` package (``pip install -e '.[bench]'``); nothing is
downloaded at run time, and only the data is used, not lifetimes' models.

Propensity, as of each cutoff: P(at least one purchase in ``[cutoff, cutoff + horizon)``) for every
customer with a purchase before the cutoff. Contenders: ``PropensityModel`` (and the logistic and
recency/frequency baselines) trained on stacked cutoffs whose label windows end by the cutoff; BG/NBD and
Pareto/NBD (``omni_ml.models.btyd``) fitted on the same history (weeks) and scored with their
P(any purchase in the horizon); "+ BG/NBD" = ``PropensityModel`` with BG/NBD's P(alive), expected purchases
and P(any purchase) as features (refitted per training cutoff). AUC and top-decile lift with 95% bootstrap
intervals over customers (the same resamples for every contender, so differences are paired).

Customer value, as of ``--value-as-of`` (default 1997-07-01): realised revenue over the next 52 weeks
(to the end of the file), ranked by BG/NBD + Gamma-Gamma, Pareto/NBD + Gamma-Gamma, the propensity x order
value heuristic and ``CustomerValueModel``; Spearman correlation and top-decile capture (share of all
realised revenue that the predicted top 10% bring).

    .venv/bin/python -m benchmarks.bench_real                     # all cutoffs, 200 bootstrap resamples
    .venv/bin/python -m benchmarks.bench_real --cutoffs 1997-10-01 --bootstrap 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.resources
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats
from sklearn.metrics import roc_auc_score

from omni_ml.data import Histories, load_histories
from omni_ml.features import build_features
from omni_ml.models import LogisticBaseline, PropensityModel, RecencyFrequencyBaseline
from omni_ml.models.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel, btyd_customer_value, rfm_summary
from omni_ml.training import training_cutoffs, training_set

WEEK = 7.0


def cdnow_histories(workdir: Path) -> Histories:
    """The CDNOW master log as a histories directory (``customer_id, timestamp, amount``), loaded and validated."""
    try:
        source = importlib.resources.files("lifetimes.datasets") / "CDNOW_master.txt"
    except ModuleNotFoundError as exc:
        msg = "bench_real needs the CDNOW log shipped by lifetimes. Hint: pip install -e '.[bench]'."
        raise SystemExit(msg) from exc
    raw = _read_whitespace(Path(str(source)))
    events = raw.select(
        pl.col("customer_id"),
        pl.col("date").str.strptime(pl.Datetime("us"), "%Y%m%d").dt.replace_time_zone("UTC").alias("timestamp"),
        pl.col("amount"),
    )
    events.write_parquet(workdir / "events.parquet")
    return load_histories(workdir).collect()


def _read_whitespace(path: Path) -> pl.DataFrame:
    rows = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]  # header first
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "amount": [float(r[3]) for r in rows],
        }
    )


def _top_decile_lift(y: np.ndarray, score: np.ndarray) -> float:
    k = max(1, len(y) // 10)
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean() / max(y.mean(), 1e-12))


def _btyd_scores(hist: Histories, cutoff: dt.datetime, horizon_weeks: float) -> dict[str, pl.DataFrame]:
    summary = rfm_summary(hist, cutoff, unit_days=WEEK)
    out = {}
    for name, model in (("BG/NBD", BetaGeoModel()), ("Pareto/NBD", ParetoNBDModel())):
        model.fit(summary["x"], summary["t_x"], summary["T"])
        out[name] = summary.select("customer_id").with_columns(
            pl.Series("p_any", model.p_any_purchase(horizon_weeks, summary["x"], summary["t_x"], summary["T"])),
            pl.Series("p_alive", model.p_alive(summary["x"], summary["t_x"], summary["T"])),
            pl.Series("expected", model.expected_purchases(horizon_weeks, summary["x"], summary["t_x"], summary["T"])),
        )
    return out


def _btyd_features(hist: Histories, cutoffs: list[dt.datetime], horizon_weeks: float) -> pl.DataFrame:
    """BG/NBD outputs per ``(customer_id, cutoff)``, fitted on the history before each cutoff."""
    frames = []
    for c in cutoffs:
        summary = rfm_summary(hist, c, unit_days=WEEK)
        model = BetaGeoModel().fit(summary["x"], summary["t_x"], summary["T"])
        x, t_x, T = summary["x"], summary["t_x"], summary["T"]
        frames.append(
            summary.select("customer_id").with_columns(
                pl.Series("bgnbd_p_any", model.p_any_purchase(horizon_weeks, x, t_x, T)),
                pl.Series("bgnbd_p_alive", model.p_alive(x, t_x, T)),
                pl.Series("bgnbd_expected", model.expected_purchases(horizon_weeks, x, t_x, T)),
                pl.lit(c).alias("cutoff"),
            )
        )
    return pl.concat(frames)


def _with_btyd(X: pl.DataFrame, keys: pl.DataFrame, btyd: pl.DataFrame) -> pl.DataFrame:
    joined = keys.select("customer_id", "cutoff").join(
        btyd, on=["customer_id", "cutoff"], how="left", maintain_order="left"
    )
    return pl.concat([X, joined.drop("customer_id", "cutoff")], how="horizontal")


def propensity_at(
    hist: Histories, cutoff: dt.datetime, horizon_days: int, n_boot: int, seed: int, every_days: int = 28
) -> list[dict[str, Any]]:
    """Every contender's AUC and top-decile lift (with bootstrap intervals) as of ``cutoff``."""
    past = hist.replace(events=hist.events.filter(pl.col("timestamp") < cutoff))
    cuts = training_cutoffs(cutoff, horizon_days, every_days=every_days, n=None)
    ts = training_set(past, cuts, horizon_days, as_of=cutoff)
    scoring = build_features(past, cutoff, feature_set=ts.feature_set)
    horizon_weeks = horizon_days / WEEK
    btyd_now = _btyd_scores(hist, cutoff, horizon_weeks)
    customers = btyd_now["BG/NBD"]["customer_id"]  # everyone with a purchase before the cutoff
    future = (
        hist.events.filter(
            (pl.col("event_type") == "purchase")
            & (pl.col("timestamp") >= cutoff)
            & (pl.col("timestamp") < cutoff + dt.timedelta(days=horizon_days))
        )
        .select("customer_id")
        .unique()
        .collect()
    )
    y = customers.is_in(future["customer_id"].implode()).to_numpy().astype(np.int8)
    rows = (
        pl.DataFrame({"customer_id": customers})
        .join(scoring.with_row_index("row"), on="customer_id", how="left", maintain_order="left")["row"]
        .to_numpy()
    )
    X_now = scoring.drop("customer_id", "cutoff")[rows]
    scores: dict[str, np.ndarray] = {}
    for name, model in (
        ("PropensityModel", PropensityModel(random_state=seed, n_jobs=2)),
        ("LogisticBaseline", LogisticBaseline()),
        ("RecencyFrequencyBaseline", RecencyFrequencyBaseline()),
    ):
        t = time.perf_counter()
        model.fit_training_set(ts)
        scores[name] = model.predict_proba(X_now)[:, 1]
        print(f"  {cutoff:%Y-%m-%d} {name} fitted in {time.perf_counter() - t:.0f} s", flush=True)
    btyd_train = _btyd_features(past, sorted(set(ts.keys["cutoff"].to_list())), horizon_weeks)
    X_train = _with_btyd(ts.X, ts.keys, btyd_train)
    now_keys = pl.DataFrame({"customer_id": customers, "cutoff": [cutoff] * len(customers)})
    X_now_btyd = _with_btyd(X_now, now_keys, _btyd_features(hist, [cutoff], horizon_weeks))
    t = time.perf_counter()
    plus = PropensityModel(random_state=seed, n_jobs=2).fit(X_train, ts.y, cutoff=ts.keys["cutoff"].to_numpy())
    print(f"  {cutoff:%Y-%m-%d} PropensityModel + BG/NBD fitted in {time.perf_counter() - t:.0f} s", flush=True)
    scores["PropensityModel + BG/NBD"] = plus.predict_proba(X_now_btyd)[:, 1]
    scores["BG/NBD"] = btyd_now["BG/NBD"]["p_any"].to_numpy()
    scores["Pareto/NBD"] = btyd_now["Pareto/NBD"]["p_any"].to_numpy()

    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(y), len(y)) for _ in range(n_boot)]
    ref = scores["Pareto/NBD"]
    out = []
    for name, s in scores.items():
        auc = roc_auc_score(y, s)
        auc_b = np.array([roc_auc_score(y[b], s[b]) for b in boots])
        diff_b = np.array([roc_auc_score(y[b], s[b]) - roc_auc_score(y[b], ref[b]) for b in boots])
        lift_b = np.array([_top_decile_lift(y[b], s[b]) for b in boots])
        out.append(
            {
                "cutoff": cutoff.date().isoformat(),
                "model": name,
                "n": len(y),
                "rate": float(y.mean()),
                "auc": auc,
                "auc_lo": float(np.quantile(auc_b, 0.025)),
                "auc_hi": float(np.quantile(auc_b, 0.975)),
                "vs_pnbd": auc - roc_auc_score(y, ref),
                "vs_pnbd_lo": float(np.quantile(diff_b, 0.025)),
                "vs_pnbd_hi": float(np.quantile(diff_b, 0.975)),
                "lift": _top_decile_lift(y, s),
                "lift_lo": float(np.quantile(lift_b, 0.025)),
                "lift_hi": float(np.quantile(lift_b, 0.975)),
                "n_train_cutoffs": len(ts.cutoffs),
            }
        )
    return out


def _capture(value: np.ndarray, score: np.ndarray) -> float:
    k = max(1, len(value) // 10)
    top = np.argsort(-score, kind="stable")[:k]
    return float(value[top].sum() / max(value.sum(), 1e-12))


def _realised_revenue(events: pl.LazyFrame, ids: pl.Series, start: dt.datetime, days: int) -> np.ndarray:
    realised = (
        events.filter(
            (pl.col("event_type") == "purchase")
            & (pl.col("timestamp") >= start)
            & (pl.col("timestamp") < start + dt.timedelta(days=days))
        )
        .group_by("customer_id")
        .agg(pl.col("amount").fill_null(0.0).sum().alias("revenue"))
        .collect()
    )
    joined = ids.to_frame().join(realised, on="customer_id", how="left", maintain_order="left")
    return joined["revenue"].fill_null(0.0).to_numpy()


def _btyd_values(hist: Histories, as_of: dt.datetime, horizon_days: int) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    summary = rfm_summary(hist, as_of, unit_days=WEEK)
    repeat = summary.filter(pl.col("x") > 0)
    gg = GammaGammaModel().fit(repeat["x"], repeat["mean_value"])
    preds: dict[str, np.ndarray] = {}
    for name, model in (("BG/NBD + Gamma-Gamma", BetaGeoModel()), ("Pareto/NBD + Gamma-Gamma", ParetoNBDModel())):
        model.fit(summary["x"], summary["t_x"], summary["T"])
        preds[name] = btyd_customer_value(model, gg, summary, horizon_days / WEEK)["customer_value"].to_numpy()
    # the naive "past value continues": revenue so far per week
    preds["past revenue per week"] = (
        (summary["first_value"] + summary["mean_value"] * summary["x"]) / summary["T"].clip(lower_bound=1.0)
    ).to_numpy()
    return summary, preds


def _rank_value(value: np.ndarray, preds: dict[str, np.ndarray], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Spearman and top-decile capture of realised revenue per predictor, with bootstrap intervals."""
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(value), len(value)) for _ in range(n_boot)]
    out = []
    for name, p in preds.items():
        rho_b = np.array([stats.spearmanr(p[b], value[b]).statistic for b in boots])
        cap_b = np.array([_capture(value[b], p[b]) for b in boots])
        out.append(
            {
                "model": name,
                "spearman": float(stats.spearmanr(p, value).statistic),
                "spearman_lo": float(np.quantile(rho_b, 0.025)),
                "spearman_hi": float(np.quantile(rho_b, 0.975)),
                "capture": _capture(value, p),
                "capture_lo": float(np.quantile(cap_b, 0.025)),
                "capture_hi": float(np.quantile(cap_b, 0.975)),
            }
        )
    return out


def value_at(hist: Histories, as_of: dt.datetime, horizon_days: int, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """CDNOW: Spearman and top-decile capture of realised revenue in ``[as_of, as_of + horizon_days)``."""
    summary, preds = _btyd_values(hist, as_of, horizon_days)
    value = _realised_revenue(hist.events, summary["customer_id"], as_of, horizon_days)
    return _rank_value(value, preds, n_boot, seed)


def value_simulated(n_customers: int, seed: int, n_boot: int) -> list[dict[str, Any]]:
    """A two-year simulated world continued for a year: 12-month value of every customer with a purchase.

    Contenders: BG/NBD / Pareto/NBD + Gamma-Gamma, past revenue per week, and ``CustomerValueModel`` with a
    364-day horizon (LightGBM Tweedie; its label windows must end by the as-of date, so two cutoffs 28 days
    apart a year before it).
    """
    from omni_ml.identity import resolve_identities
    from omni_ml.models.value import CustomerValueModel, ValueConfig
    from omni_ml.simulate import preset, simulate

    days = 364
    with tempfile.TemporaryDirectory(prefix="bench_real_sim_") as tmp:
        cfg = preset("default", n_customers=n_customers, seed=seed, future_days=365)
        simulate(cfg, Path(tmp))
        as_of = dt.datetime.combine(cfg.end, dt.time(), tzinfo=dt.UTC)
        hist = resolve_identities(load_histories(Path(tmp), as_of=as_of), as_of=as_of).collect()
        future = pl.read_parquet(Path(tmp) / "truth" / "future_events.parquet").lazy()
    summary, preds = _btyd_values(hist, as_of, days)
    ids = summary["customer_id"]
    model = CustomerValueModel(ValueConfig(horizon_days=days, n_cutoffs=2, every_days=28)).fit(hist, as_of)
    learned = model.predict(hist, as_of)
    preds["CustomerValueModel (364 d)"] = (
        ids.to_frame().join(learned, on="customer_id", how="left", maintain_order="left")["customer_value"].to_numpy()
    )
    value = _realised_revenue(future, ids, as_of, days)
    return _rank_value(value, preds, n_boot, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoffs", nargs="+", default=["1997-10-01", "1998-01-01", "1998-04-01"], help="ISO dates")
    parser.add_argument("--horizon-days", type=int, default=84, help="propensity label window (12 weeks)")
    parser.add_argument("--value-as-of", default="1997-07-01")
    parser.add_argument("--value-days", type=int, default=364, help="value horizon (52 weeks = 12 months)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every-days", type=int, default=28, help="spacing of the stacked training cutoffs")
    parser.add_argument("--skip-value", action="store_true")
    parser.add_argument("--skip-propensity", action="store_true")
    parser.add_argument(
        "--sim-customers", type=int, default=0, help="also the 12-month value on a simulated world of this size"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_real_") as tmp:
        hist = cdnow_histories(Path(tmp))
    n_rows = hist.events.select(pl.len()).collect().item()
    print(f"CDNOW master log: {n_rows:,} purchase rows")
    print(
        f"\npropensity, {args.horizon_days}-day window; AUC [95% bootstrap, {args.bootstrap} resamples over customers]"
    )
    header = (
        f"{'cutoff':<11} {'model':<26} {'AUC':>7} {'95% interval':>17} {'- Pareto/NBD':>13} {'95% interval':>17} "
        f"{'lift@10%':>9} {'95% interval':>15}"
    )
    print(header)
    print("-" * len(header))
    for c in [] if args.skip_propensity else args.cutoffs:
        cutoff = dt.datetime.fromisoformat(c).replace(tzinfo=dt.UTC)
        rows = propensity_at(hist, cutoff, args.horizon_days, args.bootstrap, args.seed, args.every_days)
        for r in rows:
            print(
                f"{r['cutoff']:<11} {r['model']:<26} {r['auc']:>7.4f} [{r['auc_lo']:.4f}, {r['auc_hi']:.4f}] "
                f"{r['vs_pnbd']:>+13.4f} [{r['vs_pnbd_lo']:+.4f}, {r['vs_pnbd_hi']:+.4f}] "
                f"{r['lift']:>9.2f} [{r['lift_lo']:.2f}, {r['lift_hi']:.2f}]"
            )
        print(
            f"{'':<11} ({rows[0]['n']:,} customers, purchase rate {rows[0]['rate']:.3f}, "
            f"{rows[0]['n_train_cutoffs']} training cutoffs {args.every_days} days apart)"
        )
    if not args.skip_value:
        as_of = dt.datetime.fromisoformat(args.value_as_of).replace(tzinfo=dt.UTC)
        print(f"\ncustomer value as of {args.value_as_of}, realised revenue over the next {args.value_days} days")
        print(f"{'model':<28} {'Spearman':>9} {'95% interval':>17} {'top-10% capture':>16} {'95% interval':>17}")
        for r in value_at(hist, as_of, args.value_days, args.bootstrap, args.seed):
            print(
                f"{r['model']:<28} {r['spearman']:>9.4f} [{r['spearman_lo']:.4f}, {r['spearman_hi']:.4f}] "
                f"{r['capture']:>16.4f} [{r['capture_lo']:.4f}, {r['capture_hi']:.4f}]"
            )
    if args.sim_customers:
        print(
            f"\ncustomer value on a simulated two-year world ({args.sim_customers:,} persons, seed {args.seed}) "
            "continued for a year: realised revenue over the next 364 days"
        )
        print(f"{'model':<28} {'Spearman':>9} {'95% interval':>17} {'top-10% capture':>16} {'95% interval':>17}")
        for r in value_simulated(args.sim_customers, args.seed, args.bootstrap):
            print(
                f"{r['model']:<28} {r['spearman']:>9.4f} [{r['spearman_lo']:.4f}, {r['spearman_hi']:.4f}] "
                f"{r['capture']:>16.4f} [{r['capture_lo']:.4f}, {r['capture_hi']:.4f}]"
            )
    print(f"\nwhole run {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
