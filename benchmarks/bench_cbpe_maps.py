"""Claim (issue 25): CBPE misses because of the scoring month's own calibration, which no earlier window carries.

Run from the repository root (results go to benchmarks/RESULTS.md by hand)::

    .venv/bin/python -m benchmarks.bench_cbpe_maps --end 2024-07-01 --seeds 40 --first-seed 300
    .venv/bin/python -m benchmarks.bench_cbpe_maps --end 2024-07-01 --seeds 40 --first-seed 400 --years 2

Per seed the world, model recipe and scoring of :mod:`benchmarks.bench_monitor` (its ``unchanged`` regime;
``--years 2``: the same preset simulated over two years before ``--end``), and the expected AUC, buyers and
top-decile lift (CBPE) of the scored customers from the model's propensities, re-mapped by a Platt map
(intercept and slope on the log-odds of the model's raw score) fitted on:

* ``model`` -- nothing new: the model's own map, fitted at training on its latest training window;
* ``shared_slope`` -- the model's early-stopping and calibration windows together: one slope, the
  intercept of the latest window (twice the rows for the slope, the level of the latest window);
* ``fresh`` -- the latest window complete at the scoring date (cutoff ``end - 28 days``, its labels end at
  ``end``), as a scoring job could refit it;
* ``year_ago`` -- the window of the same season a year earlier (cutoff ``end - 364 days``; ``--years 2``);
* ``season_slope`` -- the year-ago window's slope with the intercept refitted on the freshest complete window
  (the season's spread, the latest level; ``--years 2``);
* ``half_month`` -- half of the scored customers (drawn at random) with their outcomes in the scored month
  itself: what a map that knew the month would give (not available before the outcomes; a ceiling for
  any map of this family);
* ``truth`` -- the simulator's true probabilities (as ``oracle`` in bench_monitor: the ceiling).

Each expected figure is counted "inside" when it lies in the realised figure's 95% bootstrap interval
(400 resamples over customers), as in bench_monitor. Printed: per variant the count inside and the mean
expected buyer rate and top-decile rate against the realised ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import warnings
from typing import Any

import numpy as np
import polars as pl

from benchmarks import bench_monitor as bm

VARIANTS = ("model", "shared_slope", "fresh", "year_ago", "season_slope", "half_month", "truth")


def _platt(raw: np.ndarray, y: np.ndarray, latest: np.ndarray | None = None) -> tuple[float, float]:
    """Slope and intercept of an unpenalised logistic regression of ``y`` on ``raw``.

    ``latest``: rows of the latest window; then the regression has an intercept per window (a 0/1
    column for the latest) and the latest window's intercept is returned.
    """
    from sklearn.linear_model import LogisticRegression

    columns = raw.reshape(-1, 1) if latest is None else np.column_stack([raw, latest.astype(np.float64)])
    fit = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(columns, y)
    shift = 0.0 if latest is None else float(fit.coef_[0, 1])
    return float(fit.coef_[0, 0]), float(fit.intercept_[0]) + shift


def _window_rows(
    model: Any, resolved: Any, cutoffs: list[dt.datetime], as_of: dt.datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's raw score, the labels and the cutoff of every row of the windows at ``cutoffs``."""
    from omni_ml.data import load_histories
    from omni_ml.training import training_set

    p = model.propensity_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = training_set(load_histories(resolved), cutoffs, bm.HORIZON, feature_set=p.feature_set_, as_of=as_of)
    raw = np.asarray(p.predict_raw(ts.X.select(p.feature_names_in_)))
    return raw, np.asarray(ts.y).astype(np.int64), ts.keys["cutoff"].to_numpy()


def _intercept(raw: np.ndarray, y: np.ndarray, slope: float) -> float:
    """The maximum-likelihood intercept of a logistic map with a fixed ``slope``: the mean matches the rate."""
    from scipy.optimize import brentq

    return float(brentq(lambda c: float(np.sum(1 / (1 + np.exp(-(slope * raw + c)))) - y.sum()), -50.0, 50.0))


def _window_map(model: Any, resolved: Any, cutoff: dt.datetime, as_of: dt.datetime) -> tuple[float, float]:
    """A Platt map of the model's raw score fitted on the rows of one window (features before, labels after)."""
    raw, y, _ = _window_rows(model, resolved, [cutoff], as_of)
    return _platt(raw, y)


def _shared_slope_map(model: Any, resolved: Any, as_of: dt.datetime) -> tuple[float, float]:
    """One slope over the model's early-stopping and calibration windows, the calibration window's intercept."""
    split = model.propensity_.split_
    cutoffs = [
        dt.datetime.fromisoformat(c).replace(tzinfo=dt.UTC) for c in split["early_stopping"] + split["calibration"]
    ]
    raw, y, cutoff = _window_rows(model, resolved, cutoffs, as_of)
    return _platt(raw, y, latest=cutoff == cutoff.max())


