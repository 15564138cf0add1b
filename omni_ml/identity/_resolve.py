"""Identity resolution: :func:`resolve`, :func:`resolve_identities`, :func:`ensure_resolved` and the report."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.identity._graph import (
    _apply_map,
    _check_previous,
    _collect_graph,
    _Graph,
    _group,
    _Groups,
    _name_groups,
    _to_utc,
)
from omni_ml.identity._rules import _KEYED_TABLES, _UNCAPPED, IdentityReport, IdentityRules
from omni_ml.identity.consent import require_resolved

__all__ = ["ensure_resolved", "pairwise_merge_scores", "resolve", "resolve_identities"]

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
        links_without_profiling=graph.stats.get("links_without_profiling", 0),
    )
