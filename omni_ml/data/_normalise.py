"""Normalisation: typing each column to the contract and the rules over typed columns."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import polars as pl

from omni_ml._time import utc_column, window
from omni_ml.data._contract import (
    _AMOUNT_BOUND,
    _F64,
    _FALSE,
    _IDENTIFIER,
    _LOWER,
    _NESTED,
    _SPECS,
    _STR,
    _TRUE,
    _TS_FIX,
    _TS_FORMATS,
    EVENT_TYPES,
    TIMESTAMP,
    TIMESTAMP_RANGE_ENV,
    UNKNOWN_CHANNEL,
)
from omni_ml.data._read import _did_you_mean
from omni_ml.exceptions import SchemaError


@dataclasses.dataclass
class _Check:
    """One rule over a typed table: ``bad`` marks offending rows; ``shown`` is the value quoted as example."""

    column: str
    bad: pl.Expr
    shown: pl.Expr
    problem: str  # "cannot be parsed as a timestamp"
    fix: str
    count: pl.Expr | None = None  # a cheaper count of the offending rows than ``bad.sum()``
    # An aggregate that is false when no row can break the rule (e.g. the column's minimum is not
    # negative): the rule's row-wise pass then runs only when the guard is true.
    guard: pl.Expr | None = None


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
        if src == TIMESTAMP:  # already the contract's type: no conversion (it would copy the column)
            return [c], [_null_check(col, missing.problem, fix, shown="<missing>")], ""
        if isinstance(src, pl.Datetime):
            expr = utc_column(c, src)
            if src.time_unit == "ns":  # microseconds hold every nanosecond timestamp's range
                present = _null_check(col, missing.problem, fix, shown="<missing>")
                return [expr.cast(TIMESTAMP).alias(col)], [present], ""
            # Seconds or milliseconds far out of range overflow microseconds: a strict cast panics.
            expr = expr.cast(TIMESTAMP, strict=False)
            raw = c.to_physical()
            overflow = _Check(
                col,
                pl.col(col).is_null() & pl.col(_orig(col)).is_not_null(),
                pl.col(_orig(col)),
                f"are out of the range of a timestamp (raw {src.time_unit} since 1970 shown)",
                "fix the export: a timestamp this far from today is a broken value",
            )
            return (
                [expr.alias(col), raw.alias(_orig(col))],
                [overflow, _Check(col, pl.col(_orig(col)).is_null(), pl.lit("<missing>"), missing.problem, fix)],
                "",
            )
        if src == pl.Date:
            expr = utc_column(c, src)
            return [expr.alias(col)], [_null_check(col, missing.problem, fix, shown="<missing>")], ""
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
            return [c.alias(col)], [_null_check(col, missing.problem, fix, shown="<missing>")], ""
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


def _plan(
    table: str, lf: pl.LazyFrame, *, text_source: bool, timestamp_range: tuple[dt.datetime, dt.datetime]
) -> _Plan:
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
    checks += _table_checks(table, timestamp_range)
    return _Plan(lf.select(*exprs, *extra), data_cols, later["parse"], later["as_written"], checks, notes)


def _null_check(col: str, problem: str, fix: str, *, shown: str = "<null>") -> _Check:
    """Rows where ``col`` is null (blank values became null when typed); ``shown`` is the example value."""
    return _Check(col, pl.col(col).is_null(), pl.lit(shown), problem, fix)


def _identifier_check(col: str, fix: str) -> _Check:
    c = pl.col(col)
    bad = c.is_not_null() & ~c.str.contains(_IDENTIFIER)
    # Most identifier columns are mostly null: match the values present only (6x cheaper on 20M rows).
    count = (~c.drop_nulls().str.contains(_IDENTIFIER)).sum()
    return _Check(col, bad, c, "are not typed identifiers", fix, count)


def _range_check(col: str, timestamp_range: tuple[dt.datetime, dt.datetime]) -> _Check:
    lo, hi = timestamp_range
    ts = pl.col(col)
    return _Check(
        col,
        ~window(lo, end=hi, column=col),
        ts,
        f"are outside the plausible range {lo:%Y-%m-%d} .. {hi:%Y-%m-%d}",
        "placeholder dates (0001-01-01, 1900-01-01, 9999-12-31) usually mean 'unknown': fix or remove those rows;"
        f" if the dates are real, widen the range with {TIMESTAMP_RANGE_ENV}=FROM..UNTIL"
        " (or load_histories(timestamp_range=...))",
        guard=(ts.min() < lo) | (ts.max() >= hi),
    )


def _finite_check(col: str, what: str) -> _Check:
    c = pl.col(col)
    return _Check(
        col,
        c.is_nan() | (c.abs() > _AMOUNT_BOUND),
        c,
        f"are not finite or beyond +-{_AMOUNT_BOUND:.0e}",
        f"{what} must be a real number (no NaN, inf or overflowed values); fix the export",
        guard=c.is_nan().any() | (c.abs().max() > _AMOUNT_BOUND),
    )


def _table_checks(table: str, timestamp_range: tuple[dt.datetime, dt.datetime]) -> list[_Check]:
    """Rules over the typed columns of one table (beyond parsing)."""
    checks: list[_Check] = [_range_check("timestamp", timestamp_range)] if "timestamp" in _SPECS[table].columns else []
    for col, what in (("amount", "amount"), ("cost", "cost"), ("assignment_probability", "a probability")):
        if col in _SPECS[table].columns:
            checks.append(_finite_check(col, what))
    if _SPECS[table].keyed_by_person:
        checks.append(
            _identifier_check(
                "identifier", "write identifiers as TYPE:VALUE, e.g. email:ann@x.dk, cookie:9f2c, crm:C0001"
            )
        )
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
            _null_check(
                "channel", "have no channel", "every consent row names the channel it is about (email, sms, ...)"
            )
        )
    if table == "events":
        checks.append(
            _null_check(
                "event_type",
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
                guard=pl.col("amount").min() < 0,
            )
        )
    if table == "contacts":
        ap = pl.col("assignment_probability")
        checks.append(
            _Check(
                "assignment_probability",
                ap.is_not_null() & ~ap.is_nan() & ((ap <= 0) | (ap > 1)),
                ap,
                "are outside (0, 1]",
                "assignment_probability is the probability the logging policy chose this contact; leave it empty"
                " when unknown",
                guard=(ap.min() <= 0) | (ap.max() > 1),
            )
        )
        checks.append(
            _Check(
                "cost",
                pl.col("cost") < 0,
                pl.col("cost"),
                "are negative",
                "cost is what one contact costs, 0 or more",
                guard=pl.col("cost").min() < 0,
            )
        )
    if table == "identity_links":
        for col in ("identifier_a", "identifier_b"):
            checks.append(_null_check(col, "are null or empty", "every link needs two identifiers"))
            checks.append(_identifier_check(col, "write identifiers as TYPE:VALUE, e.g. email:ann@x.dk, crm:C0001"))
    if table == "customers":
        checks.append(_null_check("customer_id", "are null or empty", "every customer row needs its customer_id"))
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
        dates = text.str.to_date(fmt, strict=False)
        return dates.to_frame().select(utc_column(pl.col(dates.name), pl.Date)).to_series()
    return text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
