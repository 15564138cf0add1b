"""Load and validate a histories directory: the only reader of raw input files.

A histories directory holds one file per table, parquet or csv (DESIGN.md section 3,
data/README.md)::

    events          required   customer_id or identifier, timestamp, channel, event_type, amount, ...
    contacts        optional   customer_id or identifier, timestamp, channel, campaign_id, cost, assignment_probability
                               (channel no_contact: a logged pause, a decision rather than a message)
    consents        optional   customer_id or identifier, channel, granted, timestamp
    identity_links  optional   identifier_a, identifier_b, timestamp, source
    customers       optional   customer_id, then any static attribute

Everything is checked once, here, in one pass per table; downstream code trusts the
types. Every problem raises :class:`~omni_ml.exceptions.SchemaError` naming the
table, the column, how many rows, an example value and the fix; all problems of
all tables are listed in one message. Nothing is silently dropped: rows that are
identical after normalisation (exact duplicates) are removed and counted in the
:class:`LoadReport`; missing channels become ``"unknown"`` and are counted too.

Normalised types: ids and strings are ``String`` (empty strings become null; csv
values are stripped of surrounding whitespace, parquet and in-memory strings are
taken as written; channel and event_type are always stripped and lower-cased;
integer ids become their decimal text), timestamps are ``Datetime("us", "UTC")``
(naive input is taken as UTC, aware input is converted, a date means midnight),
``amount``, ``cost`` and ``assignment_probability`` are ``Float64``, ``granted`` is
``Boolean``. Every table carries all of its contract columns in the contract order
(absent optional columns are null), then any extra columns as given, so consumers
never test for a column's existence. Row order is the file's order.

Each table is read once into memory, validated there, and exposed as a LazyFrame
over the in-memory frame: consumers' ``collect()`` calls never read or parse the
files again. Validation is one parallel polars ``select`` of aggregates per table (every
rule and the summary), while two threads count rows per channel and event type and sort
the timestamps (numpy) to find those that repeat; exact duplicates are searched only among
rows whose timestamp repeats. Distinct customers, which validation does not need, are counted when
``report.tables[t].customers`` is first read (on large tables over 64-bit hashes of the
ids: exact unless two ids collide, odds ~1e-7 at a million customers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml.data._contract import (
    CONTACTABLE_CHANNELS,
    DEFAULT_CHANNELS,
    EVENT_TYPES,
    NO_CONTACT,
    PROFILING,
    TABLES,
    TIMESTAMP,
    UNKNOWN_CHANNEL,
)
from omni_ml.data._read import TimestampRange, _did_you_mean, _scan, _split_name, _timestamp_range, _to_utc
from omni_ml.data._report import LoadReport, TableSummary, UnknownTableWarning
from omni_ml.data._validation import _validate
from omni_ml.exceptions import SchemaError

__all__ = [
    "CONTACTABLE_CHANNELS",
    "DEFAULT_CHANNELS",
    "EVENT_TYPES",
    "NO_CONTACT",
    "PROFILING",
    "TABLES",
    "TIMESTAMP",
    "UNKNOWN_CHANNEL",
    "Histories",
    "LoadReport",
    "TableSummary",
    "UnknownTableWarning",
    "load_histories",
]


@dataclasses.dataclass(frozen=True)
class Histories:
    """Validated, typed customer histories; each table a polars LazyFrame (``None`` when absent).

    Build with :func:`load_histories` (a directory) or :meth:`Histories.from_frames`
    (in-memory tables); both run the same validation. ``identity_map`` is set by
    :func:`omni_ml.identity.resolve_identities`.
    """

    events: pl.LazyFrame
    contacts: pl.LazyFrame | None = None
    consents: pl.LazyFrame | None = None
    identity_links: pl.LazyFrame | None = None
    customers: pl.LazyFrame | None = None
    report: LoadReport | None = None
    identity_map: pl.DataFrame | None = None

    @classmethod
    def from_frames(
        cls,
        events: pl.DataFrame | pl.LazyFrame,
        *,
        as_of: str | dt.date | dt.datetime | None = None,
        timestamp_range: TimestampRange | None = None,
        **tables: pl.DataFrame | pl.LazyFrame | None,
    ) -> Histories:
        """Validate in-memory tables exactly as :func:`load_histories` validates files.

        Examples
        --------
        >>> import polars as pl, datetime as dt
        >>> ev = pl.DataFrame({"customer_id": ["a"], "timestamp": [dt.datetime(2025, 1, 1)], "amount": [9.5]})
        >>> Histories.from_frames(ev).events.collect()["event_type"].to_list()
        ['purchase']
        """
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            hints = [f"{u!r}" + _did_you_mean(u, TABLES) for u in unknown]
            msg = f"unknown table(s) {', '.join(hints)}. Hint: the tables are {', '.join(TABLES)}."
            raise SchemaError(msg)
        raw = {"events": events.lazy(), **{k: v.lazy() for k, v in tables.items() if v is not None}}
        frames, report = _validate(
            raw,
            source="<in-memory>",
            as_of=_to_utc(as_of),
            warnings_=(),
            timestamp_range=_timestamp_range(timestamp_range),
        )
        return cls(report=report, **frames)  # type: ignore[arg-type]

    def tables(self) -> dict[str, pl.LazyFrame]:
        """The tables that are present, by name."""
        return {t: lf for t in TABLES if (lf := getattr(self, t)) is not None}

    def replace(self, **changes: Any) -> Histories:
        """Return a copy with some tables (or the identity map) replaced."""
        return dataclasses.replace(self, **changes)

    def collect(self) -> Histories:
        """Materialise every table in memory (faster repeated use after lazy transformations)."""
        return self.replace(**{t: lf.collect().lazy() for t, lf in self.tables().items()})

    @property
    def sent_contacts(self) -> pl.LazyFrame | None:
        """The contacts that were sent: ``contacts`` without the logged pauses (channel ``no_contact``).

        Contact pressure, cool-downs, costs and contact features count these; the pauses are decisions
        (``omni-ml feedback`` logs the randomised ones) that the channel model learns the no-contact outcome from.
        """
        if self.contacts is None:
            return None
        return self.contacts.filter(pl.col("channel") != NO_CONTACT)

    @property
    def has_channels(self) -> bool:
        """False for a plain transaction log: every event's channel is ``unknown``."""
        summary = self.report.tables.get("events") if self.report else None
        if summary is not None:
            return set(summary.channels) != {UNKNOWN_CHANNEL}
        ch = self.events.select(pl.col("channel").unique()).collect()["channel"].to_list()
        return set(ch) != {UNKNOWN_CHANNEL}


