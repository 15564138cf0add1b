"""Claim (issue 4): 10 million identity links resolve in under 60 s on the 2-core machine.

Run from the repository root::

    nice -n 10 .venv/bin/python -m benchmarks.bench_identity             # 10 million links
    .venv/bin/python -m benchmarks.bench_identity --scale 0.05           # quick run (500k links)

The graph is generated once with numpy (seed 0) into ``benchmarks/_data/`` (gitignored), shaped
like the simulator's: 55% of people have a crm id; everyone 1-2 emails, maybe a phone, a loyalty
card, an app id, and geometric(0.3) browser cookies (a long tail of component sizes). Sign-up links
join the hub (crm id, else the first email) to each durable identifier; 85% of cookies log in with
one of the person's emails, 30% of logins are seen again (duplicates). Over-merging hazards: 3% of
phones are also linked by a second person (households), 30 shop default cards link to random
emails and 5 placeholder emails to random cookies. An events table of 20% of the links' size
carries identifier-only rows and customer-id rows.

Contenders, each in a fresh subprocess so that peak RSS is clean (import time excluded):

* ``omni_ml``  : ``load_histories(dir)`` + ``resolve(hist)`` (guard rails, conflicts, stable ids,
  report) + collecting the resolved events. Time of ``resolve`` alone is reported too.
* ``scipy``    : the straightforward alternative: ``pl.read_parquet`` the links, code identifiers
  with ``pandas.factorize``, ``scipy.sparse.csgraph.connected_components``; plain components, no guard
  rails, no ids, no tables resolved.
* ``python``   : textbook union-find over the link rows in pure Python (dict, path halving).

Pairwise precision/recall of merges against the generator's truth (hubs excluded) is printed for
each, which shows what the guard rails buy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

DATA = Path(__file__).resolve().parent / "_data"
FULL_LINKS = 10_000_000
LINKS_PER_PERSON = 5.6  # measured on the generator: ~5.3 identifiers per person, tree + 30% repeats
START_US = np.datetime64("2023-06-01T00:00:00", "us").astype(np.int64)
SPAN_US = 2 * 365 * 86_400 * 1_000_000


def generate(n_links: int, directory: Path, *, seed: int = 0) -> None:
    """Write identity_links, events and truth for about ``n_links`` links to ``directory``."""
    rng = np.random.default_rng(seed)
    n_people = max(int(n_links / LINKS_PER_PERSON), 50)
    kinds = ("crm", "email", "phone", "loyalty", "app", "cookie")  # the hub (crm, else email) comes first
    counts = {
        "crm": (rng.random(n_people) < 0.55).astype(np.int64),
        "email": rng.choice([1, 2], size=n_people, p=[0.8, 0.2]),
        "phone": (rng.random(n_people) < 0.4).astype(np.int64),
        "loyalty": (rng.random(n_people) < 0.3).astype(np.int64),
        "app": (rng.random(n_people) < 0.35).astype(np.int64),
        "cookie": rng.geometric(0.3, size=n_people),
    }
    parts = []
    for code, kind in enumerate(kinds):
        k = counts[kind]
        person = np.repeat(np.arange(n_people), k)
        nth = np.arange(person.size) - np.repeat(np.cumsum(k) - k, k)
        parts.append(pl.DataFrame({"person": person, "kind": np.full(person.size, code), "nth": nth}))
    ids = (
        pl.concat(parts)
        .sort("person", "kind", "nth")
        .with_columns(
            pl.when(pl.col("kind") == 0)
            .then(pl.format("crm:C{}", pl.col("person").cast(pl.String).str.zfill(8)))
            .otherwise(
                pl.format(
                    "{}:{}-{}",
                    pl.col("kind").replace_strict(dict(enumerate(kinds)), return_dtype=pl.String),
                    (pl.col("person") * 2654435761 % 2**32),
                    "nth",
                )
            )
            .alias("identifier")
        )
    )
    person = ids["person"].to_numpy()
    kind = ids["kind"].to_numpy()
    ident = ids["identifier"]
    hub = np.searchsorted(person, person, side="left")  # first row of the person
    first_email = hub + counts["crm"][person]
    row = np.arange(person.size)
    # sign-up: the hub to every other durable identifier
    signup = np.flatnonzero((kind != 5) & (row != hub))
    # logins: 85% of cookies to one of the person's emails
    cookies = np.flatnonzero((kind == 5) & (rng.random(person.size) < 0.85))
    email_of = first_email[cookies] + np.floor(rng.random(cookies.size) * counts["email"][person[cookies]]).astype(int)
    # households: 3% of phones are also linked by another person's hub
    phones = np.flatnonzero(kind == 2)
    shared = rng.choice(phones, size=max(int(phones.size * 0.03), 1), replace=False)
    other = hub[rng.integers(0, person.size, shared.size)]
    # shop default cards linked to random emails; placeholder emails linked to random cookies
    emails, all_cookies = np.flatnonzero(kind == 1), np.flatnonzero(kind == 5)
    cards = pl.Series([f"loyalty:shopcard-{i}" for i in range(30)])
    card_links = max(n_links // 300, 60)
    noreply = pl.Series([f"email:noreply-{i}@shop.dk" for i in range(5)])
    noreply_links = max(n_links // 1000, 10)
    a = pl.concat(
        [
            ident.gather(signup),
            ident.gather(cookies),
            ident.gather(other),
            cards.gather(rng.integers(0, 30, card_links)),
            noreply.gather(rng.integers(0, 5, noreply_links)),
        ]
    )
    b = pl.concat(
        [
            ident.gather(hub[signup]),
            ident.gather(email_of),
            ident.gather(shared),
            ident.gather(rng.choice(emails, card_links)),
            ident.gather(rng.choice(all_cookies, noreply_links)),
        ]
    )
    links = pl.DataFrame({"identifier_a": a, "identifier_b": b})
    n_logins = cookies.size
    repeats = links.slice(signup.size, n_logins).sample(n=int(n_logins * 0.3), seed=seed, with_replacement=True)
    links = pl.concat([links, repeats])
    links = links.with_columns(
        pl.Series("timestamp", START_US + rng.integers(0, SPAN_US, links.height)).cast(pl.Datetime("us", "UTC")),
        pl.lit("login").alias("source"),
    )
    directory.mkdir(parents=True, exist_ok=True)
    links.write_parquet(directory / "identity_links.parquet")
    n_events = max(links.height // 5, 10)
    rows = rng.integers(0, person.size, n_events)
    has_crm = counts["crm"][person[rows]] == 1
    by_customer = has_crm & (rng.random(n_events) < 0.5)
    events = pl.DataFrame(
        {
            "customer_id": pl.Series(np.where(by_customer, person[rows], -1)),
            "identifier": ident.gather(rows),
            "timestamp": pl.Series(START_US + rng.integers(0, SPAN_US, n_events)).cast(pl.Datetime("us", "UTC")),
        }
    ).select(
        pl.when(pl.col("customer_id") >= 0)
        .then(pl.format("C{}", pl.col("customer_id").cast(pl.String).str.zfill(8)))
        .alias("customer_id"),
        pl.when(pl.col("customer_id") < 0).then(pl.col("identifier")).alias("identifier"),
        "timestamp",
        pl.lit("web").alias("channel"),
        pl.lit("visit").alias("event_type"),
    )
    events.write_parquet(directory / "events.parquet")
    is_shared = np.zeros(person.size, dtype=bool)
    is_shared[shared] = True
    truth = ids.select("identifier", pl.format("P{}", "person").alias("customer_id"), pl.Series("shared", is_shared))
    (directory / "truth").mkdir(exist_ok=True)
    truth.write_parquet(directory / "truth" / "identity.parquet")


# ----------------------------------------------------------------------------- contenders


def _run_omni_ml(directory: Path) -> tuple[pl.DataFrame, dict[str, float]]:
    from omni_ml.data import load_histories
    from omni_ml.identity import resolve

    t0 = time.perf_counter()
    hist = load_histories(directory)
    t1, c1 = time.perf_counter(), time.process_time()
    resolved, report = resolve(hist)
    t2, c2 = time.perf_counter(), time.process_time()
    events = resolved.events.collect()
    t3 = time.perf_counter()
    assert events["customer_id"].null_count() == 0
    assert resolved.identity_map is not None
    extra = {
        "load_s": t1 - t0,
        "resolve_s": t2 - t1,
        "resolve_cpu_s": c2 - c1,
        "apply_s": t3 - t2,
        "quarantined": float(report.quarantined.height),
        "conflicts": float(report.conflicts.height),
        "customers": float(report.customers),
    }
    return resolved.identity_map, extra


def _run_scipy(directory: Path) -> tuple[pl.DataFrame, dict[str, float]]:
    import pandas as pd
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    links = pl.read_parquet(directory / "identity_links.parquet", columns=["identifier_a", "identifier_b"])
    both = pd.concat([links["identifier_a"].to_pandas(), links["identifier_b"].to_pandas()], ignore_index=True)
    codes, uniques = pd.factorize(both)
    n, m = uniques.size, links.height
    graph = sparse.coo_matrix((np.ones(m, dtype=np.int8), (codes[:m], codes[m:])), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return pl.DataFrame({"identifier": np.asarray(uniques, dtype=object), "customer_id": labels}), {}


def _run_python(directory: Path) -> tuple[pl.DataFrame, dict[str, float]]:
    links = pl.read_parquet(directory / "identity_links.parquet", columns=["identifier_a", "identifier_b"])
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = parent.setdefault(x, x)
        while root != parent[root]:
            parent[root] = parent[parent[root]]
            root = parent[root]
        return root

    for a, b in zip(links["identifier_a"].to_list(), links["identifier_b"].to_list(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    keys = list(parent)
    return pl.DataFrame({"identifier": keys, "customer_id": [find(k) for k in keys]}), {}


_CONTENDERS = {"omni_ml": _run_omni_ml, "scipy": _run_scipy, "python": _run_python}


def _child(contender: str, directory: Path) -> None:
    from omni_ml.identity import pairwise_merge_scores

    t0, c0 = time.perf_counter(), time.process_time()
    mapping, extra = _CONTENDERS[contender](directory)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    truth = pl.read_parquet(directory / "truth" / "identity.parquet").filter(~pl.col("shared"))
    scores = pairwise_merge_scores(mapping.with_columns(pl.col("customer_id").cast(pl.String)), truth)
    out = {"seconds": seconds, "cpu_s": cpu, "load": os.getloadavg()[0], "peak_mib": peak_mib}
    out |= {"precision": scores["precision"], "recall": scores["recall"]}
    print(json.dumps(out | extra))


def _measure(contender: str, directory: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_identity", "--child", contender, "--dir", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{contender} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 10 million links (default 1.0)")
    parser.add_argument("--contenders", default="omni_ml,scipy,python", help="comma-separated subset")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.dir)
        return
    n_links = int(FULL_LINKS * args.scale)
    directory = DATA / f"identity_{n_links}"
    if not (directory / "events.parquet").exists():
        t0 = time.perf_counter()
        generate(n_links, directory)
        print(f"generated {directory} in {time.perf_counter() - t0:.1f} s")
    n_rows = pl.scan_parquet(directory / "identity_links.parquet").select(pl.len()).collect().item()
    n_ids = pl.scan_parquet(directory / "truth" / "identity.parquet").select(pl.len()).collect().item()
    print(f"{n_rows:,} links over {n_ids:,} identifiers (+30 hubs); 2 cores; best of 1 run each")
    results = {name: _measure(name, directory) for name in args.contenders.split(",")}
    base = results.get("omni_ml")
    print("seconds = wall clock; cpu = process CPU seconds (all threads); load = 1-min load average at the end")
    header = f"{'contender':<10} {'seconds':>9} {'cpu':>7} {'load':>5} {'peak MiB':>9} {'x omni_ml':>10}"
    print(header + f" {'precision':>10} {'recall':>8}")
    for name, r in results.items():
        ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
        print(
            f"{name:<10} {r['seconds']:>9.1f} {r['cpu_s']:>7.1f} {r['load']:>5.1f} {r['peak_mib']:>9,.0f} {ratio:>10} "
            f"{r['precision']:>10.4f} {r['recall']:>8.4f}"
        )
    if base:
        print(
            f"omni_ml breakdown: load {base['load_s']:.1f} s, resolve {base['resolve_s']:.1f} s "
            f"({base['resolve_cpu_s']:.1f} CPU s), "
            f"apply to {n_rows // 5:,} events {base['apply_s']:.1f} s; {base['customers']:,.0f} customers, "
            f"{base['quarantined']:,.0f} quarantined, {base['conflicts']:,.0f} conflict components"
        )


if __name__ == "__main__":
    main()
