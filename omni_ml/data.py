"""Load and validate a histories directory: the only reader of raw input files.

A histories directory holds one file per table, parquet or csv (DESIGN.md section 3)::

    events          required   customer_id or identifier, timestamp, channel, event_type, amount, ...
    contacts        optional   customer_id or identifier, timestamp, channel, campaign_id, cost, assignment_probability
    consents        optional   customer_id or identifier, channel, granted, timestamp
    identity_links  optional   identifier_a, identifier_b, timestamp, source
    customers       optional   customer_id, then any static attribute

Everything is checked once, here, in one pass per table; downstream code trusts the
types. Every problem raises :class:`~omni_ml.exceptions.SchemaError` naming the
table, the column, how many rows, an example value and the fix. Nothing is
silently dropped: exact duplicate rows are removed and counted in the
:class:`LoadReport`; null channels become ``"unknown"`` and are counted too.

Normalised types: ids and strings are ``String`` (stripped; channel and
event_type lower-cased), timestamps are ``Datetime("us", "UTC")`` (naive input is
taken as UTC, aware input is converted, a date means midnight), ``amount``,
``cost`` and ``assignment_probability`` are ``Float64``, ``granted`` is
``Boolean``. Every table always carries all of its contract columns (absent
optional columns are null), so consumers never test for a column's existence.
Tables are exposed as lazy plans: nothing beyond one validation pass is read
until a consumer collects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml.exceptions import SchemaError

__all__ = [
    "CONTACTABLE_CHANNELS",
    "DEFAULT_CHANNELS",
    "EVENT_TYPES",
    "TABLES",
    "Histories",
    "LoadReport",
    "TableSummary",
    "UnknownTableWarning",
    "load_histories",
]

TABLES: tuple[str, ...] = ("events", "contacts", "consents", "identity_links", "customers")
DEFAULT_CHANNELS: tuple[str, ...] = ("web", "app", "store", "email", "sms", "push", "direct_mail", "call_center")
CONTACTABLE_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "direct_mail", "call_center")
EVENT_TYPES: tuple[str, ...] = (
    "purchase",
    "return",
    "view",
    "cart",
    "visit",
    "open",
    "click",
    "service_call",
    "unsubscribe",
)
UNKNOWN_CHANNEL = "unknown"
TIMESTAMP = pl.Datetime("us", "UTC")

_STR = pl.String
_F64 = pl.Float64


@dataclasses.dataclass(frozen=True)
class _Spec:
    columns: Mapping[str, pl.DataType | type[pl.DataType]]
    required: tuple[str, ...]
    keyed_by_person: bool  # carries customer_id and/or identifier


_SPECS: dict[str, _Spec] = {
    "events": _Spec(
        {
            "customer_id": _STR,
            "identifier": _STR,
            "timestamp": TIMESTAMP,
            "channel": _STR,
            "event_type": _STR,
            "amount": _F64,
            "product_id": _STR,
            "category": _STR,
            "campaign_id": _STR,
        },
        ("timestamp", "channel", "event_type"),
        True,
    ),
    "contacts": _Spec(
        {
            "customer_id": _STR,
            "identifier": _STR,
            "timestamp": TIMESTAMP,
            "channel": _STR,
            "campaign_id": _STR,
            "cost": _F64,
            "assignment_probability": _F64,
        },
        ("timestamp", "channel"),
        True,
    ),
    "consents": _Spec(
        {"customer_id": _STR, "identifier": _STR, "channel": _STR, "granted": pl.Boolean, "timestamp": TIMESTAMP},
        ("channel", "granted", "timestamp"),
        True,
    ),
    "identity_links": _Spec(
        {"identifier_a": _STR, "identifier_b": _STR, "timestamp": TIMESTAMP, "source": _STR},
        ("identifier_a", "identifier_b", "timestamp"),
        False,
    ),
    "customers": _Spec({"customer_id": _STR}, ("customer_id",), False),
}

_TRUE = ("true", "t", "yes", "y", "1", "granted")
_FALSE = ("false", "f", "no", "n", "0", "withdrawn", "revoked")
_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)
_MAX_LISTED = 5


class UnknownTableWarning(UserWarning):
    """A file in the histories directory is not one of the known tables; it is ignored."""


@dataclasses.dataclass(frozen=True)
class TableSummary:
    """What one table held after validation."""

    table: str
    rows: int
    customers: int
    identifiers: int
    start: dt.datetime | None
    end: dt.datetime | None
    channels: dict[str, int]
    event_types: dict[str, int]
    duplicates_dropped: int
    future_rows: int
    notes: tuple[str, ...]


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
            who = f"{s.customers:,} customers" + (f", {s.identifiers:,} identifiers" if s.identifiers else "")
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
            msg = f"unknown table(s) {unknown}; the tables are {list(TABLES)}"
            raise SchemaError(msg)
        raw = {"events": events.lazy(), **{k: v.lazy() for k, v in tables.items() if v is not None}}
        return _validate(raw, source="<in-memory>", as_of=_to_utc(as_of), warnings_=())

    def tables(self) -> dict[str, pl.LazyFrame]:
        """The tables that are present, by name."""
        return {t: lf for t in TABLES if (lf := getattr(self, t)) is not None}

    def replace(self, **changes: Any) -> Histories:
        """Return a copy with some tables (or the identity map) replaced."""
        return dataclasses.replace(self, **changes)

    def collect(self) -> Histories:
        """Materialise every table in memory (faster repeated use in notebooks and tests)."""
        return self.replace(**{t: lf.collect().lazy() for t, lf in self.tables().items()})

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
) -> Histories:
    """Read, validate and normalise a histories directory.

    Parameters
    ----------
    path
        Directory with ``events.parquet`` or ``events.csv`` and optionally the other tables.
    as_of
        When given, rows at or after this moment are counted and reported (not dropped):
        data from the future relative to a scoring date usually means a wrong export.

    Returns
    -------
    Histories
        Typed lazy tables plus a :class:`LoadReport` (``.report.to_text()``).

    Raises
    ------
    SchemaError
        On any broken contract; the message names table, column, bad-row count, an example and the fix.

    Examples
    --------
    >>> hist = load_histories("data/sample")
    >>> hist.report.tables["events"].rows
    16
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
            continue
        if stem not in TABLES:
            close = difflib.get_close_matches(stem, TABLES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            warns.append(f"ignored {file.name!r}: not a histories table ({', '.join(TABLES)}).{hint}")
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
    return _validate(raw, source=str(root), as_of=_to_utc(as_of), warnings_=tuple(warns))


# ----------------------------------------------------------------------------- reading


def _split_name(name: str) -> tuple[str, str]:
    p = Path(name)
    return p.stem.lower(), p.suffix.lower()


def _scan(file: Path) -> pl.LazyFrame:
    if file.suffix.lower() == ".parquet":
        return pl.scan_parquet(file)
    with file.open("rb") as fh:
        head = fh.read(64 * 1024)
    if not head.strip():
        msg = f"{file.stem}: {file.name!r} is empty (no header). Hint: write a header row with the column names."
        raise SchemaError(msg)
    text = head.decode("utf-8-sig", errors="replace")
    first_line = text.splitlines()[0]
    separator = max((",", ";", "\t", "|"), key=first_line.count)
    lf = pl.scan_csv(file, separator=separator, infer_schema=False, encoding="utf8-lossy")
    names = lf.collect_schema().names()
    clean = {n: n.lstrip("\ufeff").strip() for n in names}
    return lf.rename({k: v for k, v in clean.items() if k != v})


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
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# ----------------------------------------------------------------------------- validation


@dataclasses.dataclass
class _Check:
    """One rule over a table: ``bad`` marks offending rows; ``shown`` is the value quoted as example."""

    column: str
    bad: pl.Expr
    shown: pl.Expr
    problem: str  # "cannot be parsed as a timestamp"
    fix: str


def _parse_checks(col: str, problem: str, fix: str, *, required: bool = True) -> list[_Check]:
    """Checks for a parsed column: present-but-unparseable, and (if required) missing."""
    orig = pl.col(f"__orig_{col}")
    checks = [_Check(col, pl.col(col).is_null() & orig.is_not_null(), orig, problem, fix)]
    if required:
        checks.append(_Check(col, orig.is_null(), pl.lit("<missing>"), "are missing (null or empty)", fix))
    return checks


def _fmt_rows(n: int, total: int) -> str:
    return f"{n:,} of {total:,} rows"


def _parse_timestamp(col: str, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(col)
    if isinstance(dtype, pl.Datetime):
        return (c.dt.convert_time_zone("UTC") if dtype.time_zone else c.dt.replace_time_zone("UTC")).cast(TIMESTAMP)
    if dtype == pl.Date:
        return c.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype == pl.String:
        s = c.str.strip_chars().str.replace(r"[Zz]$", "+00:00")
        parsed = [s.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _TS_FORMATS]
        parsed.append(s.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        return pl.coalesce(parsed)
    return pl.lit(None, dtype=TIMESTAMP)  # numbers etc.: reported as unparseable


def _normalise(table: str, lf: pl.LazyFrame) -> tuple[pl.LazyFrame, list[_Check], list[str]]:
    """Return the typed plan, the row checks to run over it, and notes about defaults applied."""
    spec = _SPECS[table]
    schema = lf.collect_schema()
    names = list(schema.names())
    notes: list[str] = []
    # Plain transaction log: (customer_id, date|timestamp, amount) -> purchase events, channel unknown.
    if table == "events":
        if "timestamp" not in names and "date" in names:
            lf, names = lf.rename({"date": "timestamp"}), [("timestamp" if n == "date" else n) for n in names]
            schema = lf.collect_schema()
            notes.append("column 'date' used as the timestamp")
        if "event_type" not in names and "amount" in names:
            lf = lf.with_columns(pl.lit("purchase").alias("event_type"))
            names.append("event_type")
            schema = lf.collect_schema()
            notes.append("no event_type column: every row is a purchase (plain transaction log)")
    if table in ("events", "contacts") and "channel" not in names:
        lf = lf.with_columns(pl.lit(UNKNOWN_CHANNEL).alias("channel"))
        names.append("channel")
        schema = lf.collect_schema()
        notes.append(f"no channel column: channel set to {UNKNOWN_CHANNEL!r}")

    missing = [c for c in spec.required if c not in names]
    if spec.keyed_by_person and "customer_id" not in names and "identifier" not in names:
        missing.insert(0, "customer_id (or identifier)")
    if missing:
        lines = []
        for m in missing:
            close = difflib.get_close_matches(m.split(" ")[0], names, n=1, cutoff=0.6)
            lines.append(f"'{m}'" + (f" (did you mean {close[0]!r}?)" if close else ""))
        msg = (
            f"{table}: missing required column(s) {', '.join(lines)}; found {names[:12]}"
            f"{' ...' if len(names) > 12 else ''}. Hint: rename the columns to the contract in data/README.md."
        )
        raise SchemaError(msg)

    typed: list[pl.Expr] = []
    checks: list[_Check] = []
    for col, dtype in spec.columns.items():
        if col not in names:
            typed.append(pl.lit(None, dtype=dtype).alias(col))
            continue
        src = schema[col]
        orig = pl.col(col).cast(pl.String)
        if dtype == TIMESTAMP:
            expr = _parse_timestamp(col, src)
            checks += _parse_checks(
                col,
                "cannot be parsed as a timestamp",
                "use ISO 8601 (2025-03-01 or 2025-03-01T14:05:00+01:00); every row needs a time",
            )
        elif dtype == pl.Boolean:
            low = orig.str.strip_chars().str.to_lowercase()
            expr = (
                pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False).otherwise(None)
                if src != pl.Boolean
                else pl.col(col)
            )
            checks += _parse_checks(
                col,
                "are not boolean-like",
                f"use true/false (also accepted: {', '.join(_TRUE[2:4])} / {', '.join(_FALSE[2:4])}, 1 / 0)",
            )
        elif dtype == _F64:
            expr = (orig.str.strip_chars() if src == pl.String else pl.col(col)).cast(_F64, strict=False)
            checks += _parse_checks(
                col,
                "cannot be cast to a number",
                "write plain decimal numbers with a '.' decimal point and no currency sign",
                required=False,
            )
        else:  # strings
            expr = orig.str.strip_chars()
            if col in ("channel", "event_type"):
                expr = expr.str.to_lowercase()
            expr = pl.when(expr.str.len_chars() > 0).then(expr).otherwise(None)
        typed.append(expr.alias(col))
        if dtype in (_F64, TIMESTAMP, pl.Boolean):
            typed.append(orig.alias(f"__orig_{col}"))
    extra = [pl.col(n) for n in names if n not in spec.columns]
    out = lf.select(*typed, *extra)

    if spec.keyed_by_person:
        checks.append(
            _Check(
                "customer_id",
                pl.col("customer_id").is_null() & pl.col("identifier").is_null(),
                pl.lit("<null>"),
                "have no customer_id and no identifier",
                "every row needs a customer id or a typed identifier such as email:ann@x.dk",
            )
        )
        checks.append(
            _Check(
                "identifier",
                pl.col("identifier").is_not_null() & ~pl.col("identifier").str.contains(r"^[^:\s]+:\S"),
                pl.col("identifier"),
                "are not typed identifiers",
                "write identifiers as TYPE:VALUE, e.g. email:ann@x.dk, cookie:9f2c, phone:+4512345678",
            )
        )
    if table == "events":
        checks.append(
            _Check(
                "event_type",
                pl.col("event_type").is_null(),
                pl.lit("<null>"),
                "have no event_type",
                f"use one of {', '.join(EVENT_TYPES)} (other values are kept and counted)",
            )
        )
        checks.append(
            _Check(
                "amount",
                (pl.col("event_type") == "purchase") & (pl.col("amount") < 0),
                pl.col("amount").cast(pl.String),
                "are purchases with a negative amount",
                "record refunds as event_type 'return' with a positive amount",
            )
        )
    if table == "contacts":
        ap = pl.col("assignment_probability")
        checks.append(
            _Check(
                "assignment_probability",
                ap.is_not_null() & ((ap <= 0) | (ap > 1)),
                ap.cast(pl.String),
                "are outside (0, 1]",
                "assignment_probability is the probability the logging policy chose this contact",
            )
        )
    if table == "identity_links":
        for col in ("identifier_a", "identifier_b"):
            checks.append(
                _Check(
                    col,
                    pl.col(col).is_null(),
                    pl.lit("<null>"),
                    "are null or empty",
                    "every link needs two identifiers",
                )
            )
            checks.append(
                _Check(
                    col,
                    pl.col(col).is_not_null() & ~pl.col(col).str.contains(r"^[^:\s]+:\S"),
                    pl.col(col),
                    "are not typed identifiers",
                    "write identifiers as TYPE:VALUE, e.g. email:ann@x.dk",
                )
            )
    if table == "customers":
        checks.append(
            _Check(
                "customer_id",
                pl.col("customer_id").is_null(),
                pl.lit("<null>"),
                "are null or empty",
                "every customer row needs its customer_id",
            )
        )
        checks.append(
            _Check(
                "customer_id",
                pl.col("customer_id").is_not_null() & pl.col("customer_id").is_duplicated(),
                pl.col("customer_id"),
                "repeat a customer_id",
                "keep one row per customer in customers",
            )
        )
    return out, checks, notes


def _validate(
    raw: dict[str, pl.LazyFrame],
    *,
    source: str,
    as_of: dt.datetime | None,
    warnings_: tuple[str, ...],
) -> Histories:
    plans: dict[str, pl.LazyFrame] = {}
    queries: list[pl.LazyFrame] = []
    meta: dict[str, tuple[list[_Check], list[str], list[str]]] = {}
    for table in TABLES:
        if table not in raw:
            continue
        try:
            typed, checks, notes = _normalise(table, raw[table])
        except pl.exceptions.PolarsError as exc:  # unreadable file
            msg = f"{table}: cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})."
            raise SchemaError(msg) from exc
        data_cols = [c for c in typed.collect_schema().names() if not c.startswith("__orig_")]
        aggs: list[pl.Expr] = [pl.len().alias("__rows")]
        for i, chk in enumerate(checks):
            aggs.append(chk.bad.sum().alias(f"__n{i}"))
            aggs.append(chk.shown.filter(chk.bad).first().cast(pl.String).alias(f"__ex{i}"))
        aggs.append((pl.len() - pl.struct(data_cols).n_unique()).alias("__dups"))
        if "channel" in data_cols and table in ("events", "contacts"):
            aggs.append(pl.col("channel").is_null().sum().alias("__null_channel"))
        if "timestamp" in data_cols:
            aggs += [pl.col("timestamp").min().alias("__start"), pl.col("timestamp").max().alias("__end")]
            if as_of is not None:
                aggs.append((pl.col("timestamp") >= as_of).sum().alias("__future"))
        if "customer_id" in data_cols:
            aggs.append(pl.col("customer_id").n_unique().alias("__customers"))
            aggs.append(pl.col("customer_id").null_count().alias("__customer_nulls"))
        if "identifier" in data_cols:
            aggs.append(pl.col("identifier").drop_nulls().n_unique().alias("__identifiers"))
        if table == "identity_links":
            aggs.append(
                pl.concat_list("identifier_a", "identifier_b").explode().drop_nulls().n_unique().alias("__identifiers")
            )
        queries.append(typed.select(aggs))
        if table in ("events", "contacts"):
            queries.append(typed.group_by("channel").len().sort("channel", nulls_last=True))
        if table == "events":
            queries.append(typed.group_by("event_type").len().sort("event_type", nulls_last=True))
        plans[table] = typed.drop([c for c in typed.collect_schema().names() if c.startswith("__orig_")])
        meta[table] = (checks, notes, data_cols)
    try:
        results = iter(pl.collect_all(queries))
    except pl.exceptions.PolarsError as exc:
        msg = f"histories in {source!r} cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise SchemaError(msg) from exc

    summaries: dict[str, TableSummary] = {}
    problems: list[str] = []
    for table, (checks, notes, _cols) in meta.items():
        stats = next(results).row(0, named=True)
        channels = next(results) if table in ("events", "contacts") else None
        etypes = next(results) if table == "events" else None
        total = stats["__rows"]
        if table == "events" and total == 0:
            problems.append("events: the table is empty (0 rows). Hint: the events table needs at least one row.")
        for i, chk in enumerate(checks):
            n = stats[f"__n{i}"] or 0
            if n:
                problems.append(
                    f"{table}.{chk.column}: {_fmt_rows(n, total)} {chk.problem} (e.g. {stats[f'__ex{i}']!r}). "
                    f"Hint: {chk.fix}."
                )
        dups = int(stats["__dups"])
        if dups:
            plans[table] = plans[table].unique(maintain_order=True)
        null_channel = stats.get("__null_channel") or 0
        if null_channel:
            plans[table] = plans[table].with_columns(pl.col("channel").fill_null(UNKNOWN_CHANNEL))
            notes = [*notes, f"{null_channel:,} rows without a channel set to {UNKNOWN_CHANNEL!r}"]
        if table in ("events", "contacts") and (stats.get("__customer_nulls") or 0):
            n_unres = stats["__customer_nulls"]
            notes = [*notes, f"{n_unres:,} rows carry only an identifier: run resolve_identities()"]
        summaries[table] = TableSummary(
            table=table,
            rows=total - dups,
            customers=int(stats.get("__customers") or 0) - (1 if stats.get("__customer_nulls") else 0),
            identifiers=int(stats.get("__identifiers") or 0),
            start=stats.get("__start"),
            end=stats.get("__end"),
            channels=_counts(channels, "channel"),
            event_types=_counts(etypes, "event_type"),
            duplicates_dropped=dups,
            future_rows=int(stats.get("__future") or 0),
            notes=tuple(notes),
        )
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        msg = f"histories in {source!r} break the input contract:\n  " + "\n  ".join(shown)
        raise SchemaError(msg)
    report = LoadReport(source=source, tables=summaries, warnings=warnings_, as_of=as_of)
    return Histories(report=report, **plans)  # type: ignore[arg-type]


def _counts(frame: pl.DataFrame | None, col: str) -> dict[str, int]:
    if frame is None:
        return {}
    return {(k if k is not None else UNKNOWN_CHANNEL): int(v) for k, v in frame.iter_rows()}
