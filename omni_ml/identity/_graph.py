"""The identifier graph: collect edges before ``as_of``, group with guard rails, name the customers."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from omni_ml._privacy import keyed_hash, pseudonym_key
from omni_ml._time import as_utc, before
from omni_ml.data import Histories
from omni_ml.exceptions import SchemaError
from omni_ml.identity._profiling import profiling_recorded, profiling_records, unconsented_links
from omni_ml.identity._rules import (
    _AMBIGUOUS,
    _KEYED_TABLES,
    _NEVER,
    _UNCAPPED,
    _UNREACHED,
    ANON_PREFIX,
    IdentityRules,
)

# ----------------------------------------------------------------------------- graph collection


@dataclasses.dataclass
class _Graph:
    nodes: pl.DataFrame  # identifier (in code order), first_seen (Int64 us, _NEVER if unseen)
    src: np.ndarray  # unique undirected edges, src < dst (node codes)
    dst: np.ndarray
    stats: dict[str, int]
    rows_resolved: dict[str, int]


def _to_utc(value: str | dt.date | dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value, error=SchemaError)


def _check_previous(previous: pl.DataFrame | None) -> pl.DataFrame | None:
    if previous is None:
        return None
    if isinstance(previous, pl.LazyFrame):
        previous = previous.collect()
    missing = [c for c in ("identifier", "customer_id") if c not in previous.columns]
    if missing:
        msg = (
            f"previous identity map: missing column(s) {missing}; found {previous.columns[:8]}. "
            "Hint: pass the identity_map of an earlier resolve (omni-ml resolve --out writes one)."
        )
        raise SchemaError(msg)
    prev = previous.select(pl.col("identifier").cast(pl.String), pl.col("customer_id").cast(pl.String))
    dup = prev.filter(pl.col("identifier").is_duplicated())
    nulls = prev.filter(pl.col("identifier").is_null() | pl.col("customer_id").is_null())
    if dup.height or nulls.height:
        bad, what = (dup, "repeat an identifier") if dup.height else (nulls, "have a null identifier or customer_id")
        msg = (
            f"previous identity map: {bad.height:,} of {prev.height:,} rows {what} "
            f"(e.g. {bad.row(0)!r}). Hint: an identity map has one row per identifier."
        )
        raise SchemaError(msg)
    return prev


def _collect_graph(hist: Histories, moment: dt.datetime | None, rules: IdentityRules) -> _Graph:
    """Nodes (every identifier and primary id seen) and unique undirected edges, in one collect_all.

    Identifiers become integer codes through a 64-bit hash (verified by a second, independent
    hash; an exact string ranking takes over on a collision), so that edges, degrees and
    components are integer arrays: no string joins over the links.
    """
    ts = pl.col("timestamp")
    known_ts = (ts if moment is None else pl.when(before(moment)).then(ts)).dt.epoch("us")
    primary = f"{rules.primary_type}:"
    queries: list[pl.LazyFrame] = []
    links = hist.identity_links
    if links is not None:
        after = (~before(moment)).sum() if moment else pl.lit(0)
        queries.append(links.select(pl.len().alias("total"), after.alias("after")))
        known = links if moment is None else links.filter(before(moment))
        queries.append(known.select("identifier_a", "identifier_b", ts.dt.epoch("us").alias("t")))
    tables = [t for t in _KEYED_TABLES if getattr(hist, t) is not None]
    for t in tables:
        lf: pl.LazyFrame = getattr(hist, t)
        queries.append(lf.group_by("customer_id", "identifier").agg(known_ts.min().alias("t"), pl.len().alias("rows")))
    if hist.customers is not None:
        queries.append(hist.customers.select("customer_id").unique())
    results = iter(pl.collect_all(queries))

    stats = {"links_total": 0, "links_after_as_of": 0, "self_links": 0, "duplicate_links": 0, "row_links": 0}
    link_rows = pl.DataFrame(schema={"identifier_a": pl.String, "identifier_b": pl.String, "t": pl.Int64})
    if links is not None:
        counts = next(results).row(0, named=True)
        stats["links_total"], stats["links_after_as_of"] = int(counts["total"]), int(counts["after"])
        link_rows = next(results)
    rows_resolved: dict[str, int] = {}
    per_table = []
    profiling = None if rules.profiling == "ignored" else profiling_records(hist, moment, rules.primary_type)
    # "if_recorded": the source collects profiling consent when any record exists (at any time).
    required = profiling is not None and (rules.profiling == "required" or profiling_recorded(hist))
    if profiling is not None and (required or profiling.height):
        pairs = link_rows.select(pl.col("identifier_a").alias("a"), pl.col("identifier_b").alias("b"), "t")
        blocked = unconsented_links(pairs, profiling, required=required)
        stats["links_without_profiling"] = int(blocked.sum())
        link_rows = link_rows.filter(pl.Series(~blocked))
    for t in tables:
        grouped = next(results)
        rows_resolved[t] = int(grouped.filter(pl.col("customer_id").is_null())["rows"].sum())
        per_table.append(grouped.drop("rows"))
    keyed = (
        pl.concat(per_table)
        if per_table
        else pl.DataFrame(schema={"customer_id": pl.String, "identifier": pl.String, "t": pl.Int64})
    )
    _refuse_reserved_ids(keyed)
    customers = next(results) if hist.customers is not None else None

    # every occurrence of an identifier, with the time it was seen (_NEVER: not before as_of)
    has_ident = keyed["identifier"].is_not_null().to_numpy()
    has_primary = keyed["customer_id"].is_not_null().to_numpy()
    row_time = keyed["t"].fill_null(_NEVER).to_numpy()
    link_time = link_rows["t"].to_numpy()
    strings = [
        link_rows["identifier_a"],
        link_rows["identifier_b"],
        keyed["identifier"].filter(pl.Series(has_ident)),
        (primary + keyed["customer_id"].filter(pl.Series(has_primary))),
    ]
    times = [link_time, link_time, row_time[has_ident], row_time[has_primary]]
    if customers is not None:
        strings.append(primary + customers["customer_id"])
        times.append(np.full(customers.height, _NEVER, dtype=np.int64))
    occurrences = pl.concat([s.alias("identifier") for s in strings])
    codes, identifiers = _encode(occurrences)
    n = identifiers.len()
    first_seen = np.full(n, _NEVER, dtype=np.int64)
    np.minimum.at(first_seen, codes, np.concatenate(times).astype(np.int64))

    m = link_rows.height
    a, b = codes[:m], codes[m : 2 * m]
    self_link = a == b
    stats["self_links"] = int(self_link.sum())
    keys = _edge_keys(a[~self_link], b[~self_link], n)
    stats["duplicate_links"] = int((~self_link).sum()) - keys.size
    if rules.row_links and keyed.height:
        ident_codes = codes[2 * m : 2 * m + int(has_ident.sum())]
        primary_codes = codes[2 * m + int(has_ident.sum()) : 2 * m + int(has_ident.sum()) + int(has_primary.sum())]
        both = has_ident & has_primary & (row_time != _NEVER)
        if profiling is not None and (required or profiling.height) and both.any():
            pairs = keyed.filter(pl.Series(both)).select(
                pl.col("identifier").alias("a"), (primary + pl.col("customer_id")).alias("b"), "t"
            )
            blocked_rows = unconsented_links(pairs, profiling, required=required)
            stats["links_without_profiling"] = stats.get("links_without_profiling", 0) + int(blocked_rows.sum())
            both[np.flatnonzero(both)[blocked_rows]] = False
        x = ident_codes[(np.cumsum(has_ident) - 1)[both]]
        y = primary_codes[(np.cumsum(has_primary) - 1)[both]]
        row_keys = _edge_keys(x[x != y], y[x != y], n)
        stats["row_links"] = row_keys.size
        keys = _sorted_unique(np.r_[keys, row_keys])
    return _Graph(
        nodes=pl.DataFrame({"identifier": identifiers, "first_seen": first_seen}),
        src=keys // max(n, 1),
        dst=keys % max(n, 1),
        stats=stats,
        rows_resolved=rows_resolved,
    )


def _refuse_reserved_ids(keyed: pl.DataFrame) -> None:
    """Raise when a row's ``customer_id`` uses the prefix reserved for anonymous customers."""
    reserved = keyed.filter(pl.col("customer_id").str.starts_with(ANON_PREFIX))
    if reserved.height:
        msg = (
            f"customer_id: ids starting with {ANON_PREFIX!r} are reserved for anonymous customers "
            f"(e.g. {reserved.item(0, 'customer_id')!r}). Hint: drop customer_id from identifier-only rows "
            "before resolving again."
        )
        raise SchemaError(msg)


