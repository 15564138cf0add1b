"""Where the time of scoring one chunk goes: the passes over the histories, one by one (issue 21).

Run from the repository root on a world and a campaign model saved with ``omni-ml train --out``::

    OMNI_ML_UNSALTED=1 .venv/bin/python -m benchmarks.bench_scoring_passes WORLD MODEL --as-of 2025-01-01

The whole world is one chunk. Each pass is timed ``--repeat`` times (the minimum is printed), each on its
own, as the scoring of a chunk calls it:

* ``propensity features``: ``build_features`` with the propensity model's feature set (all customers);
* ``channel features``: ``build_features`` with the channel model's feature set (the same customers);
* ``value features``: ``build_features`` with the value model's feature set (when it has one);
* ``history facts``: :func:`omni_ml.policy.history_facts` (contact pressure, incidents, categories);
* ``one plan``: the union of the four above in one engine plan (``CampaignModel._chunk_inputs``; only
  where the package has it), with the channel model's response history where the package plans it;
* ``response history``: :func:`omni_ml.models.channel.response_history` on its own (a pass of its own
  before issue 21's response-history change, a plan of its hidden features after it);
* ``consent``, ``value stats``, ``clv_12m``: the passes outside the feature engine;
* ``whole chunk, no reasons`` / ``3 reasons``: ``CampaignModel._score_personal`` (everything: model
  predictions, decisions, send times, and the reasons).

Run it with the package before and after a change (``PYTHONPATH=<checkout>``) to compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import polars as pl


def _best(repeat: int, run: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world")
    parser.add_argument("model")
    parser.add_argument("--as-of", default="2025-01-01")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import omni_ml
    from omni_ml.campaign import CampaignModel, _clv_12m
    from omni_ml.data import TIMESTAMP, load_histories
    from omni_ml.features import build_features
    from omni_ml.identity import consent_state, ensure_resolved
    from omni_ml.models import _channel_data
    from omni_ml.models._channel_response import response_history
    from omni_ml.policy import history_facts

    model = CampaignModel.load(args.model)
    moment = dt.datetime.fromisoformat(args.as_of).replace(tzinfo=dt.UTC)
    hist = ensure_resolved(load_histories(args.world), moment)
    hist = hist.replace(**{t: lf.collect().lazy() for t, lf in hist.tables().items()})  # in memory, like a chunk
    ids = build_features(hist, moment, feature_set=model.feature_set_)["customer_id"].sort()
    keys = pl.DataFrame({"customer_id": ids, "cutoff": pl.Series([moment] * ids.len(), dtype=TIMESTAMP)})
    channel, policy = model.channel_model_, model.policy_
    value_model = getattr(model, "value_model_", None)
    stats = getattr(model, "value_stats_", None)
    print(f"omni_ml from {omni_ml.__file__}; {ids.len():,} customers; as of {moment:%Y-%m-%d}")

    passes: dict[str, Callable[[], Any]] = {
        "propensity features": lambda: build_features(hist, moment, feature_set=model.feature_set_),
    }
    if channel is not None:
        passes["channel features"] = lambda: build_features(hist, keys, feature_set=channel.feature_set_)
    if value_model is not None:
        passes["value features"] = lambda: build_features(hist, moment, feature_set=value_model.feature_set_)
    if channel is not None:
        passes["history facts"] = lambda: history_facts(hist, moment, config=policy, customers=ids)
    if hasattr(model, "_chunk_inputs"):
        passes["one plan"] = lambda: model._chunk_inputs(hist, moment)
    settings = None
    if channel is not None and hasattr(_channel_data, "response_spec"):  # the response history in the plan
        spec = _channel_data.response_spec(channel)
        settings = None if spec is None else (list(spec.channels), spec.window_days, spec.baseline)
    elif channel is not None:  # before issue 21's response-history change
        settings = _channel_data._response_settings(channel)  # type: ignore[attr-defined]
    if settings is not None:
        chans, window_days, baseline = settings
        passes["response history"] = lambda: response_history(hist, keys, chans, window_days, baseline=baseline)
    if channel is not None:
        passes["consent"] = lambda: consent_state(
            hist, keys, channels=list(policy.channels), default=policy.default_consent
        )
    if stats is not None:
        passes["value stats"] = lambda: stats.order_value(hist, moment, ids)
    passes["clv_12m"] = lambda: _clv_12m(getattr(model, "clv_models_", None), hist, moment, ids)
    schema = model.output_schema(reasons=3)
    passes["whole chunk, no reasons"] = lambda: model._score_personal(hist, moment, 0, model.output_schema(reasons=0))
    passes["whole chunk, 3 reasons"] = lambda: model._score_personal(hist, moment, 3, schema)

    rows = [{"pass": name, "seconds": _best(args.repeat, run)} for name, run in passes.items()]
    with pl.Config(tbl_rows=30, float_precision=3, tbl_hide_dataframe_shape=True):
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
