"""Exact TreeSHAP speed: omni_ml.explanation.TreeShap vs shap.TreeExplainer vs LightGBM pred_contrib.

One run, same model, same rows, all contenders (issue 8). Part 1 is synthetic (300 trees, 31 leaves,
40 features, continuous features so every row is distinct); part 2 explains every customer of a
simulated world at its end date with a 300-tree LightGBM trained on the toolkit's features (many
customers share identical feature rows); part 3 shows what capping tree depth costs in AUC and buys in
speed. Every contender's values are checked against pred_contrib (max |difference| is printed).

    .venv/bin/python -m benchmarks.bench_explain                      # full: 10,000 rows, default world
    .venv/bin/python -m benchmarks.bench_explain --rows 2000 --preset small --no-depth   # quick

Times are wall clock on all cores (LightGBM/OpenMP and numba both use every core), best of
``--repeat``; the numba kernels are compiled and the tables built before timing (that set-up time
is printed separately). Memory is the peak RSS above the start of each call, sampled every 10 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from benchmarks._memory import PeakRSS
from omni_ml.explanation import TreeShap


def _time(fn: Callable[[], np.ndarray], repeat: int) -> tuple[float, float, np.ndarray]:
    best = float("inf")
    peak = 0.0
    out = np.empty(0)
    for _ in range(repeat):
        with PeakRSS() as mem:
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        peak = max(peak, mem.extra_mb)
    return best, peak, out


def _contenders(booster: lgb.Booster, x: np.ndarray, repeat: int, shap_rows: int) -> list[dict[str, Any]]:
    import shap

    # shap 0.51's "output has changed to a list" warning for binary LightGBM is stale (ECOSYSTEM.md).
    warnings.filterwarnings("ignore", message="LightGBM binary classifier with TreeExplainer")
    t = time.perf_counter()
    ts = TreeShap(booster)
    ts.shap_values(x)  # compile (or load the numba cache) and build the tables for this batch size
    setup = time.perf_counter() - t
    t = time.perf_counter()
    no_tables = TreeShap(booster, max_table_depth=0)
    no_tables.shap_values(x[:64])
    setup_nt = time.perf_counter() - t
    explainer = shap.TreeExplainer(booster)
    xs = x[:shap_rows]
    rows: list[dict[str, Any]] = []

    def add(name: str, fn: Callable[[], np.ndarray], n: int, note: str = "", slow: bool = False) -> None:
        seconds, mem, out = _time(fn, 1 if slow else repeat)
        rows.append({"name": name, "seconds": seconds, "rows": n, "mb": mem, "out": out, "note": note})

    add("LightGBM predict (raw score, not SHAP)", lambda: booster.predict(x, raw_score=True), len(x))
    add("LightGBM pred_contrib", lambda: np.asarray(booster.predict(xs, pred_contrib=True))[:, :-1], len(xs), slow=True)
    add("shap.TreeExplainer", lambda: np.asarray(explainer.shap_values(xs)), len(xs), slow=True)
    add(
        "ours: TreeShap (tables + dedupe)",
        lambda: ts.shap_values(x),
        len(x),
        f"first call {setup:.1f}s (compile, tables)",
    )
    add("ours: TreeShap, no dedupe", lambda: ts.shap_values(x, dedupe=False), len(x))
    add(
        "ours: no tables (per-row polynomials)", lambda: no_tables.shap_values(x), len(x), f"first call {setup_nt:.1f}s"
    )
    ref = rows[1]["out"]
    for row in rows[1:]:
        row["max_abs_diff"] = float(np.abs(row["out"][: len(xs)] - ref).max())
    rows[0]["max_abs_diff"] = float("nan")
    for row in rows:
        row["rows_per_s"] = row["rows"] / row["seconds"]
    distinct = np.unique(ts.decision_bins(x), axis=0).shape[0]
    rows.append({"distinct": distinct, "n": len(x), "table_mb": ts._table.nbytes / 2**20, "depth": ts.max_depth})
    return rows


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    meta = rows[-1]
    rows = rows[:-1]
    base = next(r for r in rows if r["name"] == "shap.TreeExplainer")["rows_per_s"]
    lgbm = next(r for r in rows if r["name"] == "LightGBM pred_contrib")["rows_per_s"]
    print(f"\n## {title}")
    print(
        f"rows explained: {meta['n']:,} ({meta['distinct']:,} distinct decision patterns); deepest leaf "
        f"{meta['depth']}; TreeShap tables {meta['table_mb']:.0f} MiB"
    )
    print(
        f"| {'contender':<40} | {'rows':>7} | {'rows/s':>9} | {'x shap':>7} | {'x pred_contrib':>14} | "
        f"{'peak +MiB':>9} | {'max|diff|':>9} | note"
    )
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 11}|{'-' * 9}|{'-' * 16}|{'-' * 11}|{'-' * 11}|------")
    for r in rows:
        print(
            f"| {r['name']:<40} | {r['rows']:>7,} | {r['rows_per_s']:>9,.0f} | {r['rows_per_s'] / base:>7.1f} | "
            f"{r['rows_per_s'] / lgbm:>14.1f} | {r['mb']:>9.0f} | {r['max_abs_diff']:>9.1e} | {r.get('note', '')}"
        )


def _synthetic(n_train: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_train, n_features))
    X[rng.random(X.shape) < 0.05] = np.nan
    z = np.nan_to_num(X)
    logit = z[:, :8].sum(axis=1) * 0.4 + z[:, 8] * z[:, 9] + np.sin(2 * z[:, 10]) + 0.5 * (z[:, 11] > 0.5)
    y = (rng.random(n_train) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _train(X: np.ndarray, y: np.ndarray, *, max_depth: int = -1, rounds: int = 300) -> lgb.Booster:
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "max_depth": max_depth,
        "learning_rate": 0.05,
        "min_data_in_leaf": 20,
        "verbose": -1,
        "seed": 0,
        "deterministic": True,
    }
    return lgb.train(params, lgb.Dataset(X, y), rounds)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def part_synthetic(args: argparse.Namespace) -> None:
    X, y = _synthetic(args.train_rows + args.rows, 40, args.seed)
    booster = _train(X[: args.train_rows], y[: args.train_rows])
    x = np.ascontiguousarray(X[args.train_rows :])
    _print(
        f"Synthetic: 300 trees x 31 leaves, 40 features, trained on {args.train_rows:,} rows",
        _contenders(booster, x, args.repeat, min(args.rows, args.shap_rows)),
    )


def part_depth(args: argparse.Namespace) -> None:
    X, y = _synthetic(args.train_rows + args.rows, 40, args.seed)
    xtr, ytr, xte, yte = X[: args.train_rows], y[: args.train_rows], X[args.train_rows :], y[args.train_rows :]
    print("\n## Depth caps (same synthetic data; AUC on the explained rows, held out)")
    print(f"| {'max_depth':>9} | {'AUC':>7} | {'deepest':>7} | {'pred_contrib rows/s':>19} | {'ours rows/s':>11} |")
    print(f"|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 21}|{'-' * 13}|")
    for depth in (-1, 10, 8, 6):
        booster = _train(xtr, ytr, max_depth=depth)
        ts = TreeShap(booster)
        ts.shap_values(xte)
        sub = xte[: min(len(xte), args.shap_rows)]
        lgb_s, _, _ = _time(lambda b=booster, s=sub: np.asarray(b.predict(s, pred_contrib=True)), 1)
        ours_s, _, _ = _time(lambda t=ts: t.shap_values(xte), args.repeat)
        auc = _auc(yte, booster.predict(xte, raw_score=True))
        print(
            f"| {depth:>9} | {auc:>7.4f} | {ts.max_depth:>7} | {len(sub) / lgb_s:>19,.0f} | "
            f"{len(xte) / ours_s:>11,.0f} |"
        )


def part_world(args: argparse.Namespace) -> None:
    import polars as pl

    from omni_ml.data import load_histories
    from omni_ml.features import build_features
    from omni_ml.identity import resolve_identities
    from omni_ml.training import training_cutoffs, training_set

    if args.world:
        world = Path(args.world)
    else:
        from omni_ml.simulate import preset, simulate

        world = Path(tempfile.mkdtemp(prefix=f"bench_explain_{args.preset}_"))
        t = time.perf_counter()
        simulate(preset(args.preset, seed=args.seed), world)
        print(f"\nsimulated {args.preset} world (seed {args.seed}) in {time.perf_counter() - t:.1f}s -> {world}")
    meta = json.loads((world / "truth" / "world.json").read_text())["config"]
    end = dt.datetime.fromisoformat(meta["end"]).replace(tzinfo=dt.UTC)
    hist = resolve_identities(load_histories(world, as_of=end), as_of=end).collect()
    horizon = 28
    ts_train = training_set(hist, training_cutoffs(end, horizon, n=4), horizon, as_of=end)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "verbose": -1, "seed": 0},
        lgb.Dataset(ts_train.X.to_numpy(), ts_train.y, feature_name=ts_train.X.columns),
        300,
    )
    scoring = build_features(hist, end, feature_set=ts_train.feature_set)
    x = np.ascontiguousarray(scoring.select(ts_train.X.columns).to_numpy().astype(np.float64))
    distinct_raw = scoring.select(ts_train.X.columns).unique().height
    _print(
        f"Simulated customers ({args.preset} world, {hist.events.select(pl.len()).collect().item():,} events): "
        f"LightGBM 300 trees x 31 leaves on {len(ts_train.X.columns)} toolkit features, "
        f"{ts_train.X.height:,} training rows; every customer explained at {end.date()} "
        f"({distinct_raw:,} distinct feature rows)",
        _contenders(booster, x, args.repeat, min(len(x), args.shap_rows)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="synthetic rows to explain")
    parser.add_argument("--train-rows", type=int, default=20_000, help="synthetic training rows")
    parser.add_argument("--shap-rows", type=int, default=5_000, help="rows for the slow contenders")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs (fast contenders)")
    parser.add_argument("--preset", default="default", help="simulator preset for part 2")
    parser.add_argument("--world", default=None, help="an existing simulated world instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic model")
    parser.add_argument("--no-world", action="store_true", help="skip the simulated customers")
    parser.add_argument("--no-depth", action="store_true", help="skip the depth-cap table")
    args = parser.parse_args()
    import numba

    print(
        f"# bench_explain  cores={os.cpu_count()} numba threads={numba.get_num_threads()} "
        f"lightgbm {lgb.__version__}  numpy {np.__version__}"
    )
    if not args.no_synthetic:
        part_synthetic(args)
    if not args.no_world:
        part_world(args)
    if not args.no_depth:
        part_depth(args)


if __name__ == "__main__":
    main()
