"""Claim (issue 10): the batch job scores 1 million customers with reason codes in under 5 minutes on 2 cores.

Run from the repository root::

    nice -n 10 .venv/bin/python -m benchmarks.bench_scoring                    # 1,000,000 customers
    .venv/bin/python -m benchmarks.bench_scoring --customers 50000              # quick run

World: a simulated ``default``-preset world (30,000 persons, seed 0) is identity-resolved at its end
date, then **replicated with new customer ids** (``C0000001`` -> ``C0000001-r07``) until the requested
number of customers exists (simulating a million persons directly takes far longer than scoring them).
Replicas carry a ``customer_id`` on every row, i.e. the histories a production job gets after
``omni-ml resolve``. Written once to ``benchmarks/_data/scoring_<n>/`` (gitignored).

Model: one :class:`omni_ml.campaign.CampaignModel` (propensity + channel model + policy) fitted on the
base world one month before its end, saved with joblib.

``--base-world DIR --model PATH`` replicate another resolved world and score with a saved model instead
(e.g. the same model and world with two versions of the package, to compare them; see benchmarks/RESULTS.md).

Contenders, each ``omni-ml score`` in a fresh subprocess (clean peak RSS, Python start-up included):

* ``chunked, no reasons``    -- ``--reasons 0``, chunks chosen by size (250,000 customers per chunk);
* ``chunked, 3 reasons``     -- ``--reasons 3`` (the claim);
* ``one chunk, 3 reasons``   -- ``--chunks 1``: everything in memory at once, the naive alternative the
  chunking is measured against (same output bytes, higher peak memory).

Measured 2026-11-23 (session 2) on the 2-core machine while other engineers' jobs shared it (load average
~2.5), ``--customers 1000000 --skip-one-chunk`` (1,030,225 customers, 35.7M events, 4 chunks); "3 reasons"
writes 3 propensity reasons and 3 channel-decision reasons (``channel_reason_*``, SHAP of the channel
model's uplift for every contacted customer):

    chunked, no reasons   137.8 s wall, 150 CPU-s, peak 4,764 MB
    chunked, 3 reasons    129.6 s wall, 192 CPU-s, peak 5,363 MB   -> 1M customers in 2.1 min (target < 5 min)

Re-measured after the default preset got two years of history (``--claim-only``; 1,022,180 customers,
49.9M events; a fresh-clone CI run shared the machine for most of it): chunked, 3 reasons 233.8 s wall,
257 CPU-s, peak 5,780 MB -> 3.9 min (target < 5 min).

Re-measured in session 3 after the channel model's new defaults (a year of decisions, response history
against each person's usual purchase rate, computed for every scored customer) and Platt-calibrated
propensities (``--claim-only``, same world, model refitted): chunked, 3 reasons 222.6 s wall, 289 CPU-s,
peak 6,442 MB -> 3.7 min (target < 5 min); +32 CPU-s over session 2, mostly the response history.

(The wall times of the two runs differ by less than the noise from the other jobs; CPU seconds show the
reasons' cost: +42 CPU-s.) Session 1, under heavier load (average 7-19) and without channel reasons:
376 s wall / 235 CPU-s with reasons, 316 s without.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

DATA = Path(__file__).resolve().parent / "_data"
AS_OF = "2025-01-01"
TRAIN_AS_OF = "2024-12-01"
_PERSON_TABLES = ("events", "contacts", "consents", "customers")


def _base_world() -> Path:
    from omni_ml.simulate import preset, simulate

    raw = DATA / "scoring_base_raw"
    if not (raw / "events.parquet").exists():
        simulate(preset("default", seed=0), raw)
    resolved = DATA / "scoring_base"
    if not (resolved / "events.parquet").exists():
        from omni_ml.data import load_histories
        from omni_ml.identity import resolve_identities

        hist = resolve_identities(load_histories(raw), as_of=AS_OF)
        resolved.mkdir(parents=True, exist_ok=True)
        for table in _PERSON_TABLES:
            lf = getattr(hist, table)
            if lf is not None:
                lf.collect().write_parquet(resolved / f"{table}.parquet")
    return resolved


def _replicated_world(customers: int, base: Path | None = None) -> Path:
    """``base`` (default: the default-preset world, resolved) replicated to ``customers`` customers."""
    out = DATA / (f"scoring_{customers}" if base is None else f"scoring_{customers}_{base.name}")
    base = _base_world() if base is None else base
    if (out / "events.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    ids = pl.read_parquet(base / "customers.parquet")["customer_id"]
    events_ids = pl.scan_parquet(base / "events.parquet").select("customer_id").unique().collect()["customer_id"]
    all_ids = pl.concat([ids, events_ids]).unique().sort()
    copies = -(-customers // all_ids.len())
    for table in _PERSON_TABLES:
        frame = pl.read_parquet(base / f"{table}.parquet")
        parts = [
            frame.with_columns(pl.col("customer_id") + f"-r{r:02d}", pl.lit(None, dtype=pl.String).alias("identifier"))
            if "identifier" in frame.columns
            else frame.with_columns(pl.col("customer_id") + f"-r{r:02d}")
            for r in range(copies)
        ]
        pl.concat(parts).write_parquet(out / f"{table}.parquet")
    return out


def _model(base: Path) -> Path:
    """The fitted model, cached per version of the package's source (a stale model would mislead)."""
    import hashlib

    import omni_ml

    digest = hashlib.sha1()
    for file in sorted(Path(omni_ml.__file__).parent.rglob("*.py")):
        digest.update(file.read_bytes())
    path = DATA / f"scoring_model_{digest.hexdigest()[:12]}.joblib"
    if path.exists():
        return path
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.data import load_histories

    # Default recipe, with 6 training cutoffs and a 3-month channel look-back to keep the set-up short.
    config = CampaignConfig(train={"n_cutoffs": 6}, channel={"lookback_days": 91})
    model = CampaignModel(config).fit(load_histories(base), TRAIN_AS_OF, horizon_days=28)
    return model.save(path)