def load_histories(
    path: str | Path,
    *,
    as_of: str | dt.date | dt.datetime | None = None,
    timestamp_range: TimestampRange | None = None,
) -> Histories:
    """Read, validate and normalise a histories directory.

    Parameters
    ----------
    path
        Directory with ``events.parquet`` or ``events.csv`` and optionally the other tables
        (csv: UTF-8 with or without BOM; separator ``,`` ``;`` tab or ``|``, detected from the header).
    as_of
        When given, rows at or after this moment are counted and reported (not dropped):
        data from the future relative to a scoring date usually means a wrong export.
    timestamp_range
        ``(from, until)``: timestamps outside ``[from, until)`` are refused as placeholders or broken
        exports. Default: ``$OMNI_ML_TIMESTAMP_RANGE`` (``FROM..UNTIL``), else 1980-01-01 .. 2100-01-01.

    Returns
    -------
    Histories
        Typed tables plus a :class:`LoadReport` (``.report.to_text()``).

    Raises
    ------
    SchemaError
        On any broken contract; the message names table, column, bad-row count, an example and the fix.

    Warns
    -----
    UnknownTableWarning
        For each file that is not a histories table (it is ignored and listed in the report).

    Examples
    --------
    >>> hist = load_histories("data/sample")
    >>> hist.report.tables["events"].rows
    16
    >>> hist.events.collect_schema()["timestamp"]
    Datetime(time_unit='us', time_zone='UTC')
    """
    root = Path(path)
    if not root.is_dir():
        msg = f"histories directory {str(root)!r} does not exist or is not a directory."
        raise SchemaError(msg)
    raw: dict[str, pl.LazyFrame] = {}
    found: dict[str, Path] = {}
    warns: list[str] = []
    for file in sorted(root.iterdir()):
        if file.is_dir() or file.name.startswith("."):
            continue
        stem, suffix = _split_name(file.name)
        if suffix not in (".parquet", ".csv"):
            hint = " Hint: tables are .parquet or .csv files." if stem.split(".")[0] in TABLES else ""
            warns.append(f"ignored {file.name!r}: not a histories table file.{hint}")
            continue
        if stem not in TABLES:
            warns.append(
                f"ignored {file.name!r}: not a histories table ({', '.join(TABLES)}).{_did_you_mean(stem, TABLES)}"
            )
            continue
        if stem in found:
            msg = (
                f"{stem}: two files for one table ({found[stem].name!r} and {file.name!r}). "
                "Hint: keep exactly one of parquet or csv per table."
            )
            raise SchemaError(msg)
        found[stem] = file
        raw[stem] = _scan(file)
    if "events" not in raw:
        present = ", ".join(sorted(p.name for p in root.iterdir())) or "nothing"
        msg = (
            f"{str(root)!r} has no events table (found: {present}). "
            "Hint: the directory needs events.parquet or events.csv; see data/README.md."
        )
        raise SchemaError(msg)
    for w in warns:
        warnings.warn(w, UnknownTableWarning, stacklevel=2)
    frames, report = _validate(
        raw,
        source=str(root),
        as_of=_to_utc(as_of),
        warnings_=tuple(warns),
        files=found,
        timestamp_range=_timestamp_range(timestamp_range),
    )
    return Histories(report=report, **frames)  # type: ignore[arg-type]
