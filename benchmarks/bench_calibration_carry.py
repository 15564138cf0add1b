"""Does the latest training window's level carry to the scoring window? A check for the calibration map.

Claim tested (issue 25 fourth pass, issue 27): on a history under a year a data check could decide whether to
keep the propensity calibration map: fit the map on the second-latest training cutoff's label window, apply it
to the latest one, and keep the map when that improves the latest window's log loss over the booster's own
level. Printed per world: each of the two windows' realised rate and the booster's mean probability; the
latest window's log loss, raw and with the map from the window before; and at the scoring date the realised
rate and the mean probability raw and with the map fitted on the latest window (the map the library fits).

The booster is a :class:`omni_ml.models.propensity.PropensityModel` without calibration on the features of
the short-history choice (no ``time_of_year`` family); ``--cutoffs auto`` takes the library's default
cutoffs and model, a number takes that many cutoffs 28 days apart with the small model of
``bench_monitor``. ``--world`` is a world written by ``omni-ml simulate`` (raw, with its truth); it is
resolved as of the scoring date here (``OMNI_ML_UNSALTED=1``: a simulated world is not personal data).

    OMNI_ML_UNSALTED=1 python -m benchmarks.bench_calibration_carry --world W --train-as-of 2025-01-01 \\
        --as-of 2025-01-01 --horizon 30 --cutoffs auto
"""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import polars as pl
from sklearn.metrics import log_loss

from omni_ml.data import load_histories
from omni_ml.features import FeatureConfig, build_features
from omni_ml.identity import resolve_identities
from omni_ml.models._common import fit_calibrator
from omni_ml.models.propensity import PropensityModel
from omni_ml.simulate.cache import purchase_outcomes
from omni_ml.training import training_cutoffs, training_set

SMALL_MODEL = {"n_estimators": 120, "learning_rate": 0.1, "early_stopping_rounds": 20, "num_leaves": 15}


def _utc(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True)
    parser.add_argument("--train-as-of", required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--cutoffs", default="auto", help="'auto' or a number of cutoffs 28 days apart")
    args = parser.parse_args()

    hist = resolve_identities(load_histories(args.world), as_of=args.as_of).collect()
    first = hist.events.select(pl.col("timestamp").min()).collect().item()
    n = None if args.cutoffs == "auto" else int(args.cutoffs)
    cuts = training_cutoffs(args.train_as_of, args.horizon, n=n, first_event=first)
    ts = training_set(hist, cuts, args.horizon, config=FeatureConfig(exclude=("time_of_year",)), as_of=args.train_as_of)
    model = PropensityModel(calibration=None, **({} if n is None else SMALL_MODEL)).fit(ts.X, ts.y, cutoff=ts.cutoff)

    cutoff = np.asarray(ts.cutoff)
    windows = np.unique(cutoff)
    raw = model.booster_.predict(ts.X.select(model.feature_names_in_).to_numpy(), raw_score=True)
    p, y = 1.0 / (1.0 + np.exp(-raw)), np.asarray(ts.y)
    before, latest = cutoff == windows[-2], cutoff == windows[-1]
    print(f"cutoffs: {len(windows)}, {str(windows[0])[:10]} .. {str(windows[-1])[:10]}")
    for name, mask in (("second-latest", before), ("latest", latest)):
        print(f"  {name} window: realised rate {y[mask].mean():.4f}, booster's mean p {p[mask].mean():.4f}")
    carried = fit_calibrator(raw[before], y[before], "sigmoid").predict(raw[latest])
    print(
        f"  latest window's log loss: raw {log_loss(y[latest], p[latest]):.5f}, "
        f"map from the window before {log_loss(y[latest], carried):.5f}"
    )
    scoring = build_features(hist, _utc(args.as_of), feature_set=ts.feature_set)
    outcomes = purchase_outcomes(args.world, args.horizon).select("customer_id", "bought")
    scoring = scoring.join(outcomes, on="customer_id", how="inner")
    r = model.booster_.predict(scoring.select(model.feature_names_in_).to_numpy(), raw_score=True)
    mapped = fit_calibrator(raw[latest], y[latest], "sigmoid").predict(r)
    print(
        f"  scoring date: realised rate {scoring['bought'].mean():.4f}, booster's mean p "
        f"{np.mean(1.0 / (1.0 + np.exp(-r))):.4f}, with the latest window's map {mapped.mean():.4f}"
    )


if __name__ == "__main__":
    main()