def _on_model_log_odds(model: Any, slope: float, intercept: float) -> tuple[float, float]:
    """(intercept, slope) on the log-odds of the model's calibrated propensity equal to ``slope * raw + intercept``."""
    a, b = model.propensity_.calibrator_.a_, model.propensity_.calibrator_.b_
    return intercept - slope * b / a, slope / a


def _inside(figures: dict[str, Any]) -> list[bool]:
    return [
        bool(figures[f"{k}_ci"][0] <= figures[f"expected_{k}"] <= figures[f"{k}_ci"][1])
        for k in ("auc", "buyers", "lift")
    ]


def run(args: argparse.Namespace) -> pl.DataFrame:
    from omni_ml.campaign import CampaignModel
    from omni_ml.scoring import score
    from omni_ml.simulate.cache import purchase_outcomes

    as_of = dt.datetime.fromisoformat(bm.AS_OF).replace(tzinfo=dt.UTC)
    trained = dt.datetime.fromisoformat(bm.TRAIN_AS_OF).replace(tzinfo=dt.UTC)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        raw_dir, resolved = bm._world(seed, None, years=args.years)
        path = bm._model(seed, resolved, reuse=True, years=args.years)
        out = bm.DATA / f"campaign_{path.stem.removeprefix('model_')}_unchanged.parquet"
        if not out.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score(resolved, model=path, as_of=bm.AS_OF, out=out, reasons=0, progress=False)
        campaign = pl.read_parquet(out)
        model = CampaignModel.load(path)
        outcomes = purchase_outcomes(raw_dir, bm.HORIZON)
        maps: dict[str, tuple[float, float]] = {"model": (0.0, 1.0)}
        maps["shared_slope"] = _on_model_log_odds(model, *_shared_slope_map(model, resolved, trained))
        fresh_raw, fresh_y, _ = _window_rows(model, resolved, [as_of - dt.timedelta(days=28)], as_of)
        maps["fresh"] = _on_model_log_odds(model, *_platt(fresh_raw, fresh_y))
        if args.years >= 2:
            year_ago = as_of - dt.timedelta(days=364)
            slope, intercept = _window_map(model, resolved, year_ago, as_of)
            maps["year_ago"] = _on_model_log_odds(model, slope, intercept)
            maps["season_slope"] = _on_model_log_odds(model, slope, _intercept(fresh_raw, fresh_y, slope))
        month = campaign.join(outcomes, on="customer_id", how="inner")
        half = np.random.default_rng(seed).random(month.height) < 0.5
        maps["half_month"] = bm.recalibration(
            month["bought"].to_numpy()[half], month["propensity"].to_numpy()[half]
        )  # fmt: skip
        row: dict[str, Any] = {"seed": seed}
        for name, recal in maps.items():
            figures = bm._realised(
                campaign, raw_dir, np.random.default_rng(seed), recalibrate=recal, outcomes=outcomes
            )  # fmt: skip
            row |= {f"{name}_{k}_in": v for k, v in zip(("auc", "buyers", "lift"), _inside(figures), strict=True)}
            row |= {f"{name}_rate": figures["expected_buyers"] / figures["matched"], f"{name}_slope": recal[1]}
            row |= {f"{name}_top": figures["expected_top_rate"]}
            row |= {"rate": figures["buyers"] / figures["matched"], "top_rate": figures["top_rate"]}
        truth = bm._realised(campaign, raw_dir, np.random.default_rng(seed), oracle=True)
        row |= {f"truth_{k}_in": v for k, v in zip(("auc", "buyers", "lift"), _inside(truth), strict=True)}
        rows.append(row)
        print(row, flush=True)
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end", default="2024-07-01", help="end of the simulated history (scoring date)")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=300)
    parser.add_argument("--years", type=int, default=1, help="years of simulated history before --end")
    args = parser.parse_args()
    bm.END = dt.date.fromisoformat(args.end)
    bm.START, bm.TRAIN_AS_OF, bm.AS_OF, bm.CHANGE = bm._dates(bm.END)
    table = run(args)
    print(f"\n{table.height} worlds, {args.years} year(s) of history, scored {bm.AS_OF}:")
    print("map            AUC in  buyers in  lift in  expected / realised buyer rate  top-decile rate  slope")
    for name in VARIANTS:
        if f"{name}_auc_in" not in table.columns:
            continue
        counts = [int(table[f"{name}_{k}_in"].sum()) for k in ("auc", "buyers", "lift")]
        rates = (
            f"{table[f'{name}_rate'].mean():.4f} / {table['rate'].mean():.4f}  "
            f"{table[f'{name}_top'].mean():.3f} / {table['top_rate'].mean():.3f}  "
            f"{table[f'{name}_slope'].mean():.3f}"
            if f"{name}_rate" in table.columns
            else "-"
        )
        print(f"{name:<14} {counts[0]:>6}  {counts[1]:>9}  {counts[2]:>7}  {rates}")


if __name__ == "__main__":
    main()