def _edge_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique undirected edges as ``low * n + high``."""
    return _sorted_unique(np.minimum(a, b) * n + np.maximum(a, b))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy 2's hash-based unique measured ~8x slower on 10M int64)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


def _encode(values: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Integer code (0..n-1) of each value and the distinct values, in code order.

    Codes come from the dense rank of a 64-bit hash; a second hash with another seed must agree
    on every value, otherwise (two identifiers sharing a hash, ~1e-6 at 10 million) the exact
    but slower string ranking is used. Codes are internal: nothing visible depends on their order.
    """
    if values.len() == 0:
        return np.zeros(0, dtype=np.int64), values
    codes = (values.hash(seed=0).rank("dense") - 1).to_numpy().astype(np.int64)
    first = _first_positions(codes)
    check = values.hash(seed=1).to_numpy()
    if not np.array_equal(check, check[first][codes]):
        codes = (values.rank("dense") - 1).to_numpy().astype(np.int64)
        first = _first_positions(codes)
    return codes, values.gather(first)


def _first_positions(codes: np.ndarray) -> np.ndarray:
    first = np.empty(int(codes.max()) + 1, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)  # the last write (the first occurrence) wins
    return first


# ----------------------------------------------------------------------------- grouping


@dataclasses.dataclass
class _Groups:
    anchor: np.ndarray  # per node: code of the node that names its group
    is_primary: np.ndarray
    degree: np.ndarray
    total_degree: np.ndarray
    over_total: np.ndarray
    cap: np.ndarray
    quarantined: np.ndarray
    listed: np.ndarray
    comp: np.ndarray
    conflict_comp: np.ndarray  # per component
    oversize_comp: np.ndarray
    label: np.ndarray  # nearest primary (conflict/oversize components), or _UNREACHED/_AMBIGUOUS
    primary_links: int
    edges_used: int