_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from omni_ml.scoring import score
summary = score(sys.argv[1], model=sys.argv[2], as_of=sys.argv[3], out=sys.argv[4], reasons=int(sys.argv[5]),
                chunks=None if sys.argv[6] == "auto" else int(sys.argv[6]), progress=False)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": summary.seconds, "customers": summary.customers, "chunks": summary.chunks,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "wall_with_imports": time.perf_counter() - t0}))
"""


def _run(world: Path, model: Path, reasons: int, chunks: str, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(world), str(model), AS_OF, str(out), str(reasons), chunks],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--skip-one-chunk", action="store_true", help="skip the everything-at-once contender")
    parser.add_argument("--chunks", default="auto", help="chunks of the chunked contenders (default: by size)")
    parser.add_argument("--claim-only", action="store_true", help="run only the claim (chunked, 3 reasons)")
    parser.add_argument(
        "--base-world", type=Path, help="identity-resolved world to replicate (default: the default-preset world)"
    )
    parser.add_argument("--model", type=Path, help="saved campaign model to score with (default: fitted here)")
    args = parser.parse_args(argv)

    t = time.perf_counter()
    world = _replicated_world(args.customers, args.base_world)
    model = args.model or _model(DATA / "scoring_base")
    n_events = pl.scan_parquet(world / "events.parquet").select(pl.len()).collect().item()
    print(f"world: {world} ({n_events:,} events; prepared in {time.perf_counter() - t:,.0f} s); model: {model}")

    contenders = [("chunked, no reasons", 0, args.chunks), ("chunked, 3 reasons", 3, args.chunks)]
    if args.claim_only:
        contenders = contenders[1:]
    elif not args.skip_one_chunk:
        contenders.append(("one chunk, 3 reasons", 3, "1"))
    rows = []
    for name, reasons, chunks in contenders:
        out = DATA / f"campaign_{args.customers}_{reasons}_{chunks}.parquet"
        result = _run(world, model, reasons, chunks, out)
        rows.append({"contender": name, **result, "file_mb": out.stat().st_size / 2**20})
        print(f"  {name}: {result}", flush=True)

    table = pl.DataFrame(rows).with_columns(
        (pl.col("customers") / pl.col("seconds")).alias("customers_per_s"),
        (pl.col("seconds") / pl.col("seconds").filter(pl.col("contender") == "chunked, 3 reasons").first()).alias(
            "time_ratio"
        ),
        (
            pl.col("peak_rss_mb") / pl.col("peak_rss_mb").filter(pl.col("contender") == "chunked, 3 reasons").first()
        ).alias("rss_ratio"),
    )
    with pl.Config(tbl_rows=10, tbl_cols=20, tbl_width_chars=200, float_precision=1):
        print(
            table.select(
                "contender",
                "customers",
                "chunks",
                "seconds",
                "customers_per_s",
                "time_ratio",
                "peak_rss_mb",
                "rss_ratio",
                "file_mb",
            )
        )
    claim = table.filter(pl.col("contender") == "chunked, 3 reasons").row(0, named=True)
    per_million = claim["seconds"] / claim["customers"] * 1_000_000
    print(
        f"claim: 1 million customers with 3 reasons in {per_million / 60:.1f} min (target < 5 min): "
        f"{'met' if per_million < 300 else 'NOT met'}"
    )
    plain = table.filter(pl.col("contender") == "chunked, no reasons")
    if plain.height:
        base = plain.row(0, named=True)
        wall = claim["seconds"] / base["seconds"]
        cpu = claim["cpu_seconds"] / base["cpu_seconds"]
        # issue 23: 3 propensity + 3 channel reasons (one per family, moment baseline, codes, pp) cost <= 2x
        print(
            f"claim (issue 23): scoring with 3 + 3 reasons costs {wall:.2f}x wall, {cpu:.2f}x CPU of scoring "
            f"without (target <= 2x): {'met' if max(wall, cpu) <= 2.0 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
