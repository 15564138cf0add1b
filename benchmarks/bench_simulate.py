"""Simulator throughput, peak memory and the oracle AUC.

Run from the repository root::

    nice -n 10 .venv/bin/python -m benchmarks.bench_simulate                 # large preset: 1M customers
    .venv/bin/python -m benchmarks.bench_simulate --scale 0.05                # 50,000 customers (quick)
    .venv/bin/python -m benchmarks.bench_simulate --skip-scale                # oracle AUC only

Each world is simulated in a fresh subprocess so its peak RSS is clean. Reported: wall and CPU time
(the machine may be shared: events per CPU-second is the load-independent figure), rows written (all
history tables + truth), history events per second against the 1M events/s target, peak RSS of the
writer process and of the largest chunk worker; then for the ``default`` preset the AUC of the true
``p_purchase`` against realised purchases in the future window (the oracle a propensity model can at
best approach), and calibration (mean p vs rate).
The named alternative is the target of issue 3 (1M events/s), shown as a ratio.

Measured (2-core, 24 GiB machine; ``flock /tmp/omni_heavy.lock .venv/bin/python -m benchmarks.bench_simulate``;
large preset, 1,000,000 customers x 1 year + 30 future days, 2 workers; 47,812,539 history events,
83,888,755 rows in all tables):

==========================  ========  =======  ============  ===========  ==================
code                          wall s    CPU s      events/s    ev/CPU-s   peak RSS (writer / worker)
==========================  ========  =======  ============  ===========  ==================
before (2e99676), idle        75.5     141.2      633,298      338,577     4,053 / 3,411 MB
after (4ebba16), busy         36.9      71.1    1,295,110      672,522     1,577 / 1,894 MB
==========================  ========  =======  ============  ===========  ==================

1.30x the 1M events/s target ("busy": other sessions ran light jobs meanwhile); the tables hold the
same rows as before (same seed, same world).
Where the time went: worker processes imported the whole package (now only ``omni_ml.simulate``),
chunks crossed processes as pickled polars frames of strings (now arrow tables with dictionary-coded
strings, about 10x cheaper), strings were gathered row by row (now codes, and identifier strings
written straight into arrow buffers by numba), the day step and per-row identifier work are numba
kernels, and worker processes keep freed memory for their next chunk. Oracle (default preset):
AUC 0.917 (alive only 0.837), mean p_purchase 0.1322 vs realised rate 0.1321, unchanged.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_EVENTS_PER_S = 1_000_000


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child(preset_name: str, n_customers: int | None, out: str, workers: int) -> None:
    """Simulate one world and print JSON figures (runs in a subprocess)."""
    import polars as pl

    from omni_ml.simulate import preset, simulate

    overrides = {} if n_customers is None else {"n_customers": n_customers}
    cfg = preset(preset_name, **overrides)
    t0, c0 = time.perf_counter(), _cpu()
    simulate(cfg, out, workers=workers)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    rows = {}
    for path in sorted(Path(out).rglob("*.parquet")):
        rows[str(path.relative_to(out))] = pl.scan_parquet(path).select(pl.len()).collect().item()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {"customers": cfg.n_customers, "seconds": seconds, "cpu": cpu, "rows": rows}
    print(json.dumps(figures | {"peak_mb": peak_mb, "worker_mb": worker_mb}))


def _run(preset_name: str, n_customers: int | None, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_simulate", "--child", preset_name, "--out", str(out)]
    cmd += ["--workers", str(workers)]
    if n_customers is not None:
        cmd += ["--customers", str(n_customers)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _oracle(world: Path) -> dict[str, float]:
    import polars as pl
    from sklearn.metrics import roc_auc_score

    prop = pl.read_parquet(world / "truth" / "propensity.parquet")
    fut = pl.read_parquet(world / "truth" / "future_events.parquet", columns=["customer_id", "event_type"])
    buyers = fut.filter(pl.col("event_type") == "purchase")["customer_id"].unique()
    y = prop["customer_id"].is_in(buyers.implode()).to_numpy()
    p = prop["p_purchase"].to_numpy()
    alive = p > 0
    return {
        "auc": float(roc_auc_score(y, p)),
        "auc_alive_only": float(roc_auc_score(y[alive], p[alive])),
        "mean_p": float(p.mean()),
        "rate": float(y.mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the large preset's 1M customers")
    parser.add_argument("--skip-scale", action="store_true", help="only the oracle AUC of the default preset")
    parser.add_argument("--workers", type=int, default=2, help="processes for the scale run (default 2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.customers, args.out, args.workers)
        return
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as tmp:
        print(
            f"{'world':<9}{'workers':>8}{'customers':>11}{'wall s':>8}{'cpu s':>8}{'events':>13}{'all rows':>13}"
            f"{'events/s':>11}{'vs 1M/s':>8}{'ev/cpu-s':>10}{'peak MB':>9}{'worker MB':>10}"
        )
        runs = [("default", None, 1)]
        if not args.skip_scale:
            runs.append(("large", max(1_000, round(1_000_000 * args.scale)), args.workers))
        results = {}
        for name, n, workers in runs:
            out = Path(tmp) / name
            r = _run(name, n, out, workers)
            results[name] = (r, out)
            events = r["rows"]["events.parquet"]
            total = sum(r["rows"].values())
            rate = events / r["seconds"]
            print(
                f"{name:<9}{workers:>8}{r['customers']:>11,}{r['seconds']:>8.1f}{r['cpu']:>8.1f}{events:>13,}"
                f"{total:>13,}{rate:>11,.0f}{rate / TARGET_EVENTS_PER_S:>8.2f}{events / r['cpu']:>10,.0f}"
                f"{r['peak_mb']:>9,.0f}{r['worker_mb']:>10,.0f}"
            )
        oracle = _oracle(results["default"][1])
        print(
            f"\noracle (default preset, {results['default'][0]['customers']:,} customers): "
            f"AUC {oracle['auc']:.3f} (alive only {oracle['auc_alive_only']:.3f}); "
            f"mean p_purchase {oracle['mean_p']:.4f} vs realised rate {oracle['rate']:.4f}"
        )


if __name__ == "__main__":
    main()
