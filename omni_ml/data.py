"""Load and validate a histories directory: the only reader of raw input files.

A histories directory holds one file per table, parquet or csv (DESIGN.md section 3,
data/README.md)::

    events          required   customer_id or identifier, timestamp, channel, event_type, amount, ...
    contacts        optional   customer_id or identifier, timestamp, channel, campaign_id, cost, assignment_probability
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
rule, the summary, the timestamps that repeat) plus one group-by counting rows per
channel and event type; exact duplicates are searched only when some timestamps repeat.
On large tables distinct customers are counted over 64-bit hashes of the ids (exact unless
two ids collide, odds ~1e-7 at a million customers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
_T = TypeVar("_T")


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

_TRUE = ("true", "t", "yes", "y", "1", "1.0", "granted")
_FALSE = ("false", "f", "no", "n", "0", "0.0", "withdrawn", "revoked")
# Tried in this order; the first format that parses a column's first value is applied to the
# whole column, the others only to the rows it did not parse (a column rarely mixes formats).
_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M%z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_TS_FIX = (
    "use ISO 8601 (2025-03-01, 2025-03-01 14:05:00 or 2025-03-01T14:05:00+01:00; Z and UTC suffixes are"
    " fine) or a parquet timestamp/date column; every row needs a time"
)
_IDENTIFIER = r"^[^:\s]+:\S"
_SEPARATORS = (",", ";", "\t", "|")
_NESTED = (pl.List, pl.Array, pl.Struct, pl.Object, pl.Binary)
_MAX_PROBLEMS = 20
_LOWER = ("channel", "event_type")
_COUNTED = ("channel", "event_type")
_SOURCES_WITH_UNKNOWN = ("events", "contacts")  # tables whose missing channel means "unknown"
# From this many rows on, distinct customers are counted over 64-bit hashes of the ids (cheaper
# than comparing strings) and the rows per channel are counted in a thread beside the rules.
_HASHED_MIN_ROWS = 1 << 20


class UnknownTableWarning(UserWarning):
    """A file in the histories directory is not one of the known tables; it is ignored."""


@dataclasses.dataclass(frozen=True)
class TableSummary:
    """What one table held after validation (``rows`` counts rows after exact duplicates were dropped)."""

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
            hints = [f"{u!r}" + _did_you_mean(u, TABLES) for u in unknown]
            msg = f"unknown table(s) {', '.join(hints)}. Hint: the tables are {', '.join(TABLES)}."
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
        """Materialise every table in memory (faster repeated use after lazy transformations)."""
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
        Directory with ``events.parquet`` or ``events.csv`` and optionally the other tables
        (csv: UTF-8 with or without BOM; separator ``,`` ``;`` tab or ``|``, detected from the header).
    as_of
        When given, rows at or after this moment are counted and reported (not dropped):
        data from the future relative to a scoring date usually means a wrong export.

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
    return _validate(raw, source=str(root), as_of=_to_utc(as_of), warnings_=tuple(warns), files=found)


# ----------------------------------------------------------------------------- reading


def _split_name(name: str) -> tuple[str, str]:
    p = Path(name)
    return p.stem.lower(), p.suffix.lower()


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate (case-insensitive), or an empty string."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower().strip(), list(by_lower), n=1, cutoff=0.6)
    return f" Did you mean {by_lower[close[0]]!r}?" if close else ""


def _count_outside_quotes(line: str, sep: str) -> int:
    n, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            n += 1
    return n


def _sniff_separator(text: str) -> str:
    """The separator that splits the header, preferring one that splits every sampled line alike."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end mid-line
    lines = lines[:50]

    def score(sep: str) -> tuple[bool, int, int]:
        counts = [_count_outside_quotes(ln, sep) for ln in lines]
        consistent = counts[0] > 0 and all(c == counts[0] for c in counts[1:])
        return consistent, counts[0], -_SEPARATORS.index(sep)

    return max(_SEPARATORS, key=score)


