"""Claim (issue 2): loading + validating 20 million events from parquet takes <= 1.5x polars' own read.

Run from the repository root::

    nice -n 10 .venv/bin/python -m benchmarks.bench_load              # 20 million events, clean + 0.1% duplicates
    .venv/bin/python -m benchmarks.bench_load --scale 0.05            # quick run (1 million)
    .venv/bin/python -m benchmarks.bench_load --dup-share 0           # the clean file only

The events are generated once per duplicate share with numpy (seed 0) into ``benchmarks/_data/``
(gitignored): ~1 million customers with skewed activity, 8 channels, 9 event types, amounts on
purchases and returns, products, categories, campaigns, 8% identifier-only rows (cookies), UTC
microsecond timestamps over two years in random order, and a share of exact duplicate rows
(``--dup-share``, default both 0 and 0.1%, one file each, as real exports sometimes have).

Contenders, each in its own fresh subprocess so that peak RSS is clean (import time excluded):

* ``polars``  : ``pl.read_parquet(file)`` -- reading the same file, nothing else.
* ``omni_ml`` : ``load_histories(dir)`` (read, normalise, validate every rule, drop and count exact
  duplicates, build the report) and ``hist.events.collect()`` (the events materialised in memory).

The best of ``--repeat`` interleaved runs is reported for each contender: wall seconds (the claim),
CPU seconds (user + system; steadier than wall time on a machine shared with other work) and peak
RSS (VmHWM, the highest of the runs).

Measured 2026-11-23 on the 2-core machine, 20 million events, under ``flock /tmp/omni_heavy.lock``;
while other engineers' tests ran beside the runs polars' own best wall time moved between 0.94 and
1.85 s, so compare ratios of the same run:

    session 2, one parallel select      clean   2.20x wall, 2.12x CPU      0.1% dups  3.29x wall, 2.70x CPU
    session 3, quiet machine, best of 7 clean   1.52x wall, 1.40x CPU (1.48 s vs 0.97 s; peak RSS 1.14x)
                                        0.1% dups 2.56x wall, 2.33x CPU (2.47 s, 4.42 CPU s; peak RSS 1.94x)
    session 4, timestamps sorted during the read (another engineer's model fits ran beside, under the lock)
                                        clean   1.43x wall, 1.40x CPU (1.41 s vs 0.99 s; 2.73 vs 1.95 CPU s;
                                                peak RSS 2,785 vs 2,625 MiB = 1.06x), best of 7; 1.48x best of 5
                                        0.1% dups 2.41x wall, 2.31x CPU (2.32 s, 4.41 CPU s; peak RSS 1.94x)

The 1.5x target is met on a clean file; with 0.1% exact duplicates it is not (dropping them copies
the table, below). Where the time goes (fresh process, clean file): the read itself ~1.9 CPU s (the
same as ``pl.read_parquet``), in two parts: the timestamp column first (~0.17 s), then the other
columns while a thread sorts the timestamps in place with numpy to find repeated ones (duplicate
candidates; ~0.25 CPU s, polars' sort 0.7). Before, the sort ran after the read, single-threaded, and
kept one core busy ~0.3 s after the rest of validation was done; during the read it shares cores
that polars' reader keeps busy anyway. After the read: one parallel ``select`` of every rule and the
summary ~0.1 CPU s (the typed-identifier rule matches only the values present: 0.06 instead of a
distinct pass 0.17 or a regex over all 20M rows 0.38) and, beside it, the channel x event type
group-by ~0.25 CPU s (the cheapest way measured to get the distinct values that the lower-case check
needs: ``unique`` 0.37, ``n_unique`` 0.38, a cast to Categorical 0.55, pyarrow ``read_dictionary``
0.45). Parquet statistics (a non-empty minimum in every row group) clear the string columns of empty
values without a scan (~0.2 saved), and numeric range rules (negative purchase amounts) run their
row-wise pass only when the column's minimum allows a bad row (~0.08). Measured and rejected: reading
the timestamps in a thread at the same time as the other columns (polars interleaves the two reads,
so the sort starts at the end: 1.59 s), sorting two value ranges in parallel (the masking passes cost
more), a 32-bit key sort, ``n_unique`` of the timestamps as a proof of no repeats (0.65 CPU s; and 4
of the 20 million random microsecond timestamps repeat anyway). Distinct customers (~0.8 CPU s over
64-bit hashes) and identifiers are summary figures validation does not need:
``TableSummary.customers`` counts them on first use (``omni-ml validate`` and the scoring job's
chunk plan ask for them). With duplicates, dropping them must build a new table: copying 20 million
rows of nine columns costs ~1.1 CPU s and doubles the peak, whatever the method
(``DataFrame.filter(series)`` costs 3.5 CPU s on this 163-chunk frame, a mask column 1.1; reading the
file again with the rows filtered out costs a second read).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

DATA = Path(__file__).resolve().parent / "_data"
FULL_ROWS = 20_000_000
CHANNELS = ["web", "app", "store", "email", "sms", "push", "direct_mail", "call_center"]
CHANNEL_P = [0.34, 0.22, 0.12, 0.16, 0.05, 0.07, 0.02, 0.02]
EVENT_TYPES = ["visit", "view", "cart", "purchase", "return", "open", "click", "service_call", "unsubscribe"]
EVENT_P = [0.28, 0.33, 0.07, 0.06, 0.006, 0.16, 0.08, 0.012, 0.002]


def generate(rows: int, path: Path, *, dup_share: float, seed: int = 0) -> None:
    """Write ``rows`` realistic events (of which ``dup_share`` are exact copies of other rows) to ``path``."""
    rng = np.random.default_rng(seed)
    n_unique = rows - int(rows * dup_share)
    n_customers = max(rows // 20, 10)
    # Skewed activity: a few customers generate many events (lognormal weights).
    weights = rng.lognormal(0.0, 1.2, n_customers)
    cust = rng.choice(n_customers, size=n_unique, p=weights / weights.sum())
    start = np.datetime64("2023-06-01T00:00:00", "us").astype(np.int64)
    span = 2 * 365 * 86_400 * 1_000_000
    ts = start + rng.integers(0, span, n_unique)
    channel = rng.choice(len(CHANNELS), size=n_unique, p=CHANNEL_P)
    etype = rng.choice(len(EVENT_TYPES), size=n_unique, p=np.array(EVENT_P) / sum(EVENT_P))
    money = np.round(rng.lognormal(3.5, 1.0, n_unique), 2)
    product = rng.integers(0, 50_000, n_unique)
    anonymous = rng.random(n_unique) < 0.08
    frame = pl.DataFrame(
        {
            "cust": cust,
            "ts": ts,
            "channel": pl.Series(channel).replace_strict(dict(enumerate(CHANNELS)), return_dtype=pl.String),
            "event_type": pl.Series(etype).replace_strict(dict(enumerate(EVENT_TYPES)), return_dtype=pl.String),
            "money": money,
            "product": product,
            "anonymous": anonymous,
        }
    )
    with_product = pl.col("event_type").is_in(["view", "cart", "purchase", "return"])
    with_amount = pl.col("event_type").is_in(["purchase", "return"])
    outbound = pl.col("channel").is_in(["email", "sms", "push", "direct_mail"])
    events = frame.select(
        pl.when(~pl.col("anonymous"))
        .then(pl.format("C{}", pl.col("cust").cast(pl.String).str.zfill(7)))
        .alias("customer_id"),
        pl.when(pl.col("anonymous"))
        .then(pl.format("cookie:{}", (pl.col("cust") * 2654435761 % 2**32).cast(pl.String)))
        .alias("identifier"),
        pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("timestamp"),
        "channel",
        "event_type",
        pl.when(with_amount).then(pl.col("money")).alias("amount"),
        pl.when(with_product)
        .then(pl.format("P{}", pl.col("product").cast(pl.String).str.zfill(6)))
        .alias("product_id"),
        pl.when(with_product).then(pl.format("cat{}", (pl.col("product") % 40).cast(pl.String))).alias("category"),
        pl.when(outbound)
        .then(pl.format("CMP-{}", (pl.col("ts") // (14 * 86_400 * 1_000_000) % 60)))
        .alias("campaign_id"),
    )
    if rows > n_unique:
        copies = events.sample(rows - n_unique, seed=seed + 1)
        events = pl.concat([events, copies]).sample(fraction=1.0, shuffle=True, seed=seed + 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    events.write_parquet(tmp)
    tmp.rename(path)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ``ru_maxrss`` it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(contender: str, directory: Path) -> None:
    """Run one contender in this process and print its seconds and peak RSS as JSON."""
    file = directory / "events.parquet"
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    if contender == "polars":
        t0 = time.perf_counter()
        frame = pl.read_parquet(file)
        seconds = time.perf_counter() - t0
        rows = frame.height
    else:
        import warnings

        from omni_ml.data import load_histories

        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hist = load_histories(directory)
        frame = hist.events.collect()
        seconds = time.perf_counter() - t0
        rows = frame.height
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    peak_mib = _peak_rss_mib()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak_mib, "rows": rows}))


def _measure(contender: str, directory: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_load", "--child", contender, "--dir", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compare(directory: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Best of ``repeat`` interleaved runs of each contender (a load spike on a shared machine hits both)."""
    runs: dict[str, list[dict[str, float]]] = {"polars": [], "omni_ml": []}
    for _ in range(repeat):
        for contender in runs:
            runs[contender].append(_measure(contender, directory))
    results: dict[str, dict[str, float]] = {}
    for contender, measured in runs.items():
        best = dict(min(measured, key=lambda r: r["seconds"]))
        best["cpu"] = min(r["cpu"] for r in measured)
        best["peak_mib"] = max(r["peak_mib"] for r in measured)
        results[contender] = best
    return results


