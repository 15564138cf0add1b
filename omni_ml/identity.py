"""Recognise the customer across channels: identity resolution and consent state as of any date.

Identity resolution (:func:`resolve`, :func:`resolve_identities`)
------------------------------------------------------------------
Identifiers are typed strings ``TYPE:VALUE`` (``email:ann@x.dk``, ``cookie:9f2c``,
``crm:C0001``). The identifiers form a graph: an edge for each row of
``identity_links`` seen strictly before ``as_of`` and, with ``IdentityRules.row_links``,
for each row of events/contacts/consents carrying both a ``customer_id`` X and an
``identifier`` (the row says the identifier belongs to ``crm:X``). The rules, in order:

1. **Primary ids.** An identifier of the primary type (``crm``) *is* a customer id:
   ``crm:X`` <=> customer ``X``. A row with a customer_id keeps it.
2. **Quarantine.** An identifier whose degree exceeds the cap of its type
   (:class:`IdentityRules`), or that is listed explicitly, loses all its edges: a household
   phone or a shop's default loyalty card must not glue strangers together. It becomes its
   own customer. The degree counts distinct linked identifiers except those of the
   ``uncounted_types`` (browser cookies: an email legitimately collects a new one every
   few weeks); all distinct neighbours together are capped by ``max_total_degree``. The
   primary type is uncapped unless ``max_degree`` names it; unknown types get
   ``default_max_degree``.
3. **Primary-primary links are not merges.** A direct link between two primary ids is
   reported and ignored: merging two CRM records is the CRM's decision.
4. **Components.** Connected components of the remaining graph (scipy sparse
   ``connected_components``). A component with exactly one primary id gets that id; one
   without a primary id gets an anonymous id (rule 7).
5. **Conflicts.** A component holding two or more primary ids is *not* merged. Each other
   identifier goes to its nearest primary id (fewest hops, breadth-first from all primary
   ids at once); an identifier equally near to two customers, or reached only through
   such an identifier, is *ambiguous* and becomes its own customer.
6. **Oversize components** (more than ``max_component_size`` identifiers) are reported and
   not trusted: only identifiers directly linked to exactly one primary id join it; every
   other identifier of the component becomes its own customer.
7. **Stable anonymous ids.** A group without a primary id is named
   ``anon-<sha256(anchor)[:16]>``; the anchor is the group's earliest-seen identifier
   (earliest timestamp in links or rows before ``as_of``, ties by identifier). Newer
   identifiers and links therefore never rename a group, and when two groups merge the
   older one's id survives. With ``previous`` (an earlier map), an anonymous group keeps
   the earlier ``anon-`` id held by its earliest-seen identifier that had one (each
   earlier id goes to one group only), so a rerun does not renumber anyone even when the
   data was backfilled. The prefix ``anon-`` is reserved for these ids.

Identifiers never linked are kept as their own customers: nothing is dropped.

Consent (:func:`consent_state`)
-------------------------------
Consent is event-sourced (DESIGN.md section 4): the state of a (customer, channel) at ``t``
is the latest consent record strictly before ``t``; records at the same instant
resolve to *withdrawn* (the safe reading); no record means not granted for outbound
channels (``default``, configurable).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from omni_ml.data import CONTACTABLE_CHANNELS, TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, SchemaError

__all__ = [
    "ANON_PREFIX",
    "IdentityReport",
    "IdentityRules",
    "consent_state",
    "ensure_resolved",
    "pairwise_merge_scores",
    "require_resolved",
    "resolve",
    "resolve_identities",
]

ANON_PREFIX = "anon-"
_KEYED_TABLES: tuple[str, ...] = ("events", "contacts", "consents")
_UNCAPPED = np.iinfo(np.int64).max
_NEVER = np.iinfo(np.int64).max  # first_seen of an identifier with no timestamp before as_of
_UNREACHED, _AMBIGUOUS = -1, -2


# ----------------------------------------------------------------------------- rules and report


@dataclasses.dataclass(frozen=True)
class IdentityRules:
    """Guard rails of identity resolution; build from YAML with ``omni_ml.config.from_yaml``.

    Parameters
    ----------
    max_degree
        Per identifier type, the most distinct identifiers (not counting ``uncounted_types``)
        one identifier may be linked to before it is quarantined (``None``: no cap). A shared
        household phone or a shop's placeholder loyalty card exceeds it.
    default_max_degree
        Cap for types not named in ``max_degree`` (cookies, app ids, unknown types).
        The primary type is uncapped unless named in ``max_degree``.
    uncounted_types
        Neighbour types left out of the degree: short-lived device ids that one person
        accumulates (a new browser cookie every few weeks).
    max_total_degree
        Cap on all distinct neighbours of any non-primary identifier, uncounted types included
        (a placeholder email that thousands of browsers logged in with); ``None``: no cap.
    max_component_size
        Components with more identifiers are reported and not trusted (module docstring, rule 6).
    primary_type
        Type whose value is the customer id (``crm:C0001`` is customer ``C0001``).
    quarantine
        Identifiers always quarantined (e.g. ``email:noreply@shop.dk``).
    row_links
        Treat a table row carrying both customer_id X and an identifier as a link to ``crm:X``.

    Examples
    --------
    >>> from omni_ml.config import from_mapping
    >>> rules = from_mapping(IdentityRules, {"max_degree": {"phone": 2}, "quarantine": ["email:x@y.z"]})
    >>> rules.cap_for("phone"), rules.cap_for("cookie"), rules.cap_for("crm")
    (2, 10, None)
    """

    max_degree: dict[str, int | None] = dataclasses.field(
        default_factory=lambda: {"phone": 3, "loyalty": 3, "email": 5}
    )
    default_max_degree: int = 10
    uncounted_types: tuple[str, ...] = ("cookie",)
    max_total_degree: int | None = 200
    max_component_size: int = 50
    primary_type: str = "crm"
    quarantine: tuple[str, ...] = ()
    row_links: bool = True

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.max_degree, Mapping):
            problems.append(f"max_degree must map identifier type -> int, got {type(self.max_degree).__name__}")
        else:
            for key, cap in self.max_degree.items():
                if not isinstance(key, str) or not key or ":" in key:
                    problems.append(f"max_degree key {key!r} is not an identifier type (e.g. 'phone')")
                if cap is not None and (not _is_int(cap) or cap < 1):
                    problems.append(f"max_degree[{key!r}] = {cap!r} must be an integer >= 1 or null")
        if not _is_int(self.default_max_degree) or self.default_max_degree < 1:
            problems.append(f"default_max_degree = {self.default_max_degree!r} must be an integer >= 1")
        if self.max_total_degree is not None and (not _is_int(self.max_total_degree) or self.max_total_degree < 1):
            problems.append(f"max_total_degree = {self.max_total_degree!r} must be an integer >= 1 or null")
        if isinstance(self.uncounted_types, str) or any(not isinstance(t, str) for t in self.uncounted_types):
            problems.append(f"uncounted_types must be a list of identifier types, got {self.uncounted_types!r}")
        if not _is_int(self.max_component_size) or self.max_component_size < 2:
            problems.append(f"max_component_size = {self.max_component_size!r} must be an integer >= 2")
        if not isinstance(self.primary_type, str) or not self.primary_type or ":" in self.primary_type:
            problems.append(f"primary_type = {self.primary_type!r} must be a type name such as 'crm'")
        bad = [q for q in self.quarantine if not isinstance(q, str) or ":" not in q.strip(":")]
        if isinstance(self.quarantine, str) or bad:
            shown = self.quarantine if isinstance(self.quarantine, str) else bad[:5]
            problems.append(f"quarantine must be a list of TYPE:VALUE identifiers, got {shown!r}")
        if problems:
            msg = "IdentityRules: " + "; ".join(problems) + ". Hint: see the IdentityRules docstring."
            raise ConfigError(msg)

    def cap_for(self, id_type: str) -> int | None:
        """Max degree of an identifier of type ``id_type`` (``None``: uncapped)."""
        if id_type in self.max_degree:
            return self.max_degree[id_type]
        return None if id_type == self.primary_type else self.default_max_degree


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class IdentityReport:
    """What :func:`resolve` did; ``to_text()`` is what ``omni-ml resolve`` prints.

    ``merges`` is identifiers minus customers (how many identifiers were folded into
    another one's customer). ``quarantined`` has columns identifier, type, degree (counted),
    total_degree, max_degree (of its type; null: uncapped), reason (degree, total_degree or
    listed); ``oversize`` and ``conflicts`` one row per component (its
    smallest identifier names it). ``stability`` compares with the ``previous`` map:
    identifiers keeping their id, upgraded from anonymous to a primary id, changed,
    new, and no longer present.
    """

    as_of: dt.datetime | None
    rules: IdentityRules
    links_total: int
    links_after_as_of: int
    self_links: int
    duplicate_links: int
    row_links: int
    primary_links_ignored: int
    edges_used: int
    identifiers: int
    customers: int
    merges: int
    merged_customers: int
    largest_group: int
    size_counts: dict[int, int]
    quarantined: pl.DataFrame
    oversize: pl.DataFrame
    conflicts: pl.DataFrame
    ambiguous: int
    rows_resolved: dict[str, int]
    stability: dict[str, int] | None = None

    def to_text(self, *, top: int = 10) -> str:
        """Render the report as short text (at most ``top`` rows per list)."""
        when = f"links before {self.as_of:%Y-%m-%d %H:%M}" if self.as_of else "all links"
        lines = [
            f"identity resolution ({when}; {self.rules.primary_type} ids are customer ids)",
            f"  links: {self.links_total:,} in table, {self.links_after_as_of:,} at/after as-of ignored, "
            f"{self.self_links:,} self-links, {self.duplicate_links:,} duplicates; "
            f"{self.row_links:,} row links; {self.edges_used:,} edges used",
            f"  identifiers: {self.identifiers:,} -> customers: {self.customers:,} "
            f"({self.merges:,} merges; {self.merged_customers:,} customers with 2+ identifiers; "
            f"largest {self.largest_group:,})",
            "  group sizes: " + ", ".join(f"{k}: {v:,}" for k, v in list(self.size_counts.items())[:12]),
            "  rows given a customer_id: " + ", ".join(f"{t} {n:,}" for t, n in self.rows_resolved.items()),
            f"  quarantined identifiers: {self.quarantined.height:,}",
        ]
        for r in self.quarantined.head(top).iter_rows(named=True):
            why = {"listed": "listed", "degree": f"max {r['max_degree']}"}.get(
                r["reason"], f"{r['total_degree']} links in all, max {self.rules.max_total_degree}"
            )
            lines.append(f"    {r['identifier']}  degree {r['degree']} ({why})")
        lines.append(f"  conflicts (2+ {self.rules.primary_type} ids, not merged): {self.conflicts.height:,}")
        for r in self.conflicts.head(top).iter_rows(named=True):
            ids = _short_list(r["primary_ids"])
            lines.append(f"    {r['component']}  size {r['size']}  ids {ids}  ambiguous {r['ambiguous']}")
        cap = self.rules.max_component_size
        lines.append(f"  oversize components (> {cap}, not trusted): {self.oversize.height:,}")
        for r in self.oversize.head(top).iter_rows(named=True):
            ids = _short_list(r["primary_ids"])
            lines.append(f"    {r['component']}  size {r['size']}  {self.rules.primary_type} ids {ids}")
        lines.append(
            f"  ambiguous identifiers (own customer): {self.ambiguous:,}; "
            f"{self.rules.primary_type}-{self.rules.primary_type} links ignored: {self.primary_links_ignored:,}"
        )
        if self.stability is not None:
            lines.append("  vs previous map: " + ", ".join(f"{k} {v:,}" for k, v in self.stability.items()))
        return "\n".join(lines)


def _short_list(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(values[:limit])
    return f"{shown}, ... ({len(values)})" if len(values) > limit else shown


# ----------------------------------------------------------------------------- public API


def resolve_identities(
    hist: Histories,
    *,
    as_of: str | dt.date | dt.datetime | None = None,
    rules: IdentityRules | None = None,
    previous: pl.DataFrame | None = None,
) -> Histories:
    """Give every row of events, contacts and consents a customer_id; see :func:`resolve`.

    The report is dropped; call :func:`resolve` to get it.

    Examples
    --------
    >>> from omni_ml.data import load_histories
    >>> hist = resolve_identities(load_histories("data/sample"))
    >>> hist.identity_map.filter(pl.col("identifier") == "loyalty:4400123").item(0, "customer_id")
    'C003'
    >>> hist.events.filter(pl.col("customer_id").is_null()).collect().height
    0
    """
    return resolve(hist, as_of=as_of, rules=rules, previous=previous)[0]


def ensure_resolved(hist: Histories, as_of: str | dt.date | dt.datetime | None = None) -> Histories:
    """``hist`` itself when every events/contacts/consents row has a customer_id, else resolved as of ``as_of``.

    Examples
    --------
    >>> import datetime as dt
    >>> from omni_ml.data import load_histories
    >>> ensure_resolved(load_histories("data/sample"), dt.datetime(2025, 3, 1)).identity_map is not None
    True
    """
    try:
        require_resolved(hist, *[t for t in _KEYED_TABLES if getattr(hist, t) is not None])
    except SchemaError:
        return resolve_identities(hist, as_of=as_of)
    return hist


def resolve(
    hist: Histories,
    *,
    as_of: str | dt.date | dt.datetime | None = None,
    rules: IdentityRules | None = None,
    previous: pl.DataFrame | None = None,
) -> tuple[Histories, IdentityReport]:
    """Resolve identifiers into customer ids (rules in the module docstring).

    Parameters
    ----------
    hist
        Validated histories (:func:`omni_ml.load_histories`).
    as_of
        Use only links (and row links) with ``timestamp < as_of``; rows at or after it are
        still resolved (identifiers first seen then become their own customers).
    rules
        Guard rails; default :class:`IdentityRules()`.
    previous
        An earlier identity map (identifier, customer_id): anonymous groups keep their ids.

    Returns
    -------
    tuple[Histories, IdentityReport]
        Histories whose events/contacts/consents all carry a customer_id and whose
        ``identity_map`` is a DataFrame(identifier, customer_id) (one row per identifier, deterministic order),
        and the report.

    Raises
    ------
    SchemaError
        On a bad ``as_of`` or ``previous`` map, or a primary id that starts with ``anon-``.

    Examples
    --------
    >>> from omni_ml.data import load_histories
    >>> hist, report = resolve(load_histories("data/sample"), as_of="2025-02-01")
    >>> dict(hist.identity_map.iter_rows())["loyalty:4400123"].startswith("anon-")  # linked 2025-02-08
    True
    >>> report.customers, report.merges
    (4, 2)
    """
    rules = rules if rules is not None else IdentityRules()
    if not isinstance(rules, IdentityRules):
        msg = f"rules must be an IdentityRules, got {type(rules).__name__}. Hint: from_mapping(IdentityRules, {{...}})."
        raise ConfigError(msg)
    moment = _to_utc(as_of)
    prev = _check_previous(previous)
    graph = _collect_graph(hist, moment, rules)
    groups = _group(graph, rules)
    identity_map, stability = _name_groups(graph, groups, rules, prev)
    resolved = {t: _apply_map(lf, identity_map) for t in _KEYED_TABLES if (lf := getattr(hist, t)) is not None}
    report = _report(graph, groups, identity_map, rules, moment, stability)
    return hist.replace(identity_map=identity_map, **resolved), report


def pairwise_merge_scores(predicted: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """Pairwise precision and recall of merges of ``predicted`` against ``truth``.

    Both frames map ``identifier`` -> ``customer_id``; only identifiers in both count. A pair
    of identifiers is a merge when both map to the same customer. Precision is the share of
    predicted merges that are true, recall the share of true merges found (1.0 when there
    are none to find or make).

    Examples
    --------
    >>> truth = pl.DataFrame({"identifier": ["a:1", "a:2", "a:3"], "customer_id": ["x", "x", "y"]})
    >>> pred = pl.DataFrame({"identifier": ["a:1", "a:2", "a:3"], "customer_id": ["p", "p", "p"]})
    >>> pairwise_merge_scores(pred, truth)
    {'precision': 0.3333333333333333, 'recall': 1.0, 'pairs_predicted': 3, 'pairs_true': 1}
    """
    both = predicted.select("identifier", pl.col("customer_id").alias("pred")).join(
        truth.select("identifier", pl.col("customer_id").alias("true")), on="identifier", how="inner"
    )

    def pairs(*keys: str) -> int:
        n = both.group_by(*keys).len()["len"].cast(pl.Int64)
        return int((n * (n - 1) // 2).sum())

    tp, pp, tt = pairs("pred", "true"), pairs("pred"), pairs("true")
    return {
        "precision": tp / pp if pp else 1.0,
        "recall": tp / tt if tt else 1.0,
        "pairs_predicted": pp,
        "pairs_true": tt,
    }


# ----------------------------------------------------------------------------- graph collection


@dataclasses.dataclass
class _Graph:
    nodes: pl.DataFrame  # identifier (in code order), first_seen (Int64 us, _NEVER if unseen)
    src: np.ndarray  # unique undirected edges, src < dst (node codes)
    dst: np.ndarray
    stats: dict[str, int]
    rows_resolved: dict[str, int]


def _to_utc(value: str | dt.date | dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            msg = f"as_of: cannot parse {value!r} as a date. Hint: use ISO 8601, e.g. 2025-06-01."
            raise SchemaError(msg) from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


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
    known_ts = (ts if moment is None else pl.when(ts < moment).then(ts)).dt.epoch("us")
    primary = f"{rules.primary_type}:"
    queries: list[pl.LazyFrame] = []
    links = hist.identity_links
    if links is not None:
        after = (ts >= moment).sum() if moment else pl.lit(0)
        queries.append(links.select(pl.len().alias("total"), after.alias("after")))
        known = links if moment is None else links.filter(ts < moment)
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
    for t in tables:
        grouped = next(results)
        rows_resolved[t] = int(grouped.filter(pl.col("customer_id").is_null())["rows"].sum())
        per_table.append(grouped.drop("rows"))
    keyed = (
        pl.concat(per_table)
        if per_table
        else pl.DataFrame(schema={"customer_id": pl.String, "identifier": pl.String, "t": pl.Int64})
    )
    reserved = keyed.filter(pl.col("customer_id").str.starts_with(ANON_PREFIX))
    if reserved.height:
        msg = (
            f"customer_id: ids starting with {ANON_PREFIX!r} are reserved for anonymous customers "
            f"(e.g. {reserved.item(0, 'customer_id')!r}). Hint: drop customer_id from identifier-only rows "
            "before resolving again."
        )
        raise SchemaError(msg)
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


def _anon_id(anchor: str) -> str:
    return ANON_PREFIX + hashlib.sha256(anchor.encode("utf-8")).hexdigest()[:16]


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
    for name in fresh["anchor_identifier"].to_list():
        new, salt = _anon_id(name), 0
        while new in taken:  # only when an earlier id already names another group
            salt += 1
            new = _anon_id(f"{name}#{salt}")
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


# ----------------------------------------------------------------------------- report


def _report(
    graph: _Graph,
    groups: _Groups,
    identity_map: pl.DataFrame,
    rules: IdentityRules,
    moment: dt.datetime | None,
    stability: dict[str, int] | None,
) -> IdentityReport:
    ident = graph.nodes["identifier"]
    q = np.flatnonzero(groups.quarantined)
    quarantined = (
        pl.DataFrame(
            {
                "identifier": ident.gather(q),
                "degree": groups.degree[q],
                "total_degree": groups.total_degree[q],
                "max_degree": np.where(groups.cap[q] == _UNCAPPED, -1, groups.cap[q]),
                "reason": np.where(
                    groups.listed[q], "listed", np.where(groups.degree[q] > groups.cap[q], "degree", "total_degree")
                ),
            }
        )
        .with_columns(
            pl.col("identifier").str.split_exact(":", 1).struct.field("field_0").alias("type"),
            pl.when(pl.col("max_degree") >= 0).then(pl.col("max_degree")).alias("max_degree"),
        )
        .select("identifier", "type", "degree", "total_degree", "max_degree", "reason")
        .sort("degree", "identifier", descending=[True, False])
    )
    hard = (groups.conflict_comp | groups.oversize_comp)[groups.comp]
    hard_nodes = np.flatnonzero(hard)
    per_comp = (
        pl.DataFrame(
            {
                "comp": groups.comp[hard_nodes],
                "identifier": ident.gather(hard_nodes),
                "primary": groups.is_primary[hard_nodes],
                "ambiguous": ~groups.is_primary[hard_nodes] & (groups.label[hard_nodes] < 0),
                "oversize": groups.oversize_comp[groups.comp[hard_nodes]],
            }
        )
        .group_by("comp")
        .agg(
            pl.col("identifier").min().alias("component"),
            pl.len().alias("size"),
            pl.col("identifier").filter("primary").str.slice(len(rules.primary_type) + 1).sort().alias("primary_ids"),
            pl.col("ambiguous").sum(),
            pl.col("oversize").first(),
        )
        .sort("size", "component", descending=[True, False])
        .drop("comp")
    )
    per_group = np.bincount(groups.anchor)
    per_group = per_group[per_group > 0]  # identifiers per customer
    size_freq = np.bincount(per_group) if per_group.size else np.zeros(0, dtype=np.int64)
    size_values = np.flatnonzero(size_freq)
    size_freq = size_freq[size_values]
    return IdentityReport(
        as_of=moment,
        rules=rules,
        links_total=graph.stats["links_total"],
        links_after_as_of=graph.stats["links_after_as_of"],
        self_links=graph.stats["self_links"],
        duplicate_links=graph.stats["duplicate_links"],
        row_links=graph.stats["row_links"],
        primary_links_ignored=groups.primary_links,
        edges_used=groups.edges_used,
        identifiers=identity_map.height,
        customers=int(per_group.size),
        merges=identity_map.height - int(per_group.size),
        merged_customers=int((per_group >= 2).sum()),
        largest_group=int(per_group.max()) if per_group.size else 0,
        size_counts={int(k): int(v) for k, v in zip(size_values, size_freq, strict=True)},
        quarantined=quarantined,
        oversize=per_comp.filter("oversize").drop("oversize"),
        conflicts=per_comp.filter(~pl.col("oversize")).drop("oversize"),
        ambiguous=int(per_comp.filter(~pl.col("oversize"))["ambiguous"].sum()),
        rows_resolved=graph.rows_resolved,
        stability=stability,
    )


# ----------------------------------------------------------------------------- consent


def require_resolved(hist: Histories, *tables: str) -> None:
    """Raise if any of ``tables`` still has rows without a customer_id (identifier-only rows).

    Trusts the load report's note for events and contacts; other tables (consents) are checked
    on the data, since the load report does not count their identifier-only rows.
    """
    if hist.identity_map is not None:
        return
    report = hist.report
    for table in tables or tuple(hist.tables()):
        lf = getattr(hist, table)
        if lf is None or "customer_id" not in lf.collect_schema().names():
            continue
        summary = report.tables.get(table) if report else None
        if summary is not None and any("carry only an identifier" in n for n in summary.notes):
            unresolved = True
        elif summary is not None and table in ("events", "contacts"):
            unresolved = False
        else:
            unresolved = bool(lf.select(pl.col("customer_id").is_null().any()).collect().item())
        if unresolved:
            msg = (
                f"{table}.customer_id: some rows carry only an identifier (no customer_id). "
                "Hint: call omni_ml.resolve_identities(hist) first (CLI: omni-ml resolve)."
            )
            raise SchemaError(msg)


def consent_state(
    hist: Histories,
    at: dt.datetime | pl.DataFrame,
    *,
    channels: Sequence[str] = CONTACTABLE_CHANNELS,
    default: bool = False,
) -> pl.DataFrame:
    """Consent per customer and channel as of ``at``, one boolean column ``consent_<channel>`` each.

    Parameters
    ----------
    hist
        Resolved histories (every consents row has a customer_id).
    at
        A moment (every customer in events, consents or customers is returned), or a frame
        with columns ``customer_id`` and ``cutoff`` (one output row per input row, in order).
    channels
        Channels to report.
    default
        State of a channel with no record before ``at``.

    Returns
    -------
    polars.DataFrame
        ``customer_id`` (and ``cutoff`` when ``at`` is a frame), then ``consent_<channel>``.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({"customer_id": ["a"], "timestamp": [dt.datetime(2025, 1, 1)], "amount": [1.0]})
    >>> cs = pl.DataFrame({"customer_id": ["a"], "channel": ["email"], "granted": [True],
    ...                    "timestamp": [dt.datetime(2025, 1, 2)]})
    >>> h = Histories.from_frames(ev, consents=cs)
    >>> consent_state(h, dt.datetime(2025, 1, 3), channels=["email", "sms"]).row(0)
    ('a', True, False)
    """
    require_resolved(hist, "consents")
    if isinstance(at, pl.DataFrame):
        keys = at.select("customer_id", pl.col("cutoff").cast(TIMESTAMP))
        with_cutoff = True
    else:
        moment = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        ids = [hist.events.select("customer_id")]
        ids += [lf.select("customer_id") for lf in (hist.consents, hist.customers) if lf is not None]
        keys = (
            pl.concat(ids)
            .drop_nulls()
            .unique()
            .sort("customer_id")
            .with_columns(pl.lit(moment).cast(TIMESTAMP).alias("cutoff"))
            .collect()
        )
        with_cutoff = False
    out = keys.with_row_index("__row")
    if hist.consents is None:
        records = pl.DataFrame(
            schema={"customer_id": pl.String, "channel": pl.String, "timestamp": TIMESTAMP, "granted": pl.Boolean}
        )
    else:
        records = (
            hist.consents.filter(pl.col("channel").is_in(list(channels)))
            .group_by("customer_id", "channel", "timestamp")
            .agg(pl.col("granted").all())  # same-instant conflict: withdrawn wins
            .collect()
        )
    sorted_keys = out.sort("cutoff")
    for channel in channels:
        right = records.filter(pl.col("channel") == channel).drop("channel").sort("timestamp")
        joined = sorted_keys.join_asof(
            right,
            left_on="cutoff",
            right_on="timestamp",
            by="customer_id",
            strategy="backward",
            allow_exact_matches=False,  # exclusive cutoff: a record at t is not yet known at t
            check_sortedness=False,
        )
        sorted_keys = sorted_keys.with_columns(joined["granted"].fill_null(default).alias(f"consent_{channel}"))
    result = sorted_keys.sort("__row").drop("__row")
    return result if with_cutoff else result.drop("cutoff")