def _scan(file: Path) -> pl.LazyFrame:
    if file.suffix.lower() == ".parquet":
        return pl.scan_parquet(file)
    with file.open("rb") as fh:
        head = fh.read(64 * 1024)
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        msg = f"{file.stem}: {file.name!r} is empty (no header). Hint: write a header row with the column names."
        raise SchemaError(msg)
    lf = pl.scan_csv(file, separator=_sniff_separator(text), infer_schema=False, encoding="utf8")
    names = lf.collect_schema().names()
    clean = {n: n.lstrip("\ufeff").strip() for n in names}
    return lf.rename({k: v for k, v in clean.items() if k != v})


def _utf8_problem(file: Path) -> str | None:
    """Line number and bytes of the first invalid UTF-8 sequence in ``file`` (error path only)."""
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line:,} has the bytes {data[exc.start : exc.start + 4]!r}"
    return None


def _to_utc(value: str | dt.date | dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            msg = f"as_of: cannot parse {value!r} as a date. Hint: use ISO 8601, e.g. 2025-06-01."
            raise SchemaError(msg) from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# ----------------------------------------------------------------------------- normalisation


@dataclasses.dataclass
class _Check:
    """One rule over a typed table: ``bad`` marks offending rows; ``shown`` is the value quoted as example."""

    column: str
    bad: pl.Expr
    shown: pl.Expr
    problem: str  # "cannot be parsed as a timestamp"
    fix: str


@dataclasses.dataclass
class _Plan:
    """How to type one table: the lazy projection, string timestamp columns to parse, checks and notes."""

    lazy: pl.LazyFrame
    data_cols: list[str]
    parse_later: list[str]  # timestamp columns given as text, parsed after reading
    as_written: list[str]  # typed string columns read as they are; cleaned after reading only if needed
    checks: list[_Check]
    notes: list[str]


def _orig(col: str) -> str:
    return f"__orig_{col}"


def _given(col: str) -> pl.Expr:
    """Rows where the source value of ``col`` is present (not null, not blank)."""
    o = pl.col(_orig(col))
    return o.is_not_null() & (o.str.strip_chars().str.len_bytes() > 0)


def _clean_string(col: str, src: pl.DataType, *, lower: bool) -> pl.Expr:
    c = pl.col(col)
    if src.is_float():  # ids written by pandas as floats (1001.0) mean the integer 1001
        c = pl.when(c == c.round()).then(c.cast(pl.Int64, strict=False).cast(_STR)).otherwise(c.cast(_STR))
    elif src != _STR:
        c = c.cast(_STR)
    c = c.str.strip_chars()
    if lower:
        c = c.str.to_lowercase()
    return pl.when(c.str.len_bytes() > 0).then(c)


def _typed_column(
    table: str, col: str, dtype: Any, src: pl.DataType, *, text_source: bool
) -> tuple[list[pl.Expr], list[_Check], str]:
    """Expressions typing ``col`` (plus a kept source column when parsing can fail) and their checks.

    The third item says what is left to do after reading: ``"parse"`` (timestamps given as text),
    ``"as_written"`` (a string column of a typed source: cleaned only if the summary pass finds
    blank values or, for channel and event_type, values that are not stripped and lower-case) or ``""``.
    """
    c = pl.col(col)
    if isinstance(src, _NESTED):
        msg = (
            f"{table}.{col}: the column has type {src}, which cannot be used as {dtype}. "
            "Hint: write one plain value per cell."
        )
        raise SchemaError(msg)
    missing = _Check(col, pl.col(col).is_null() & ~_given(col), pl.lit("<missing>"), "are missing (null or empty)", "")
    if dtype == TIMESTAMP:
        fix = _TS_FIX
        missing.fix = fix
        if isinstance(src, pl.Datetime):
            expr = (c.dt.convert_time_zone("UTC") if src.time_zone else c.dt.replace_time_zone("UTC")).cast(TIMESTAMP)
            return [expr.alias(col)], [_Check(col, c.is_null(), pl.lit("<missing>"), missing.problem, fix)], ""
        if src == pl.Date:
            expr = c.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            return [expr.alias(col)], [_Check(col, c.is_null(), pl.lit("<missing>"), missing.problem, fix)], ""
        bad = _Check(col, c.is_null() & _given(col), pl.col(_orig(col)), "cannot be parsed as a timestamp", fix)
        if src in (_STR, pl.Categorical) or isinstance(src, pl.Enum):
            # Parsed after reading (``_parse_timestamps``): only the first format runs over every row.
            return [c.cast(_STR).alias(col), c.cast(_STR).alias(_orig(col))], [bad, missing], "parse"
        # Numbers (epochs ...) and other types are not timestamps: every given value is reported.
        return [pl.lit(None, dtype=TIMESTAMP).alias(col), c.cast(_STR).alias(_orig(col))], [bad, missing], ""
    if dtype == pl.Boolean:
        fix = f"use true/false (also accepted: {', '.join(_TRUE[2:5])} / {', '.join(_FALSE[2:5])})"
        missing.fix = fix
        if src == pl.Boolean:
            return [c.alias(col)], [_Check(col, c.is_null(), pl.lit("<missing>"), missing.problem, fix)], ""
        if src.is_numeric():
            expr = pl.when(c == 1).then(True).when(c == 0).then(False)
        else:
            low = c.cast(_STR).str.strip_chars().str.to_lowercase()
            expr = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
        bad = _Check(col, pl.col(col).is_null() & _given(col), pl.col(_orig(col)), "are not boolean-like", fix)
        return [expr.alias(col), c.cast(_STR).alias(_orig(col))], [bad, missing], ""
    if dtype == _F64:
        fix = "write plain decimal numbers with a '.' decimal point and no currency sign or thousands separator"
        if src.is_numeric():
            return [c.cast(_F64).alias(col)], [], ""
        expr = c.cast(_STR).str.strip_chars().cast(_F64, strict=False)
        bad = _Check(col, pl.col(col).is_null() & _given(col), pl.col(_orig(col)), "cannot be cast to a number", fix)
        return [expr.alias(col), c.cast(_STR).alias(_orig(col))], [bad], ""
    if src == _STR and not text_source:
        return [c], [], "as_written"
    return [_clean_string(col, src, lower=col in _LOWER).alias(col)], [], ""


def _plan(table: str, lf: pl.LazyFrame, *, text_source: bool) -> _Plan:
    """Type one table lazily; raise on a broken schema (missing columns, unusable column types).

    ``text_source`` (csv): every string is stripped, blank values become null, channel and
    event_type are lower-cased. Typed sources (parquet, in-memory frames) keep their strings as
    written unless the summary pass finds something to clean (see ``_typed_column``).
    """
    spec = _SPECS[table]
    schema = lf.collect_schema()
    names = list(schema.names())
    notes: list[str] = []
    # Plain transaction log: (customer_id, date|timestamp, amount) -> purchase events, channel unknown.
    if table == "events":
        if "timestamp" not in names and "date" in names:
            lf = lf.rename({"date": "timestamp"})
            names = [("timestamp" if n == "date" else n) for n in names]
            notes.append("column 'date' used as the timestamp")
        if "event_type" not in names and "amount" in names:
            lf = lf.with_columns(pl.lit("purchase").alias("event_type"))
            names.append("event_type")
            notes.append("no event_type column: every row is a purchase (plain transaction log)")
    if table in ("events", "contacts") and "channel" not in names:
        lf = lf.with_columns(pl.lit(UNKNOWN_CHANNEL).alias("channel"))
        names.append("channel")
        notes.append(f"no channel column: channel set to {UNKNOWN_CHANNEL!r}")
    schema = lf.collect_schema()

    missing = [c for c in spec.required if c not in names]
    if spec.keyed_by_person and "customer_id" not in names and "identifier" not in names:
        missing.insert(0, "customer_id (or identifier)")
    if missing:
        listed = []
        for m in missing:
            close = _did_you_mean(m.split(" ")[0], [n for n in names if n not in spec.columns])
            listed.append(f"'{m}'" + (f" ({close.strip().replace('Did', 'did')})" if close else ""))
        msg = (
            f"{table}: missing required column(s) {', '.join(listed)}; found {names[:12]}"
            f"{' ...' if len(names) > 12 else ''}. Hint: rename the columns to the contract in data/README.md."
        )
        raise SchemaError(msg)

    exprs: list[pl.Expr] = []
    checks: list[_Check] = []
    later: dict[str, list[str]] = {"parse": [], "as_written": [], "": []}
    for col, dtype in spec.columns.items():
        if col not in names:
            exprs.append(pl.lit(None, dtype=dtype).alias(col))
            continue
        col_exprs, col_checks, todo = _typed_column(table, col, dtype, schema[col], text_source=text_source)
        exprs += col_exprs
        checks += col_checks
        later[todo].append(col)
    extra = [n for n in names if n not in spec.columns]
    data_cols = [*spec.columns, *extra]
    checks += _table_checks(table)
    return _Plan(lf.select(*exprs, *extra), data_cols, later["parse"], later["as_written"], checks, notes)


def _identifier_check(col: str, fix: str) -> _Check:
    c = pl.col(col)
    return _Check(col, c.is_not_null() & ~c.str.contains(_IDENTIFIER), c, "are not typed identifiers", fix)


def _table_checks(table: str) -> list[_Check]:
    """Rules over the typed columns of one table (beyond parsing)."""
    checks: list[_Check] = []
    if _SPECS[table].keyed_by_person:
        both_null = pl.col("customer_id").is_null() & pl.col("identifier").is_null()
        checks.append(
            _Check(
                "customer_id",
                both_null,
                pl.lit("<null>"),
                "have neither a customer_id nor an identifier (null or empty)",
                "every row needs a customer id or a typed identifier such as email:ann@x.dk",
            )
        )
    if table == "consents":
        checks.append(
            _Check(
                "channel",
                pl.col("channel").is_null(),
                pl.lit("<null>"),
                "have no channel",
                "every consent row names the channel it is about (email, sms, ...)",
            )
        )
    if table == "events":
        checks.append(
            _Check(
                "event_type",
                pl.col("event_type").is_null(),
                pl.lit("<null>"),
                "have no event_type (null or empty)",
                f"use one of {', '.join(EVENT_TYPES)} (other values are kept and counted)",
            )
        )
        checks.append(
            _Check(
                "amount",
                (pl.col("event_type") == "purchase") & (pl.col("amount") < 0),
                pl.col("amount"),
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
                ap,
                "are outside (0, 1]",
                "assignment_probability is the probability the logging policy chose this contact; leave it empty"
                " when unknown",
            )
        )
        checks.append(
            _Check(
                "cost",
                pl.col("cost") < 0,
                pl.col("cost"),
                "are negative",
                "cost is what one contact costs, 0 or more",
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
            checks.append(_identifier_check(col, "write identifiers as TYPE:VALUE, e.g. email:ann@x.dk, crm:C0001"))
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
                "repeat a customer_id with different attributes",
                "keep one row per customer in customers",
            )
        )
    return checks


def _parse_timestamps(text: pl.Series) -> pl.Series:
    """Parse ISO 8601 text to ``Datetime(us, UTC)``; unparseable and blank values become null."""
    clean = text.str.strip_chars().str.replace(r"(?i)(?:\s*(?:Z|UTC))$", "+00:00")
    formats = list(_TS_FORMATS)
    first = clean.drop_nulls().filter(clean.drop_nulls().str.len_bytes() > 0).head(1)
    for i, fmt in enumerate(formats):  # pick the format of the first value, run it over every row
        if first.len() and _to_datetime(first, fmt).null_count() == 0:
            formats.insert(0, formats.pop(i))
            break
    out = _to_datetime(clean, formats[0])
    failed = out.is_null() & clean.is_not_null() & (clean.str.len_bytes() > 0)
    if failed.any():
        idx = failed.arg_true()
        rest = clean.gather(idx)
        parsed = pl.select(pl.coalesce([_to_datetime(rest, f) for f in formats[1:]])).to_series()
        out = out.scatter(idx, parsed)
    return out


def _to_datetime(text: pl.Series, fmt: str) -> pl.Series:
    if fmt == "%Y-%m-%d":
        return text.str.to_date(fmt, strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")


# ----------------------------------------------------------------------------- validation


def _repeated_values(col: str) -> pl.Expr:
    """The values of ``col`` that occur more than once (nulls aside), as one list.

    One sort finds them: it costs about what a distinct count costs, and on real exports
    (nearly all timestamps distinct) the list is short, so marking the rows that carry a
    repeated value is then a cheap ``is_in``.
    """
    ordered = pl.col(col).drop_nulls().sort()
    return ordered.filter(ordered == ordered.shift(1)).unique().implode()


def _first_occurrences(frame: pl.DataFrame, cols: list[str], repeated_ts: pl.Series | None) -> pl.Series | None:
    """Mask keeping the first of each set of identical rows over ``cols``; ``None`` when all rows differ.

    Identical rows share their timestamp, so only rows whose timestamp repeats (``repeated_ts``,
    from the summary pass) or is null are compared in full; all rows when that is more than an
    eighth of them (coarse timestamps, e.g. dates) or when the table has no timestamp.
    """
    if frame.height < 2:
        return None
    if repeated_ts is not None:
        ts = frame.get_column("timestamp")
        if repeated_ts.len() == 0 and not ts.has_nulls():
            return None
        candidates = ts.is_in(repeated_ts.implode()).fill_null(value=True)
        n_candidates = int(candidates.sum())
        if n_candidates < frame.height // 8:
            sub = frame.filter(candidates).select(pl.struct(cols).is_first_distinct()).to_series()
            if sub.all():
                return None
            keep = pl.repeat(True, frame.height, eager=True, dtype=pl.Boolean).alias("keep")
            return keep.scatter(candidates.arg_true(), sub)
    keep = frame.select(pl.struct(cols).is_first_distinct()).to_series()
    return None if keep.all() else keep


def _distinct_count(col: str, rows: int) -> pl.Expr:
    """Distinct non-null values of ``col``; on large tables counted over 64-bit hashes (exact unless two collide)."""
    present = pl.col(col).drop_nulls()
    return present.n_unique() if rows < _HASHED_MIN_ROWS else present.hash(seed=0).n_unique()


_ROW_COUNTS = ("__rows", "__future", "__customer_nulls")  # summary aggregates that count rows


def _summary_aggs(table: str, cols: set[str], rows: int, as_of: dt.datetime | None) -> list[pl.Expr]:
    """Aggregates of the summary; those named in ``_ROW_COUNTS`` add up over disjoint rows."""
    aggs: list[pl.Expr] = [pl.len().alias("__rows")]
    if "timestamp" in cols:
        ts = pl.col("timestamp")
        aggs += [ts.min().alias("__start"), ts.max().alias("__end")]
        if as_of is not None:
            aggs.append((ts >= as_of).sum().alias("__future"))
    if "customer_id" in cols:
        aggs.append(pl.col("customer_id").null_count().alias("__customer_nulls"))
        aggs.append(_distinct_count("customer_id", rows).alias("__customers"))
    if table == "identity_links":
        ids = pl.concat([pl.col("identifier_a"), pl.col("identifier_b")])
        aggs.append(ids.drop_nulls().n_unique().alias("__identifiers"))
    return aggs


def _value_counts(frame: pl.DataFrame, counted: list[str]) -> dict[str, dict[str | None, int]]:
    """Rows per value (null included) of each counted column, sorted by value, nulls last.

    One group-by over the counted columns together (few combinations: channel x event type),
    on polars' streaming engine, which is the cheapest group-by on large tables.
    """
    if not counted:
        return {}
    joint = frame.lazy().group_by(counted).len().collect(engine="streaming")
    counts: dict[str, dict[str | None, int]] = {}
    for c in counted:
        margin = joint.group_by(c).agg(pl.col("len").sum())
        counts[c] = dict(sorted(((k, int(v)) for k, v in margin.iter_rows()), key=_none_last))
    return counts


def _summarise(
    table: str,
    plan: _Plan,
    frame: pl.DataFrame,
    *,
    as_of: dt.datetime | None,
    notes: list[str],
) -> tuple[pl.DataFrame, TableSummary, list[str], list[str]]:
    """One pass of aggregates: the rules over every row read, the summary over the rows kept.

    Returns the rows kept (``frame`` without its exact duplicates), the summary, the problems,
    and the columns kept as written that turn out to need cleaning (blank strings; channel or
    event_type values not stripped and lower-case): the caller cleans them and runs the pass again.

    All rules, the summary, the repeated timestamps (do duplicates need a search?), the distinct
    customers and identifiers are aggregates of one ``select``, which polars evaluates in parallel;
    the rows per channel and event type are counted meanwhile in a second thread. Only when some
    timestamps repeat are duplicates searched, and the summary recomputed over the rows kept.
    """
    cols = set(frame.columns)
    checks = [c for c in plan.checks if all(n in cols for n in c.bad.meta.root_names())]
    counted = [c for c in _COUNTED if c in cols and table in ("events", "contacts")]
    # Blank values of the counted columns and of identifiers show among their distinct values.
    blank_checked = [c for c in plan.as_written if c not in counted and c != "identifier"]
    aggs: list[pl.Expr] = [pl.len().alias("__total")]
    for i, chk in enumerate(checks):
        aggs.append(chk.bad.sum().alias(f"__n{i}"))
        aggs.append(chk.shown.filter(chk.bad).first().cast(_STR).alias(f"__ex{i}"))
    aggs += [(pl.col(c).str.len_bytes().min() == 0).alias(f"__blank_{c}") for c in blank_checked]
    if "timestamp" in cols:
        aggs.append(_repeated_values("timestamp").alias("__repeated_ts"))
    if "identifier" in cols:
        aggs.append(pl.col("identifier").drop_nulls().unique().implode().alias("__identifier_values"))
    aggs += _summary_aggs(table, cols, frame.height, as_of)
    large = frame.height >= _HASHED_MIN_ROWS
    with ThreadPoolExecutor(max_workers=1) if large else _Inline() as pool:
        counts_job = pool.submit(_value_counts, frame, counted)
        pass_ = frame.lazy().select(aggs).collect(engine="in-memory")
        counts = counts_job.result()
    lists: dict[str, pl.Series] = {}
    for name in ("__identifier_values", "__repeated_ts"):
        if name in pass_.columns:
            lists[name] = pass_.get_column(name)[0]
            pass_ = pass_.drop(name)
    stats: dict[str, Any] = pass_.row(0, named=True)
    identifier_values = lists.get("__identifier_values")
    keep = _first_occurrences(frame, plan.data_cols, lists.get("__repeated_ts"))
    kept = frame if keep is None else frame.filter(keep)
    if keep is not None:  # the summary describes the rows kept: take the dropped copies off
        dropped = frame.filter(~keep)
        summary_aggs = _summary_aggs(table, cols, dropped.height, as_of)
        additive = [a for a in summary_aggs if a.meta.output_name() in _ROW_COUNTS]
        for name, value in dropped.select(additive).row(0, named=True).items():
            stats[name] -= value
        for c, dropped_counts in _value_counts(dropped, counted).items():
            for value, n in dropped_counts.items():
                counts[c][value] -= n
        # Distinct values, first and last timestamps are those of the copies kept: unchanged.
    dirty = [c for c in blank_checked if stats[f"__blank_{c}"]]
    if "identifier" in plan.as_written and identifier_values is not None and (identifier_values == "").any():
        dirty.append("identifier")
    dirty += [
        c
        for c in counted
        if c in plan.as_written and any(k is not None and k != k.strip().lower() or k == "" for k in counts[c])
    ]

    total = int(stats["__total"])
    problems: list[str] = []
    if table == "events" and total == 0:
        problems.append("events: the table is empty (0 rows). Hint: the events table needs at least one row.")
    for i, chk in enumerate(checks):
        n = int(stats[f"__n{i}"] or 0)
        if n:
            problems.append(
                f"{table}.{chk.column}: {n:,} of {total:,} rows {chk.problem} (e.g. {stats[f'__ex{i}']!r})."
                f" Hint: {chk.fix}."
            )
    if identifier_values is not None:  # checked once per distinct value, not once per row
        stats["__identifiers"] = identifier_values.len()
        untyped = identifier_values.filter(~identifier_values.str.contains(_IDENTIFIER)).sort()
        if untyped.len():
            n = int(frame.select(pl.col("identifier").is_in(untyped.implode()).sum()).item())
            problems.append(
                f"{table}.identifier: {n:,} of {total:,} rows are not typed identifiers (e.g. {untyped[0]!r})."
                " Hint: write identifiers as TYPE:VALUE, e.g. email:ann@x.dk, cookie:9f2c, crm:C0001."
            )
    notes = [*plan.notes, *notes]
    channels = {k: v for k, v in counts.get("channel", {}).items() if k is not None}
    event_types = {k: v for k, v in counts.get("event_type", {}).items() if k is not None}
    other = [k for k in event_types if k not in EVENT_TYPES]
    if other:
        shown = ", ".join(other[:5]) + (" ..." if len(other) > 5 else "")
        notes.append(f"event types outside the toolkit's vocabulary are kept as they are: {shown}")
    n_unresolved = int(stats.get("__customer_nulls") or 0)
    if table in ("events", "contacts", "consents") and n_unresolved:
        notes.append(f"{n_unresolved:,} rows carry only an identifier: run resolve_identities()")
    summary = TableSummary(
        table=table,
        rows=int(stats["__rows"]),
        customers=int(stats.get("__customers") or 0),
        identifiers=int(stats.get("__identifiers") or 0),
        start=stats.get("__start"),
        end=stats.get("__end"),
        channels=channels,
        event_types=event_types,
        duplicates_dropped=frame.height - kept.height,
        future_rows=int(stats.get("__future") or 0),
        notes=tuple(notes),
    )
    return kept, summary, problems, dirty


class _Inline:
    """Stand-in for a thread pool on small tables: runs each job at once."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        done: Future[_T] = Future()
        done.set_result(fn(*args))
        return done


def _none_last(item: tuple[str | None, int]) -> tuple[bool, str]:
    return item[0] is None, item[0] or ""


def _read_error(table: str, file: Path | None, exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"{file.name!r}" if file else "the table"
    if file is not None and file.suffix.lower() == ".csv" and "utf-8" in str(exc).lower():
        detail = _utf8_problem(file)
        return (
            f"{table}: {where} is not valid UTF-8 ({detail or first_line})."
            " Hint: save the file as UTF-8 (Excel: 'CSV UTF-8'); a BOM is fine."
        )
    return f"{table}: {where} cannot be read ({type(exc).__name__}: {first_line})."


def _check_table(
    table: str, plan: _Plan, frame: pl.DataFrame, *, as_of: dt.datetime | None
) -> tuple[pl.DataFrame, TableSummary, list[str]]:
    """Fill missing channels, drop exact duplicates, run the rules and the summary (twice if cleaning was due)."""
    missing_channel = 0
    while True:
        notes = []
        missing_now = frame.get_column("channel").null_count() if table in _SOURCES_WITH_UNKNOWN else 0
        if missing_now:
            frame = frame.with_columns(pl.col("channel").fill_null(UNKNOWN_CHANNEL))
            missing_channel += missing_now
        if missing_channel:
            notes.append(f"{missing_channel:,} rows without a channel: channel set to {UNKNOWN_CHANNEL!r}")
        kept, summary, problems, dirty = _summarise(table, plan, frame, as_of=as_of, notes=notes)
        if not dirty:
            return kept, summary, problems
        frame = frame.with_columns(_clean_string(c, pl.String(), lower=c in _LOWER).alias(c) for c in dirty)
        plan.as_written = [c for c in plan.as_written if c not in dirty]


def _validate(
    raw: dict[str, pl.LazyFrame],
    *,
    source: str,
    as_of: dt.datetime | None,
    warnings_: tuple[str, ...],
    files: Mapping[str, Path] | None = None,
) -> Histories:
    frames: dict[str, pl.LazyFrame] = {}
    summaries: dict[str, TableSummary] = {}
    problems: list[str] = []
    for table in TABLES:
        if table not in raw:
            continue
        file = (files or {}).get(table)
        try:
            plan = _plan(table, raw[table], text_source=file is not None and file.suffix.lower() == ".csv")
            frame = plan.lazy.collect()
        except SchemaError as exc:
            problems.append(str(exc))
            continue
        except (pl.exceptions.PolarsError, OSError) as exc:
            problems.append(_read_error(table, file, exc))
            continue
        if plan.parse_later:
            frame = frame.with_columns(_parse_timestamps(frame.get_column(c)).alias(c) for c in plan.parse_later)
        kept, summary, table_problems = _check_table(table, plan, frame, as_of=as_of)
        problems += table_problems
        summaries[table] = summary
        frames[table] = kept.select(plan.data_cols).lazy()
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        if len(problems) > _MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - _MAX_PROBLEMS} more")
        msg = f"histories in {source!r} break the input contract:\n  " + "\n  ".join(shown)
        raise SchemaError(msg)
    report = LoadReport(source=source, tables=summaries, warnings=warnings_, as_of=as_of)
    return Histories(report=report, **frames)  # type: ignore[arg-type]