def main(argv: list[str] | None = None) -> None:
    """Generate the data if needed; on each file run the contenders ``--repeat`` times; print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 20 million events (default 1.0)")
    parser.add_argument(
        "--dup-share",
        type=float,
        nargs="+",
        default=[0.0, 0.001],
        help="share(s) of exact duplicate rows, one file each (default: 0 and 0.001)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the best is reported")
    parser.add_argument("--child", choices=["polars", "omni_ml"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.dir)
        return
    rows = int(FULL_ROWS * args.scale)
    labels = {"polars": "pl.read_parquet", "omni_ml": "load_histories + events.collect()"}
    verdicts = []
    for dup_share in args.dup_share:
        directory = DATA / f"events_{rows}_dup{dup_share:g}"
        file = directory / "events.parquet"
        if not file.exists():
            t0 = time.perf_counter()
            generate(rows, file, dup_share=dup_share)
            print(f"generated {rows:,} events in {time.perf_counter() - t0:.1f} s -> {file}")
        results = _compare(directory, args.repeat)
        base = results["polars"]
        size_mib = file.stat().st_size / 2**20
        print(
            f"\n{rows:,} events, {dup_share:.1%} exact duplicates, {size_mib:,.0f} MiB parquet, best of {args.repeat}"
        )
        print(f"{'contender':<34}{'seconds':>9}{'ratio':>8}{'CPU s':>8}{'ratio':>8}{'peak RSS MiB':>14}{'ratio':>8}")
        for name, r in results.items():
            print(
                f"{labels[name]:<34}{r['seconds']:>9.2f}{r['seconds'] / base['seconds']:>7.2f}x"
                f"{r['cpu']:>8.2f}{r['cpu'] / base['cpu']:>7.2f}x"
                f"{r['peak_mib']:>14,.0f}{r['peak_mib'] / base['peak_mib']:>7.2f}x"
            )
        ratio = results["omni_ml"]["seconds"] / base["seconds"]
        verdicts.append(f"{dup_share:.1%} duplicates: {'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}x)")
    print("\ntarget <= 1.50x wall: " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