def _group(graph: _Graph, rules: IdentityRules) -> _Groups:
    """Quarantine, components, conflict and oversize handling: each node's anchor."""
    n = graph.nodes.height
    ident = graph.nodes["identifier"]
    id_type = ident.str.split_exact(":", 1).struct.field("field_0")
    type_caps = {t: rules.cap_for(t) for t in id_type.unique().to_list()}
    cap_of = {t: (_UNCAPPED if c is None else c) for t, c in type_caps.items()}
    cap = id_type.replace_strict(cap_of, return_dtype=pl.Int64).to_numpy().astype(np.int64)
    is_primary = (id_type == rules.primary_type).to_numpy()
    listed = ident.is_in(list(rules.quarantine)).to_numpy()
    uncounted = id_type.is_in(list(rules.uncounted_types)).to_numpy()
    src, dst = graph.src, graph.dst
    ends = np.concatenate([src, dst])
    total_degree = np.bincount(ends, minlength=n).astype(np.int64)
    counted = ~uncounted[np.concatenate([dst, src])]  # the other end of each edge
    degree = np.bincount(ends[counted], minlength=n).astype(np.int64)
    total_cap = _UNCAPPED if rules.max_total_degree is None else rules.max_total_degree
    over_total = (total_degree > total_cap) & ~is_primary
    quarantined = listed | (degree > cap) | over_total
    primary_pair = is_primary[src] & is_primary[dst]
    keep = ~quarantined[src] & ~quarantined[dst] & ~primary_pair
    src, dst = src[keep], dst[keep]
    adjacency = sparse.coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    n_comp, comp = connected_components(adjacency, directed=False)
    comp = comp.astype(np.int64)
    size = np.bincount(comp, minlength=n_comp)
    n_primary = np.bincount(comp[is_primary], minlength=n_comp)
    oversize_comp = size > rules.max_component_size
    conflict_comp = (n_primary >= 2) & ~oversize_comp

    anchor = np.arange(n, dtype=np.int64)  # singletons name themselves
    # exactly one primary id: the component is that customer
    one = (n_primary == 1) & ~oversize_comp
    primaries = np.flatnonzero(is_primary)
    comp_primary = np.full(n_comp, -1, dtype=np.int64)
    chosen = primaries[one[comp[primaries]]]
    comp_primary[comp[chosen]] = chosen
    in_one = one[comp]
    anchor[in_one] = comp_primary[comp[in_one]]
    # no primary id, 2+ identifiers: earliest-seen identifier (ties: smallest identifier = smallest code)
    anon_nodes = np.flatnonzero(((n_primary == 0) & ~oversize_comp & (size >= 2))[comp])
    if anon_nodes.size:
        first_seen = graph.nodes["first_seen"].to_numpy()
        earliest = np.full(n_comp, _NEVER, dtype=np.int64)
        np.minimum.at(earliest, comp[anon_nodes], first_seen[anon_nodes])
        candidates = anon_nodes[first_seen[anon_nodes] == earliest[comp[anon_nodes]]]
        comp_anchor = np.full(n_comp, -1, dtype=np.int64)
        comps, chosen = _smallest_identifier(comp[candidates], candidates, ident)
        comp_anchor[comps] = chosen
        anchor[anon_nodes] = comp_anchor[comp[anon_nodes]]
    # conflicts: nearest primary id; oversize: direct neighbours of exactly one primary id
    label = np.full(n, _UNREACHED, dtype=np.int64)
    for comps, levels in ((conflict_comp, None), (oversize_comp, 1)):
        if not comps.any():
            continue
        inside = comps[comp]
        seeds = np.flatnonzero(inside & is_primary)
        label[seeds] = seeds
        sel = inside[src]  # an edge lies inside one component
        _nearest_primary(src[sel], dst[sel], label, max_levels=levels)
    hard = (conflict_comp | oversize_comp)[comp]
    anchor[hard] = np.where(label[hard] >= 0, label[hard], np.flatnonzero(hard))
    return _Groups(
        anchor=anchor,
        is_primary=is_primary,
        degree=degree,
        total_degree=total_degree,
        over_total=over_total,
        cap=cap,
        quarantined=quarantined,
        listed=listed,
        comp=comp,
        conflict_comp=conflict_comp,
        oversize_comp=oversize_comp,
        label=label,
        primary_links=int(primary_pair.sum()),
        edges_used=int(src.size),
    )


