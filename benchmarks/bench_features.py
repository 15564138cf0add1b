"""Benchmark: omni_ml point-in-time features vs the same features as one DuckDB query and as pandas.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_features                 # 20 million events (issue 5)
    .venv/bin/python -m benchmarks.bench_features --events 2000000  # quick run
    .venv/bin/python -m benchmarks.bench_features --events 100000000 --only omni_ml,omni_ml_12

One synthetic event log (numpy, seeded, written once to benchmarks/_data/, gitignored): events
over two years, ~40 per customer, 8 channels, purchases with amounts. The features (the same in
all three contenders, checked for equality): families ``rfm`` + ``rfm_channel`` at windows
7/30/90/365 days -- purchases and revenue overall and per purchase channel per window, days since
the last purchase (overall and per channel) and since the last event, total purchases and
revenue, and the average order value over 365 days -- for every customer with an event before
the cutoff. Each contender runs in its own subprocess for a clean peak RSS (ru_maxrss), reading
the parquet file itself: the time runs from the read to the feature table in memory (writing it
for the equality check is not timed). ``omni_ml_12`` builds 12 monthly cutoffs.

Measured 2026-11-23 on the shared 2-core machine under the heavy-run lock, after the sweep over
segments (issue 5, session 3); wall seconds were taken when the load average was ~2 (other jobs
not under the lock can still stretch them: cpu seconds are the steadier comparison):

    20M events      wall s  cpu s  peak MB (imports)
    omni_ml           2.56   4.41    746  (61)   0.46x / 0.42x / 0.95x DuckDB; 0.92x above imports
    duckdb            5.55  10.57    787  (47)
    pandas           16.08  18.19  3,343 (102)   6.3x omni_ml wall, 4.1x cpu
    omni_ml_12        6.07   8.61  2,407  (61)   2.37x wall / 1.95x cpu of one cutoff
    100M events: omni_ml 18.8 s wall, 32.8 s cpu, 2,207 MB peak (2 partitions).
    Before, at 2165fba (same day, load ~2 from jobs not under the lock): omni_ml 3.83 s wall /
    6.03 cpu, duckdb 5.81 / 11.02, pandas 20.46 / 22.13, omni_ml_12 13.03 / 20.40 (3.40x wall,
    3.38x cpu of one cutoff); 100M 19.9 s wall / 35.2 cpu / 2,278 MB.

What changed: running values are read by one sweep over the segments into dense per-customer
arrays (``omni_ml/features/_running.py``) and each feature is written straight into its output
column, instead of sorting the cube by (customer, segment), accumulating it and gathering rows of
it per cutoff and window; ``compute_at`` builds only the rows it returns. 12 cutoffs: the
per-cutoff work is now a few vector operations over the customers, so beyond the two passes (the
first now cut at 12 boundaries) the cost is writing the 12x larger output (1.4 GB).
The default feature set (158 features on this log; 2M events, one cutoff, best of 7 under the
lock): 1.65-1.72 cpu s at 558601b and at its parent alike (the reported 1.55 -> 1.9 was not
reproduced: single runs vary by 0.3 s), 1.44-1.48 now; on the two-year default world (176
features, 2.5M events) 1.22 / 1.16 / 1.07 cpu s (parent / 558601b / now), 12 cutoffs 5.0 / 4.4 / 3.5.

Where the time goes (one cutoff, 20M events, quiet machine): the pass over all 20M rows for the
latest event 2.0 cpu s / 1.0 s wall; the pass over the purchases 1.1 / 0.56 (0.6 cpu of it is
reading the event type of every row and the purchases' columns); the sample deciding on two
passes 0.1; customer codes (two joins) 0.35 / 0.2; the sweep and the features 0.4 / 0.4 (numpy,
one thread); the rest ~0.3. A bare polars ``group_by("customer_id").agg(max("timestamp"))`` over
the file costs 2.0 cpu s (1.0 s wall): hashing 20M string ids into 500k groups is the floor of
any per-customer pass, and it alone is ~1/9 of pandas' 18.2 cpu s, so "10x pandas" is out of
reach on cpu (4.1x); on wall it needs <= 1.6 s against pandas' 16.1 s, while the two polars passes
alone take ~1.6 s on the 2 cores.

Session 5 re-measured the floor (quiet machine; this run: omni_ml 2.92 s / 4.73 cpu, pandas 16.72 / 19.43,
5.7x wall; warm in-process best of 3: 2.20 s, of which the two polars passes 1.42, customer codes 0.19,
the sweep 0.41) and the ways around hashing the 20M string ids, none of which reaches 1.6 s:

* the parquet dictionary pages (pyarrow ``read_dictionary``): the writer starts a new dictionary per data
  page (160 chunks, 55M dictionary entries for 500k ids), so unifying them took 5.3 s;
* grouping on polars' 64-bit hash of the id instead of the string: 1.42 vs 1.90 cpu s for the
  latest-event pass, but a collision check (a second hash's min and max per group) brings it back to
  1.79, and recovering one string per group (``first()``) costs more than the string group-by;
* ``cast(pl.Enum(ids))`` 1.19 cpu s, a join on the id 1.54, a numba open-addressing table from the two
  hashes to dense codes 1.0 s on one core (20M random accesses into a 2M-slot table): the memory
  latency of one random access per event, ~0.5 s per core, is the floor of any per-customer pass.

With 19.4 cpu s for pandas, 10x needs <= 1.7 s wall: about what reading the five columns (0.3 s), one
hash pass over the ids and the purchase pass take on two cores before any feature is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "_data"
CUTOFF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
START = CUTOFF - dt.timedelta(days=700)
SPAN_DAYS = 730  # data runs 30 days past the cutoff: those rows must be ignored
WINDOWS = (7, 30, 90, 365)
CHANNELS = np.array(["web", "app", "store", "email", "sms", "push", "direct_mail", "call_center"])
PURCHASE_CHANNELS = ("app", "store", "web")
TYPES = np.array(["view", "visit", "cart", "purchase", "open", "click", "return", "service_call"])
TYPE_P = np.array([0.38, 0.28, 0.08, 0.10, 0.08, 0.04, 0.02, 0.02])
CHUNK = 5_000_000


# ----------------------------------------------------------------------------- data


def generate(n_events: int, path: Path, seed: int = 0) -> None:
    """Write a synthetic, time-ordered event log with the normalised events schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_customers = max(n_events // 40, 10)
    # heavy-tailed activity: a few customers do a lot
    weights = rng.pareto(1.5, n_customers) + 1.0
    weights /= weights.sum()
    ids = np.char.add("C", np.char.zfill(np.arange(n_customers).astype(str), 8))
    start_us = int(START.timestamp() * 1_000_000)
    span_us = SPAN_DAYS * 86_400_000_000
    n_chunks = max(1, -(-n_events // CHUNK))
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("identifier", pa.string()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("channel", pa.string()),
            ("event_type", pa.string()),
            ("amount", pa.float64()),
            ("product_id", pa.string()),
            ("category", pa.string()),
            ("campaign_id", pa.string()),
        ]
    )
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for i in range(n_chunks):
            n = min(CHUNK, n_events - i * CHUNK)
            lo, hi = start_us + span_us * i // n_chunks, start_us + span_us * (i + 1) // n_chunks
            ts = np.sort(rng.integers(lo, hi, n))
            etype = TYPES[rng.choice(len(TYPES), n, p=TYPE_P)]
            channel = CHANNELS[rng.integers(0, len(CHANNELS), n)]
            buy = np.isin(etype, ["purchase", "return"])
            channel = np.where(buy, np.array(PURCHASE_CHANNELS)[rng.integers(0, 3, n)], channel)
            amount = np.where(buy, np.round(rng.gamma(2.0, 40.0, n), 2), np.nan)
            cats = np.char.add("cat", rng.integers(0, 20, n).astype(str))
            table = pa.table(
                {
                    "customer_id": ids[rng.choice(n_customers, n, p=weights)],
                    "identifier": pa.nulls(n, pa.string()),
                    "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                    "channel": channel,
                    "event_type": etype,
                    "amount": pa.array(amount, from_pandas=True),
                    "product_id": pa.nulls(n, pa.string()),
                    "category": cats,
                    "campaign_id": pa.nulls(n, pa.string()),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=1_000_000)
    tmp.replace(path)


def monthly_cutoffs(n: int) -> list[dt.datetime]:
    return [CUTOFF - dt.timedelta(days=30 * k) for k in range(n)][::-1]


# ----------------------------------------------------------------------------- contenders


def run_omni_ml(path: Path, n_cutoffs: int) -> Any:
    import polars as pl

    from omni_ml.data import Histories
    from omni_ml.features import FeatureConfig, FeatureSet, Vocabulary, build_features

    # Resolved, validated histories: a plain lazy scan (validation is load_histories' cost, not ours).
    hist = Histories(events=pl.scan_parquet(path), identity_map=pl.DataFrame({"identifier": [], "customer_id": []}))
    config = FeatureConfig(windows=WINDOWS, families=("rfm", "rfm_channel"))
    fs = FeatureSet(config, Vocabulary(purchase_channels=PURCHASE_CHANNELS), config.resolved_families())
    return build_features(hist, monthly_cutoffs(n_cutoffs) if n_cutoffs > 1 else CUTOFF, feature_set=fs)


def _sql_columns() -> list[str]:
    cols = []
    us = "86400000000.0"
    cols.append(
        f"date_diff('microsecond', max(timestamp) FILTER (WHERE event_type = 'purchase'), $c) / {us}"
        " AS days_since_last_purchase"
    )
    cols.append(f"date_diff('microsecond', max(timestamp), $c) / {us} AS days_since_last_event")
    cols.append("count(*) FILTER (WHERE event_type = 'purchase')::INTEGER AS purchases_total")
    cols.append("coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS revenue_total")
    for w in WINDOWS:
        win = f"event_type = 'purchase' AND timestamp >= $c - INTERVAL {w} DAY"
        cols.append(f"count(*) FILTER (WHERE {win})::INTEGER AS purchases_{w}d")
        cols.append(f"coalesce(sum(amount) FILTER (WHERE {win}), 0) AS revenue_{w}d")
    w = max(WINDOWS)
    win = f"event_type = 'purchase' AND timestamp >= $c - INTERVAL {w} DAY"
    cols.append(f"sum(amount) FILTER (WHERE {win}) / nullif(count(*) FILTER (WHERE {win}), 0) AS avg_order_value_{w}d")
    for ch in PURCHASE_CHANNELS:
        p = f"event_type = 'purchase' AND channel = '{ch}'"
        cols.append(
            f"date_diff('microsecond', max(timestamp) FILTER (WHERE {p}), $c) / {us} AS days_since_last_purchase_{ch}"
        )
        for w in WINDOWS:
            win = f"{p} AND timestamp >= $c - INTERVAL {w} DAY"
            cols.append(f"count(*) FILTER (WHERE {win})::INTEGER AS purchases_{ch}_{w}d")
            cols.append(f"coalesce(sum(amount) FILTER (WHERE {win}), 0) AS revenue_{ch}_{w}d")
    return cols


def run_duckdb(path: Path, n_cutoffs: int) -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    if n_cutoffs == 1:  # the query one writes by hand for one cutoff: a constant, no join
        c = f"TIMESTAMPTZ '{CUTOFF.isoformat()}'"
        cols = ",\n  ".join(col.replace("$c", c) for col in _sql_columns())
        sql = f"""
          SELECT customer_id, {c} AS cutoff,
            {cols}
          FROM read_parquet('{path}') WHERE timestamp < {c}
          GROUP BY customer_id ORDER BY customer_id
        """
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).to_arrow_table()
    cols = ",\n  ".join(c.replace("$c", "k.cutoff") for c in _sql_columns())
    cutoffs = ", ".join(f"(TIMESTAMPTZ '{c.isoformat()}')" for c in monthly_cutoffs(n_cutoffs))
    sql = f"""
      WITH k(cutoff) AS (VALUES {cutoffs})
      SELECT e.customer_id, k.cutoff,
        {cols}
      FROM read_parquet('{path}') e JOIN k ON e.timestamp < k.cutoff
      GROUP BY e.customer_id, k.cutoff
      ORDER BY k.cutoff, e.customer_id
    """
    con.execute("SET TimeZone = 'UTC'")
    return con.execute(sql).to_arrow_table()


def run_pandas(path: Path, n_cutoffs: int) -> Any:
    import pandas as pd

    df = pd.read_parquet(path, columns=["customer_id", "timestamp", "channel", "event_type", "amount"])
    frames = []
    for cutoff in monthly_cutoffs(n_cutoffs):
        c = pd.Timestamp(cutoff)
        d = df[df["timestamp"] < c]
        g = d.groupby("customer_id")
        res = pd.DataFrame(index=pd.Index(sorted(d["customer_id"].unique()), name="customer_id"))
        buys = d[d["event_type"] == "purchase"]
        res["days_since_last_purchase"] = (
            c - buys.groupby("customer_id")["timestamp"].max()
        ).dt.total_seconds() / 86400
        res["days_since_last_event"] = (c - g["timestamp"].max()).dt.total_seconds() / 86400
        res["purchases_total"] = buys.groupby("customer_id").size()
        res["revenue_total"] = buys.groupby("customer_id")["amount"].sum()
        for w in WINDOWS:
            b = buys[buys["timestamp"] >= c - pd.Timedelta(days=w)].groupby("customer_id")
            res[f"purchases_{w}d"] = b.size()
            res[f"revenue_{w}d"] = b["amount"].sum()
        w = max(WINDOWS)
        res[f"avg_order_value_{w}d"] = res[f"revenue_{w}d"] / res[f"purchases_{w}d"]
        for ch in PURCHASE_CHANNELS:
            bc = buys[buys["channel"] == ch]
            res[f"days_since_last_purchase_{ch}"] = (
                c - bc.groupby("customer_id")["timestamp"].max()
            ).dt.total_seconds() / 86400
            for w in WINDOWS:
                b = bc[bc["timestamp"] >= c - pd.Timedelta(days=w)].groupby("customer_id")
                res[f"purchases_{ch}_{w}d"] = b.size()
                res[f"revenue_{ch}_{w}d"] = b["amount"].sum()
        counts = [col for col in res.columns if col.startswith(("purchases_", "revenue_"))]
        res[counts] = res[counts].fillna(0)
        res.insert(0, "cutoff", c)
        frames.append(res.reset_index())
    return pd.concat(frames, ignore_index=True)


CONTENDERS = {
    "omni_ml": (run_omni_ml, 1),
    "duckdb": (run_duckdb, 1),
    "pandas": (run_pandas, 1),
    "omni_ml_12": (run_omni_ml, 12),
    "duckdb_12": (run_duckdb, 12),
}


# ----------------------------------------------------------------------------- harness


def _child(name: str, path: Path) -> None:
    func, n_cutoffs = CONTENDERS[name]
    out = DATA / f"out_{name}.parquet"
    # imports are not timed (a notebook pays them once); their memory stays in the peak and is shown apart
    importlib.import_module(
        {"omni_ml": "omni_ml.features", "duckdb": "duckdb", "pandas": "pandas"}[name.split("_1")[0]]
    )
    import_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    table = func(path, n_cutoffs)  # the feature table, in memory
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rows = table.num_rows if hasattr(table, "num_rows") else len(table)
    _write(table, out)  # untimed, for the equality check
    cpu = usage.ru_utime + usage.ru_stime - c0.ru_utime - c0.ru_stime
    peak_mb = usage.ru_maxrss / 1024
    result = {"name": name, "seconds": seconds, "cpu": cpu, "peak_mb": peak_mb, "import_mb": import_mb, "rows": rows}
    print(json.dumps(result))


def _write(table: Any, out: Path) -> None:
    if hasattr(table, "write_parquet"):  # polars
        table.write_parquet(out)
    elif hasattr(table, "to_parquet"):  # pandas
        table.to_parquet(out)
    else:  # arrow
        import pyarrow.parquet as pq

        pq.write_table(table, out)


def _compare(a: str, b: str) -> str:
    import polars as pl

    fa, fb = DATA / f"out_{a}.parquet", DATA / f"out_{b}.parquet"
    if not (fa.exists() and fb.exists()):
        return "n/a"
    x = pl.read_parquet(fa).sort("cutoff", "customer_id")
    y = pl.read_parquet(fb).sort("cutoff", "customer_id")
    if x.height != y.height or x["customer_id"].to_list() != y["customer_id"].to_list():
        return f"DIFFERENT rows ({x.height} vs {y.height})"
    worst = 0.0
    for col in x.columns:
        if col in ("customer_id", "cutoff"):
            continue
        u, v = x[col].cast(pl.Float64).to_numpy(), y[col].cast(pl.Float64).to_numpy()
        if not np.array_equal(np.isnan(u), np.isnan(v)):
            return f"DIFFERENT nulls in {col}"
        both = ~np.isnan(u)
        if both.any():
            worst = max(worst, float(np.max(np.abs(u[both] - v[both]) / np.maximum(1.0, np.abs(v[both])))))
    return "identical" if worst == 0 else f"equal (max rel diff {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000, help="number of events (default 20 million)")
    parser.add_argument("--only", default="omni_ml,duckdb,pandas,omni_ml_12", help="comma-separated contenders")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, Path(args.path))
        return
    DATA.mkdir(exist_ok=True)
    path = DATA / f"events_{args.events}.parquet"
    if args.generate:
        generate(args.events, path)
        return
    if not path.exists():
        # in a subprocess: ru_maxrss survives fork+exec, so a big parent would inflate every child's peak
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "benchmarks.bench_features", "--generate", "--events", str(args.events)]
        subprocess.run(cmd, check=True)
        print(f"generated {path.name} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:,.0f} s")
    results = {}
    for name in args.only.split(","):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_features", "--child", name, "--path", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "2")},
            check=False,
        )
        if proc.returncode != 0:
            print(f"{name}: FAILED (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{args.events:,} events; features: rfm + rfm_channel at windows {WINDOWS} (40 columns)")
    print(
        f"{'contender':<12} {'cutoffs':>7} {'rows':>11} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'imports':>8}"
        "  vs duckdb (wall, cpu, peak memory)"
    )
    base = results.get("duckdb")
    for name, r in results.items():
        ratio = ""
        if base:
            ratio = ", ".join(f"{r[k] / base[k]:.2f}x" for k in ("seconds", "cpu", "peak_mb"))
        cut = CONTENDERS[name][1]
        print(
            f"{name:<12} {cut:>7} {r['rows']:>11,} {r['seconds']:>8.2f} {r['cpu']:>8.2f} {r['peak_mb']:>8,.0f}"
            f" {r['import_mb']:>8,.0f}  {ratio}"
        )
    if base and "omni_ml" in results:
        ours = results["omni_ml"]
        work = (ours["peak_mb"] - ours["import_mb"]) / max(base["peak_mb"] - base["import_mb"], 1.0)
        print(f"omni_ml / duckdb peak memory above the imports: {work:.2f}x")
    for a, b, what in (("pandas", "omni_ml", "pandas / omni_ml"), ("omni_ml_12", "omni_ml", "omni_ml 12 / 1 cutoff")):
        if a in results and b in results:
            wall = results[a]["seconds"] / results[b]["seconds"]
            cpu = results[a]["cpu"] / results[b]["cpu"]
            print(f"{what}: {wall:.2f}x wall, {cpu:.2f}x cpu")
    for other in ("duckdb", "pandas"):
        if "omni_ml" in results and other in results:
            print(f"omni_ml vs {other} values: {_compare('omni_ml', other)}")
    if "omni_ml_12" in results and "duckdb_12" in results:
        print(f"omni_ml_12 vs duckdb_12 values: {_compare('omni_ml_12', 'duckdb_12')}")


if __name__ == "__main__":
    main()
