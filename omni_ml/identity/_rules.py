"""Identity resolution rules (:class:`IdentityRules`) and its report (:class:`IdentityReport`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from omni_ml._privacy import mask_identifier
from omni_ml.exceptions import ConfigError

ANON_PREFIX = "anon-"
_KEYED_TABLES: tuple[str, ...] = ("events", "contacts", "consents")
_UNCAPPED = np.iinfo(np.int64).max
_NEVER = np.iinfo(np.int64).max  # first_seen of an identifier with no timestamp before as_of
_UNREACHED, _AMBIGUOUS = -1, -2


__all__ = ["ANON_PREFIX", "IdentityReport", "IdentityRules"]

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
    profiling
        When a ``profiling`` consent is needed for a link to be used (see ``omni_ml.identity._profiling``):
        ``"if_recorded"`` (as soon as the consents hold any profiling record), ``"required"`` or
        ``"ignored"``. A withdrawal is always respected unless ``"ignored"``.

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
    profiling: str = "if_recorded"

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
        if self.profiling not in ("if_recorded", "required", "ignored"):
            problems.append(f"profiling = {self.profiling!r} must be 'if_recorded', 'required' or 'ignored'")
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
    links_without_profiling: int = 0  # links (and row links) not used: no or a withdrawn profiling consent

    def to_text(self, *, top: int = 10) -> str:
        """Render the report as short text (at most ``top`` rows per list)."""
        when = f"links before {self.as_of:%Y-%m-%d %H:%M}" if self.as_of else "all links"
        lines = [
            f"identity resolution ({when}; {self.rules.primary_type} ids are customer ids)",
            f"  links: {self.links_total:,} in table, {self.links_after_as_of:,} at/after as-of ignored, "
            f"{self.self_links:,} self-links, {self.duplicate_links:,} duplicates; "
            f"{self.row_links:,} row links; {self.edges_used:,} edges used"
            + (
                f"; {self.links_without_profiling:,} not used (no profiling consent)"
                if self.links_without_profiling
                else ""
            ),
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
            lines.append(f"    {mask_identifier(r['identifier'])}  degree {r['degree']} ({why})")
        lines.append(f"  conflicts (2+ {self.rules.primary_type} ids, not merged): {self.conflicts.height:,}")
        for r in self.conflicts.head(top).iter_rows(named=True):
            ids = _short_list(r["primary_ids"])
            where = mask_identifier(r["component"])
            lines.append(f"    {where}  size {r['size']}  ids {ids}  ambiguous {r['ambiguous']}")
        cap = self.rules.max_component_size
        lines.append(f"  oversize components (> {cap}, not trusted): {self.oversize.height:,}")
        for r in self.oversize.head(top).iter_rows(named=True):
            ids = _short_list(r["primary_ids"])
            where = mask_identifier(r["component"])
            lines.append(f"    {where}  size {r['size']}  {self.rules.primary_type} ids {ids}")
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
