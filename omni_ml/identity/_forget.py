"""Right to erasure: remove a person and every identifier of theirs from a histories directory.

The person is found as identity resolution sees them over all links (no as-of): the customer id
itself (``crm:ID``) and every identifier resolved to it. Every table loses the rows of the person:
events, contacts and consents keyed by the customer id or one of the identifiers, identity links
touching one of the identifiers, and the customers row. The other rows are written back as they
were read (same format, same columns and values), each file atomically.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import polars as pl

from omni_ml._io import write_atomically
from omni_ml._privacy import mask_identifier
from omni_ml.data import TABLES, UnknownTableWarning, load_histories
from omni_ml.data._read import _scan
from omni_ml.exceptions import SchemaError
from omni_ml.identity._resolve import resolve
from omni_ml.identity._rules import IdentityRules

__all__ = ["ForgetReport", "forget"]


@dataclasses.dataclass(frozen=True)
class ForgetReport:
    """What :func:`forget` removed: rows per table and the identifiers of the person."""

    customer_id: str
    identifiers: tuple[str, ...]
    rows_removed: dict[str, int]
    out: Path

    def to_text(self) -> str:
        """Short text for the command line; identifiers are masked."""
        shown = ", ".join(mask_identifier(i) for i in self.identifiers[:10])
        more = f" ... ({len(self.identifiers)})" if len(self.identifiers) > 10 else ""
        lines = [
            f"forgot customer {self.customer_id!r}: {sum(self.rows_removed.values()):,} rows removed,"
            f" written to {self.out}",
            f"  identifiers removed: {len(self.identifiers)} ({shown}{more})",
            *(f"  {t:<15} {n:>8,} rows removed" for t, n in self.rows_removed.items()),
            "  note: files written earlier from these histories (campaign files, identity maps, feature tables,"
            " models' training data) still hold the person; regenerate or delete them.",
        ]
        return "\n".join(lines)


def _person(directory: Path, customer_id: str, rules: IdentityRules | None) -> tuple[str, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTableWarning)
        hist = load_histories(directory)
    resolved, _ = resolve(hist, rules=rules)
    identity_map = resolved.identity_map
    assert identity_map is not None  # set by resolve
    rules = rules or IdentityRules()
    ids = set(identity_map.filter(pl.col("customer_id") == customer_id)["identifier"].to_list())
    known = bool(ids)
    for table in ("events", "contacts", "consents", "customers"):
        lf = getattr(resolved, table)
        if lf is not None and not known:
            known = lf.filter(pl.col("customer_id") == customer_id).select(pl.len()).collect().item() > 0
    if not known:
        msg = (
            f"--customer {customer_id!r} is not in the histories in {str(directory)!r}: nothing to forget."
            " Hint: pass the customer id as it appears in the campaign file (customer_id column)."
        )
        raise SchemaError(msg)
    ids.add(f"{rules.primary_type}:{customer_id}")
    return tuple(sorted(ids))


def _drop_mask(table: str, frame: pl.DataFrame, customer_id: str, identifiers: tuple[str, ...]) -> pl.Series:
    def text(col: str) -> pl.Expr:
        return pl.col(col).cast(pl.String).str.strip_chars()

    if table == "identity_links":
        expr = text("identifier_a").is_in(identifiers) | text("identifier_b").is_in(identifiers)
    else:
        expr = pl.lit(value=False)
        if "customer_id" in frame.columns:
            expr = expr | (text("customer_id") == customer_id)
        if "identifier" in frame.columns:
            expr = expr | text("identifier").is_in(identifiers)
    return frame.select(expr.fill_null(value=False).alias("drop")).to_series()


def forget(
    directory: str | Path,
    customer_id: str,
    *,
    out: str | Path | None = None,
    rules: IdentityRules | None = None,
) -> ForgetReport:
    """Remove the person ``customer_id`` and all their identifiers from every table of ``directory``.

    Parameters
    ----------
    directory
        A histories directory (it must pass :func:`omni_ml.load_histories`).
    customer_id
        The person, as in a campaign file's ``customer_id`` (a CRM id or an ``anon-`` id).
    out
        Write the cleaned tables here (created if missing); default: replace the files in ``directory``.
    rules
        Identity rules used to find the person's identifiers (default :class:`IdentityRules`).

    Raises
    ------
    SchemaError
        The histories break the contract, or the customer is not in them.
    """
    source = Path(directory)
    identifiers = _person(source, customer_id, rules)
    target = Path(out) if out is not None else source
    target.mkdir(parents=True, exist_ok=True)
    removed: dict[str, int] = {}
    for file in sorted(source.iterdir()):
        stem, suffix = file.stem.lower(), file.suffix.lower()
        if file.is_dir() or stem not in TABLES or suffix not in (".csv", ".parquet"):
            continue
        frame = _scan(file).collect()
        drop = _drop_mask(stem, frame, customer_id, identifiers)
        removed[stem] = int(drop.sum())
        if removed[stem] == 0 and target == source:
            continue
        kept = frame.filter(~drop)
        dest = target / file.name
        write_atomically(dest, kept.write_csv if suffix == ".csv" else kept.write_parquet, mkdir=False)
    return ForgetReport(customer_id, identifiers, removed, target)
