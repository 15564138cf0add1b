"""``make demo``: the main job end to end on embedded defaults.

Run with ``python -m omni_ml.demo [OUT_DIR]``. Each step prints what it did and where its output is.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from omni_ml._time import as_utc
from omni_ml.data import NO_CONTACT, load_histories

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def run(out_dir: Path) -> None:
    """Run every capability that the toolkit has, in the order of the data flow."""
    out_dir.mkdir(parents=True, exist_ok=True)
    print("== 1. validate the hand-written sample histories (data/sample)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = load_histories(SAMPLE)
    assert hist.report is not None
    print(hist.report.to_text())
    campaign_step(out_dir)


def campaign_step(out_dir: Path, *, tracking_uri: str | None = None, register_as: str = "omni_ml_campaign") -> Any:
    """Simulate the small world, train a campaign model tracked in MLflow, register it as champion, score.

    The model is logged to the embedded MLflow store (``./mlflow.db`` unless ``MLFLOW_TRACKING_URI`` or
    ``tracking_uri`` says otherwise), registered as ``register_as`` with alias ``champion``, and the
    scoring job loads it back by ``models:/<register_as>@champion``. Returns the ScoringSummary.
    """
    import datetime as dt

    from omni_ml.scoring import score
    from omni_ml.simulate import preset, simulate
    from omni_ml.tracking import resolve_tracking_uri, train_campaign

    config = preset("small", seed=0)
    world = out_dir / "world"
    print(f"== simulate the small world ({config.n_customers:,} persons, {config.start} .. {config.end}) -> {world}")
    if not (world / "events.parquet").exists():
        simulate(config, world)
    end = as_utc(config.end)
    train_as_of = end - dt.timedelta(days=28)
    print(f"== train the campaign model as of {train_as_of:%Y-%m-%d} (propensity, channel model, policy)")
    uri = resolve_tracking_uri(tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = load_histories(world)
        model, run = train_campaign(
            hist,
            train_as_of,
            28,
            run_name="demo-campaign",
            register_as=register_as,
            alias="champion",
            tracking_uri=uri,
            source=str(world.resolve()),
        )
    print(f"   {model}")
    keys = ("auc", "pr_auc", "brier", "ece", "top_decile_lift", "base_rate")
    print("   propensity back-test: " + ", ".join(f"{k} {model.metrics_[k]:.3f}" for k in keys if k in model.metrics_))
    if model.channel_backtest_ is not None:
        print("   " + model.channel_backtest_.to_text().replace("\n", "\n   "))
    model_uri = f"models:/{register_as}@champion"
    print(f"   MLflow run {run.run_id} in {uri}; registered {register_as} version {run.version} as {model_uri}")
    out = out_dir / "campaign.parquet"
    print(f"== score every customer as of {end:%Y-%m-%d} with {model_uri}")
    summary = score(world, model=model_uri, as_of=end, out=out, reasons=3, tracking_uri=uri, progress=False)
    print(summary.to_text())
    _show_one_contact(out)
    print(f"MLflow UI:     mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)")
    return summary


def _show_one_contact(campaign: Path) -> None:
    """Print the first contacted customer's row: decision, value and both kinds of reasons."""
    import polars as pl

    rows = pl.read_parquet(campaign).filter(~pl.col("control_group") & (pl.col("best_channel") != NO_CONTACT))
    if rows.height == 0:
        return
    row = rows.row(0, named=True)
    print(
        f"== one row of the campaign file: {row['customer_id']}: {row['best_channel']} "
        f"(propensity {row['propensity']:.3f}, decile {row['propensity_decile']}, "
        f"uplift {row['expected_uplift']:+.4f}, value {row['expected_value']:+.3f}, rule {row['rule']})"
    )
    for kind, prefix in (("why likely to buy", "reason_"), ("why this channel", "channel_reason_")):
        texts = [row[c] for c in row if c.startswith(prefix) and c[len(prefix) :].isdigit() and row[c]]
        print(f"   {kind}: " + "; ".join(texts))


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m omni_ml.demo``."""
    import os

    from omni_ml._privacy import UNSALTED_ENV

    # The demo's world is simulated, not personal: plain hashes for its anonymous ids unless a key is set.
    os.environ.setdefault(UNSALTED_ENV, "1")
    args = sys.argv[1:] if argv is None else argv
    run(Path(args[0]) if args else Path("demo_out"))


if __name__ == "__main__":
    main()