def _smallest_identifier(keys: np.ndarray, codes: np.ndarray, ident: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per key, the code whose identifier sorts first (strings compared only where a key has several)."""
    count = np.bincount(keys)
    single = count[keys] == 1
    several = pl.DataFrame({"key": keys[~single], "code": codes[~single], "identifier": ident.gather(codes[~single])})
    best = several.group_by("key").agg(pl.col("code").sort_by("identifier").first())
    return (
        np.concatenate([keys[single], best["key"].to_numpy()]),
        np.concatenate([codes[single], best["code"].to_numpy()]),
    )


def _nearest_primary(src: np.ndarray, dst: np.ndarray, label: np.ndarray, *, max_levels: int | None) -> None:
    """Breadth-first from all labelled nodes at once; a node reached by two labels becomes ambiguous.

    ``label`` is updated in place: unreached nodes (``_UNREACHED``) take the unique label of
    their neighbours one level closer; two different labels, or an ambiguous neighbour, make
    them ``_AMBIGUOUS``. One vectorised step per level (levels = component radius).
    """
    tail, head = np.concatenate([src, dst]), np.concatenate([dst, src])
    frontier = label != _UNREACHED
    level = 0
    while max_levels is None or level < max_levels:
        step = frontier[tail] & (label[head] == _UNREACHED)
        if not step.any():
            return
        reached, via = head[step], label[tail[step]]
        order = np.lexsort((via, reached))
        reached, via = reached[order], via[order]
        fresh = np.r_[True, (reached[1:] != reached[:-1]) | (via[1:] != via[:-1])]
        reached, via = reached[fresh], via[fresh]
        nodes, first, count = np.unique(reached, return_index=True, return_counts=True)
        label[nodes] = np.where(count == 1, via[first], _AMBIGUOUS)
        frontier = np.zeros_like(frontier)
        frontier[nodes] = True
        level += 1


# ----------------------------------------------------------------------------- naming


def _anon_id(anchor: str, key: bytes | None) -> str:
    """The anonymous id of a group: a keyed hash of its anchor identifier (see :mod:`omni_ml._privacy`)."""
    return ANON_PREFIX + keyed_hash(anchor, key)[:16]


def _name_groups(
    graph: _Graph, groups: _Groups, rules: IdentityRules, prev: pl.DataFrame | None
) -> tuple[pl.DataFrame, dict[str, int] | None]:
    """Customer id per identifier: the primary value, an earlier anon id, or the anchor's hash.

    Returns the identity map (rows in internal code order: deterministic, not sorted; sorting
    ten million strings would cost more than the whole resolution) and the stability counts.
    """
    ident = graph.nodes["identifier"]
    present = np.bincount(groups.anchor, minlength=ident.len()) > 0
    anchors = np.flatnonzero(present)
    position = (np.cumsum(present) - 1)[groups.anchor]
    names = pl.DataFrame(
        {"anchor": anchors, "anchor_identifier": ident.gather(anchors), "primary": groups.is_primary[anchors]}
    )
    primary_len = len(rules.primary_type) + 1
    kept = pl.DataFrame(schema={"anchor": pl.Int64, "customer_id": pl.String})
    if prev is not None:
        anon_nodes = np.flatnonzero(~groups.is_primary[groups.anchor])
        holders = pl.DataFrame(
            {
                "identifier": ident.gather(anon_nodes),
                "anchor": groups.anchor[anon_nodes],
                "first_seen": graph.nodes["first_seen"].to_numpy()[anon_nodes],
            }
        )
        kept = (
            holders.join(prev, on="identifier", how="inner")
            .filter(pl.col("customer_id").str.starts_with(ANON_PREFIX))
            .sort("first_seen", "identifier")
            .unique("anchor", keep="first", maintain_order=True)  # earliest holder per group
            .unique("customer_id", keep="first", maintain_order=True)  # each earlier id to one group
            .select("anchor", "customer_id")
        )
    fresh = names.filter(~pl.col("primary")).join(kept, on="anchor", how="anti")
    taken = set(kept["customer_id"].to_list())
    fresh_ids = []
    key = pseudonym_key() if fresh.height else None  # asked for only when an id is derived
    for name in fresh["anchor_identifier"].to_list():
        new, salt = _anon_id(name, key), 0
        while new in taken:  # only when an earlier id already names another group
            salt += 1
            new = _anon_id(f"{name}#{salt}", key)
        fresh_ids.append(new)
    named = pl.concat([kept, fresh.select("anchor", pl.Series("customer_id", fresh_ids, dtype=pl.String))])
    customer_of_anchor = (
        names.join(named, on="anchor", how="left", maintain_order="left")
        .select(
            pl.when(pl.col("primary"))
            .then(pl.col("anchor_identifier").str.slice(primary_len))
            .otherwise(pl.col("customer_id"))
            .alias("customer_id")
        )
        .to_series()
    )
    identity_map = pl.DataFrame({"identifier": ident, "customer_id": customer_of_anchor.gather(position)})
    if prev is None:
        return identity_map, None
    both = identity_map.join(prev, on="identifier", how="full", suffix="_prev")
    now, before = pl.col("customer_id"), pl.col("customer_id_prev")
    upgraded = before.str.starts_with(ANON_PREFIX) & ~now.str.starts_with(ANON_PREFIX)
    counts = both.select(
        (now == before).sum().alias("kept"),
        upgraded.sum().alias("upgraded"),
        ((now != before) & ~upgraded).sum().alias("changed"),
        before.is_null().sum().alias("new"),
        now.is_null().sum().alias("gone"),
    ).row(0, named=True)
    return identity_map, {k: int(v) for k, v in counts.items()}


def _apply_map(lf: pl.LazyFrame, identity_map: pl.DataFrame) -> pl.LazyFrame:
    mapped = identity_map.lazy().rename({"customer_id": "__mapped"})
    return (
        lf.join(mapped, on="identifier", how="left", maintain_order="left")
        .with_columns(pl.coalesce("customer_id", "__mapped").alias("customer_id"))
        .drop("__mapped")
    )
