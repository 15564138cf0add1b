"""What a load found: one summary per table, and the warnings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable


class UnknownTableWarning(UserWarning):
    """A file in the histories directory is not one of the known tables; it is ignored."""


@dataclasses.dataclass(frozen=True)
class TableSummary:
    """What one table held after validation (``rows`` counts rows after exact duplicates were dropped).

    ``customers`` and ``identifiers`` (distinct values among the rows kept) are counted by
    ``count_customers`` / ``count_identifiers`` when first read, then kept: validation needs no
    count, and on 20 million events the customers alone cost about a third of the read itself.
    ``omni-ml validate`` and the scoring job's chunk plan read them.
    """

    table: str
    rows: int
    start: dt.datetime | None
    end: dt.datetime | None
    channels: dict[str, int]
    event_types: dict[str, int]
    duplicates_dropped: int
    future_rows: int
    notes: tuple[str, ...]
    unresolved_rows: int = 0  # rows without a customer_id (identifier only): resolve_identities() maps them
    count_customers: Callable[[], int] = dataclasses.field(repr=False, compare=False, kw_only=True)
    count_identifiers: Callable[[], int] = dataclasses.field(repr=False, compare=False, kw_only=True)

    @functools.cached_property
    def customers(self) -> int:
        """Distinct customer ids among the rows kept (nulls aside), counted on first use."""
        return int(self.count_customers())

    @functools.cached_property
    def identifiers(self) -> int:
        """Distinct identifiers among the rows kept (both columns of identity_links), counted on first use."""
        return int(self.count_identifiers())


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Summary of a load: one :class:`TableSummary` per table present, and warnings."""

    source: str
    tables: dict[str, TableSummary]
    warnings: tuple[str, ...] = ()
    as_of: dt.datetime | None = None

    def to_text(self) -> str:
        """Render the report as the short text ``omni-ml validate`` prints."""
        lines = [f"histories: {self.source}"]
        for s in self.tables.values():
            span = f"{s.start:%Y-%m-%d %H:%M} .. {s.end:%Y-%m-%d %H:%M}" if s.start and s.end else "no timestamps"
            who = _count(s.customers, "customer") + (
                f", {_count(s.identifiers, 'identifier')}" if s.identifiers else ""
            )
            lines.append(f"  {s.table:<15} {s.rows:>12,} rows  {who}  {span}")
            if s.channels:
                lines.append("    channels:    " + ", ".join(f"{k} {v:,}" for k, v in s.channels.items()))
            if s.event_types:
                lines.append("    event types: " + ", ".join(f"{k} {v:,}" for k, v in s.event_types.items()))
            if s.duplicates_dropped:
                lines.append(f"    dropped {s.duplicates_dropped:,} exact duplicate rows")
            if s.future_rows:
                lines.append(f"    {s.future_rows:,} rows at or after as-of {self.as_of:%Y-%m-%d %H:%M}")
            lines.extend(f"    note: {n}" for n in s.notes)
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
