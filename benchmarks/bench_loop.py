"""The closed loop, measured month by month: learned channel policy vs baselines vs oracle (issue 20).

Run from the repository root (heavy: serialise with the shared lock)::

    flock /tmp/omni_heavy.lock .venv/bin/python -m benchmarks.bench_loop --customers 10000 --seed 11

Simulates a one-year world (the ``small`` preset's calendar, ``--customers`` persons, ``--seed``; or reuses
``--world``), then :func:`omni_ml.loop.run_loop`: ``--cycles`` monthly cycles of train -> score (exploration
``--explore``, control group ``--control``) -> continue the world ``--days`` -> feedback -> retrain, for the
learned policy, always-email, most-engaged, random channel and the oracle, each in its own copy of the
world, under the same consent and pressure rules. Prints one table per cycle and the cumulated values, and
writes ``--out`` (csv) and ``--plot`` (png). Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import polars as pl

from omni_ml.loop import POLICIES, LoopConfig, plot_learning_curves, run_loop, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=11, help="world seed (not one the defaults were tuned on)")
    parser.add_argument("--world", type=Path, default=None, help="reuse a simulated one-year world")
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--explore", type=float, default=0.1)
    parser.add_argument("--control", type=float, default=0.1)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="per-cycle table (csv)")
    parser.add_argument("--plot", type=Path, default=None, help="learning curves (png)")
    parser.add_argument(
        "--campaign",
        default=None,
        help="JSON mapping of CampaignConfig fields for the learned policy, e.g. "
        '\'{"channel": {"calibrate_pause": false}}\'',
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_loop_"))
    world = args.world
    if world is None:
        from omni_ml.simulate import preset, simulate

        world = simulate(preset("small", n_customers=args.customers, seed=args.seed), workdir / "world")
    variant = {} if args.campaign is None else {"campaign": {**LoopConfig().campaign, **json.loads(args.campaign)}}
    config = LoopConfig(
        **variant,
        cycles=args.cycles,
        days=args.days,
        explore=args.explore,
        control_fraction=args.control,
        policies=tuple(args.policies.split(",")),
        seed=args.seed,
    )
    table = run_loop(world, workdir / "runs", config, progress=print)
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(200)
    shown = table.select(
        "cycle",
        "policy",
        pl.col("value_policy").round(4),
        pl.col("share_of_oracle").round(3),
        pl.col("value_sent").round(4),
        pl.col("exploration_cost").round(4),
        "contacts",
        pl.col("measured_incremental").round(1),
        pl.col("measured_low").round(1),
        pl.col("measured_high").round(1),
        "consent_breaks",
        "pressure_breaks",
    )
    print(shown)
    print(summarise(table).with_columns(pl.selectors.float().round(4)))
    if args.out is not None:
        table.write_csv(args.out)
    if args.plot is not None:
        plot_learning_curves(table, args.plot)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"whole run {time.perf_counter() - t0:.0f} s wall, peak RSS {peak:,.0f} MB; workdir {workdir}")


if __name__ == "__main__":
    main()
