"""Where the channel model's uplift goes wrong: per-channel mean estimated vs true uplift, by no-contact design.

Run from the repository root on a simulated world::

    .venv/bin/python -m benchmarks.bench_channel_bias --world DIR --seed 11 --pause-units window,day

For each ``ChannelConfig.pause_units`` the S-learner (library defaults otherwise) is fitted as of the
world's ``end``; printed: the value over pausing everyone by the truth as a share of the oracle's (the
oracle under the same consent and pressure rules), the no-contact units' conversion, and per channel
the mean estimated uplift, the mean true uplift and their correlation over customers. As a diagnostic
only, the value after multiplying every estimated uplift by a constant is printed too (constants
applied with the truth's hindsight: no policy can choose them this way).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import polars as pl

from omni_ml.data import load_histories
from omni_ml.features import build_features
from omni_ml.identity import consent_state, resolve_identities
from omni_ml.models.channel import ChannelConfig, ChannelModel, channel_training_data, response_history
from omni_ml.policy import PolicyConfig, decide, history_facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pause-units", default="window,day")
    parser.add_argument("--value", type=float, default=40.0)
    args = parser.parse_args()
    world: Path = args.world
    end = dt.datetime.fromisoformat(json.loads((world / "truth" / "world.json").read_text())["config"]["end"])
    end = end.replace(tzinfo=dt.UTC)
    hist = resolve_identities(load_histories(world)).collect()
    truth = pl.read_parquet(world / "truth" / "channel_response.parquet")
    ids = truth["customer_id"].unique().sort()
    consent = consent_state(hist, end)
    policy = PolicyConfig(conversion_value=args.value)
    facts = history_facts(hist, end, config=policy, customers=ids)
    true_u = truth.with_columns((pl.col("p_if_contacted") - pl.col("p_if_not")).alias("true_u"))

    def value(est: pl.DataFrame) -> tuple[float, int]:
        d = decide(est, consent, facts, policy).select("customer_id", "best_channel")
        j = d.join(true_u, left_on=["customer_id", "best_channel"], right_on=["customer_id", "channel"], how="left")
        v = j.select((pl.col("true_u") * args.value - pl.col("cost")).fill_null(0.0).sum()).item()
        return float(v), int((d["best_channel"] != "no_contact").sum())

    oracle = value(truth)[0]
    keys_end = pl.DataFrame(
        {"customer_id": ids, "cutoff": pl.Series([end] * ids.len(), dtype=pl.Datetime("us", "UTC"))}
    )
    for units in args.pause_units.split(","):
        cfg = ChannelConfig(seed=args.seed, pause_units=units)  # type: ignore[arg-type]
        data = channel_training_data(hist, end, cfg)
        X_end = build_features(hist, keys_end, feature_set=data.feature_set).drop("customer_id", "cutoff")
        extra = response_history(hist, keys_end, cfg.channels, cfg.window_days, baseline=True)
        X_end = pl.concat([X_end, extra], how="horizontal")
        model = ChannelModel(learner="s", random_state=args.seed).fit(data.X, data.arm, data.y)
        effects = model.predict_effects(X_end, customer_id=ids)
        v, n = value(effects)
        pause_rate = data.keys.filter(pl.col("arm") == "no_contact")["converted"].mean()
        print(
            f"pause_units={units}: value/oracle {v / oracle:.3f}, contacts {n:,}; "
            f"no-contact conversion {pause_rate:.4f}"
        )
        table = (
            effects.join(true_u, on=["customer_id", "channel"])
            .group_by("channel")
            .agg(
                pl.col("uplift").mean().alias("mean estimated uplift"),
                pl.col("true_u").mean().alias("mean true uplift"),
                pl.corr("uplift", "true_u").alias("correlation"),
            )
            .sort("channel")
        )
        print(table)
        for scale in (0.7, 0.5, 0.4, 0.3):
            scaled = effects.with_columns((pl.col("p_if_not") + scale * pl.col("uplift")).alias("p_if_contacted"))
            v, n = value(scaled)
            print(f"  diagnostic, every uplift x {scale}: value/oracle {v / oracle:.3f}, contacts {n:,}")


if __name__ == "__main__":
    main()
